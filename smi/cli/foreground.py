"""Measure the foreground precision/recall of CLS-attention patch stopping on shapes test images.

Reads the teacher file and the test images of its ``shapes`` dataset with their ground-truth
masks; applies SMI's patch stopping to them and writes one record of kind ``foreground``
(``--out``): precision and recall of the kept patches against the masks, next to random
stopping. With ``--image-sets`` it also reads those image sets, scores their kept patches
against the teacher's input-gradient saliency region (:mod:`smi.testbed_saliency`), and checks
that proxy on the real images, where the truth is known (``saliency_proxy_precision``).
"""

from __future__ import annotations

import argparse

from smi.cli import _options as options
from smi.cli._common import nonneg_int, open_fraction, positive_int, resolve_device, teacher_dataset_spec, teacher_id
from smi.config import config_hash
from smi.data import load_dataset
from smi.errors import SMIError
from smi.inversion.schedule import PAPER_RATIO, StoppingSchedule
from smi.io import provenance, write_json

COMMAND = "foreground"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    options.add_teacher_arguments(parser)
    options.add_dataset_spec_argument(parser, absent="the one stored in the teacher file")
    parser.add_argument("--split", default="test", help="split with masks: test or test_correlated")
    parser.add_argument(
        "--iterations",
        type=nonneg_int,
        nargs="+",
        default=[1, 2, 3, 4],
        help="stopping steps; only their number matters, real images are not optimised",
    )
    parser.add_argument(
        "--ratio", type=open_fraction, default=PAPER_RATIO, help="fraction of active patches stopped per step"
    )
    parser.add_argument(
        "--num-images", type=positive_int, default=None, help="evaluate the first N images (default: all)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=128, help="images evaluated together")
    options.add_seed_argument(parser, "the random-stopping baseline")
    parser.add_argument(
        "--image-sets",
        nargs="*",
        default=[],
        help="inverted image sets whose kept patches are scored against the saliency region (default: none)",
    )
    parser.add_argument(
        "--labels",
        nargs="*",
        default=None,
        help="method label of each --image-sets file (default: the set's metadata method)",
    )
    options.add_output_arguments(parser, "metrics JSON")
    options.add_progress_argument(parser)
    options.add_device_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Score the stopping on the real images (and the image sets), write the record and print it."""
    from smi.foreground import foreground_precision
    from smi.records import Foreground
    from smi.teachers import load_teacher

    device = resolve_device(args)
    teacher = load_teacher(args.teacher, device)
    spec = teacher_dataset_spec(args.dataset_spec, teacher, args.teacher)
    if spec.name != "shapes":
        raise SMIError(f"the foreground evaluation needs masks, which only 'shapes' has (got '{spec.name}').")
    schedule = StoppingSchedule.build(args.iterations, args.ratio)
    dataset = load_dataset(spec, args.split, teacher.data_config, with_masks=True)
    result = foreground_precision(
        teacher, dataset, schedule, args.num_images, args.batch_size, device, args.seed, progress=not args.no_progress
    )
    inverted = _inverted(args, teacher, schedule, dataset, device) if args.image_sets else {}
    chash = config_hash(
        spec.to_config(),
        args.split,
        list(schedule.iterations),
        list(schedule.ratios),
        args.num_images,
        str(args.teacher),
        [str(p) for p in args.image_sets],
    )
    foreground = Foreground(
        split=args.split, iterations=list(schedule.iterations), ratio=args.ratio, scores=result, saliency=inverted
    )
    prov = provenance(device, args.seed, chash)
    record = foreground.record(teacher, teacher_id(args, args.teacher), args.seed, prov, spec.name)
    write_json(args.out, record)
    print(
        f"{record['teacher']}: kept {result['kept_patches']}/{result['num_patches']} patches; precision "
        f"{result['precision']:.3f} (random {result['random_precision']:.3f}, "
        f"fg fraction {result['fg_fraction']:.3f}), "
        f"recall {result['recall']:.3f} (random {result['random_recall']:.3f})"
    )
    for label, seeds in inverted.get("inverted", {}).items():
        for seed, r in seeds.items():
            print(
                f"  inverted {label} {seed}: kept-patch precision vs saliency region {r['precision']:.3f} "
                f"(chance {r['chance_precision']:.3f}, {r['kept_patches']:.1f} kept)"
            )
    return 0


def _inverted(args: argparse.Namespace, teacher, schedule: StoppingSchedule, dataset, device) -> dict:
    """Saliency-region precision of each image set (by label and seed) and the proxy's check."""
    import torch

    from smi.foreground import patch_foreground
    from smi.imageset import ImageSet
    from smi.sparse_vit import TokenSubsetViT
    from smi.testbed_saliency import inverted_precision, proxy_agreement

    labels = args.labels if args.labels is not None else [None] * len(args.image_sets)
    if len(labels) != len(args.image_sets):
        raise SMIError(f"got {len(labels)} --labels for {len(args.image_sets)} --image-sets; give one label per set.")
    out: dict[str, dict[str, dict]] = {}
    for path, label in zip(args.image_sets, labels):
        image_set = ImageSet.load(path)
        label = label or image_set.metadata.get("method")
        if not label:
            raise SMIError(f"{path} has no metadata 'method'; name it with --labels.")
        seed = f"seed{image_set.metadata.get('seed', 0)}"
        out.setdefault(label, {})[seed] = inverted_precision(teacher, image_set, schedule, device=device)
    total = len(dataset) if args.num_images is None else min(args.num_images, len(dataset))
    items = [dataset[i] for i in range(total)]
    images, labels_t = torch.stack([it[0] for it in items]), torch.tensor([int(it[1]) for it in items])
    fg = patch_foreground(TokenSubsetViT(teacher.model), torch.stack([it[2] for it in items]))
    return {
        "inverted": out,
        "saliency_proxy_precision": proxy_agreement(teacher, images, labels_t, fg, device=device),
        "saliency_proxy_chance": float(fg.float().mean()),
    }
