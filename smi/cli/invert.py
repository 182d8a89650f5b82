"""``smi invert``: synthesise an image set with a registered method.

Writes the image-set file, a metrics JSON with provenance and a PNG grid, all atomically.
"""

from __future__ import annotations

import argparse
import dataclasses

from smi.cli._common import (
    add_device_arguments,
    inversion_config,
    json_arg,
    nonneg_int,
    open_fraction,
    positive_int,
    resolve_device,
)
from smi.io import atomic_path, provenance, write_json
from smi.methods.registry import create_method

COMMAND = "invert"
HELP = "Synthesise images from a teacher with an inversion method (dense, smi, ...)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", required=True, help="teacher checkpoint written by 'smi train-teacher'")
    parser.add_argument("--teacher-id", default=None, help="teacher name used in metrics (default: model name)")
    parser.add_argument("--method", required=True, help="registered method name (see 'smi methods')")
    parser.add_argument(
        "--label", default=None, help="name of this configuration in metrics and tables (default: the method name)"
    )
    parser.add_argument("--method-params", type=json_arg, default={}, help="method parameters as a JSON object")
    parser.add_argument(
        "--schedule",
        type=nonneg_int,
        nargs="+",
        default=None,
        help="stopping iterations (sets method param 'iterations')",
    )
    parser.add_argument("--ratio", type=open_fraction, default=None, help="stopping ratio (sets method param 'ratio')")
    parser.add_argument("--num-images", type=positive_int, required=True, help="output images to produce")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="images optimised together")
    parser.add_argument("--iterations", type=positive_int, default=None, help="optimisation iterations (paper: 4000)")
    parser.add_argument(
        "--inversion-config", type=json_arg, default={}, help="other InversionConfig keys as JSON (lr, tv_l2, ...)"
    )
    parser.add_argument(
        "--dataset-spec", type=json_arg, default=None, help="teacher's dataset (needed by the 'real' source)"
    )
    parser.add_argument("--seed", type=nonneg_int, default=0)
    parser.add_argument("--out", required=True, help="image-set file to write (.pt)")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--grid", default=None, help="PNG grid of the images to write")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_device_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from smi.methods.synthesize import synthesize
    from smi.teachers import load_teacher

    device = resolve_device(args)
    params = dict(args.method_params)
    if args.schedule is not None:
        params["iterations"] = args.schedule
    if args.ratio is not None:
        params["ratio"] = args.ratio
    method = create_method(args.method, params)
    config = inversion_config(args)
    teacher = load_teacher(args.teacher, device=device)
    dataset_spec = None
    if args.dataset_spec is not None:
        from smi.data import DatasetSpec

        dataset_spec = DatasetSpec.from_config(args.dataset_spec)
    image_set, metrics = synthesize(
        method, teacher, args.num_images, config, args.seed, device, dataset_spec, progress=not args.no_progress
    )
    label = args.label or args.method
    metrics["method_name"], metrics["method"] = metrics["method"], label
    image_set.metadata["teacher_id"] = args.teacher_id or teacher.model_name
    image_set.metadata["method_name"], image_set.metadata["method"] = image_set.metadata["method"], label
    image_set.save(args.out)
    record = {
        "kind": "inversion",
        "dataset": teacher.dataset,
        "teacher": args.teacher_id or teacher.model_name,
        "teacher_seed": teacher.metadata.get("seed"),
        "model_name": teacher.model_name,
        "seed": args.seed,
        "image_set": args.out,
        "inversion_config": dataclasses.asdict(config),
        **metrics,
        # The job's own wall time: other jobs may share the machine, so it is not isolated and the
        # tables take speed-ups from `smi time-inversions` (time_protocol "interleaved") instead.
        "time_protocol": "job",
        "provenance": provenance(device, args.seed, metrics["config_hash"]),
    }
    write_json(args.metrics, record)
    if args.grid:
        save_grid(image_set.images, args.grid)
    print(
        f"{label}: {len(image_set)} images, {metrics['time_per_image_s']:.3f} s/image, "
        f"{metrics['gflops_per_image']:.2f} GFLOPs/image, kept {metrics['final_kept_patches']:.1f}/"
        f"{metrics['num_patches']} patches"
    )
    return 0


def save_grid(images, path: str, max_images: int = 64) -> None:
    """Save a PNG grid of images (stopped patches are already black)."""
    from torchvision.utils import save_image

    with atomic_path(path) as tmp:
        save_image(images[:max_images], tmp, nrow=8, padding=1, format="png")
