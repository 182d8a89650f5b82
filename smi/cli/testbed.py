"""Measure a teacher's testbed properties: accuracy per test split and activation outlier ratios (real, noise).

These are the properties of a teacher that decide what the benchmark can show. Reads the
teacher file, every test split of its dataset and, with ``--noise-set``, the noise image set;
writes one metrics JSON (kind ``testbed``): the teacher's top-1 on every test split (for
``shapes``: ``test``, whose backgrounds are independent of the class, and ``test_correlated``,
whose backgrounds follow the training correlation ``rho``; their difference is the teacher's
reliance on the background shortcut), and the activation outlier ratio (:mod:`smi.testbed`) on
real test images and on the noise image set.
"""

from __future__ import annotations

import argparse
from typing import Any

from smi.cli import _options as options
from smi.cli._common import load_split, load_teacher, positive_int, resolve_device, teacher_id as teacher_id_of
from smi.config import config_hash
from smi.io import provenance, write_json

COMMAND = "testbed"

#: Splits that are not test splits (never evaluated here).
TRAIN_SPLITS: tuple[str, ...] = ("train",)
#: shapes' split pair whose difference is the teacher's background-shortcut reliance.
CORRELATED_SPLIT, DECORRELATED_SPLIT = "test_correlated", "test"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    options.add_teacher_arguments(parser)
    options.add_dataset_spec_argument(parser)
    parser.add_argument(
        "--noise-set",
        default=None,
        help="noise image-set file ('noise' method) for the noise outlier ratio (default: none, no noise ratio)",
    )
    parser.add_argument("--num-images", type=positive_int, default=256, help="real test images for the outlier ratio")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="images evaluated together")
    options.add_output_arguments(parser, "metrics JSON")
    options.add_device_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Measure accuracy per split and outlier ratios, write the record and print a summary."""
    import torch

    from smi.data.registry import dataset_entry
    from smi.imageset import ImageSet
    from smi.teachers.training import evaluate
    from smi.testbed import measure_outliers

    device = resolve_device(args)
    teacher = load_teacher(args.teacher, device)
    spec, test_set = load_split(args.dataset_spec, DECORRELATED_SPLIT, teacher)
    accuracy: dict[str, float] = {}
    for split in dataset_entry(spec.name).splits:
        if split in TRAIN_SPLITS:
            continue
        data = test_set if split == DECORRELATED_SPLIT else load_split(args.dataset_spec, split, teacher)[1]
        accuracy[split] = evaluate(teacher.model, data, args.batch_size, device)["top1"]

    count = min(args.num_images, len(test_set))
    real = torch.stack([test_set[i][0] for i in range(count)])
    outliers = {"real": measure_outliers(teacher.model, real, args.batch_size, device)}
    if args.noise_set:
        noise = ImageSet.load(args.noise_set)
        outliers["noise"] = measure_outliers(teacher.model, teacher.normalize(noise.images), args.batch_size, device)

    teacher_id = teacher_id_of(args, args.teacher)
    record: dict[str, Any] = {
        "kind": "testbed",
        "dataset": spec.name,
        "teacher": teacher_id,
        "model_name": teacher.model_name,
        **{f"top1_{split}": value for split, value in accuracy.items()},
        "activation_positions": "input and output of every linear layer in the blocks (qkv, proj, fc1, fc2)",
    }
    if CORRELATED_SPLIT in accuracy:
        record["shortcut_reliance"] = accuracy[CORRELATED_SPLIT] - accuracy[DECORRELATED_SPLIT]
    if "rho" in spec.options:
        record["rho"] = float(spec.options["rho"])
    for source, result in outliers.items():
        record[f"outlier_ratio_{source}_median"] = result["median"]
        record[f"outlier_ratio_{source}_max"] = result["max"]
        record[f"outlier_images_{source}"] = result["num_images"]
    # Per-activation ratios stay in the JSON (lists are not summary cells).
    record["outlier_ratios"] = [
        {**row, "images": source} for source, result in outliers.items() for row in result["per_activation"]
    ]
    digest = config_hash(spec.to_config(), teacher_id, count, args.noise_set and str(args.noise_set))
    record["provenance"] = provenance(device, None, digest)
    write_json(args.out, record)
    splits = ", ".join(f"{k} {v:.2f} %" for k, v in accuracy.items())
    ratios = ", ".join(f"{s} {r['median']:.1f} (max {r['max']:.1f})" for s, r in outliers.items())
    print(f"teacher {teacher_id}: top-1 {splits}; outlier ratio median over activations: {ratios}")
    return 0
