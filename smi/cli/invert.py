"""``smi invert``: synthesise an image set with a registered method.

Writes the image-set file, a metrics JSON with provenance and a PNG grid, all atomically.
"""

from __future__ import annotations

import argparse
import dataclasses

from smi.cli._common import (
    add_device_arguments,
    add_teacher_id_argument,
    inversion_config,
    json_arg,
    nonneg_int,
    open_fraction,
    positive_int,
    resolve_device,
    save_grid,
    teacher_id,
)
from smi.io import provenance, write_json
from smi.methods.registry import create_method

COMMAND = "invert"
HELP = "Synthesise images from a teacher with an inversion method (dense, smi, ...)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", required=True, help="teacher checkpoint written by 'smi train-teacher'")
    add_teacher_id_argument(parser)
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
    from smi.records import inversion_record
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
    image_set, description, costs, chash = synthesize(
        method, teacher, args.num_images, config, args.seed, device, dataset_spec, progress=not args.no_progress
    )
    label = args.label or args.method
    description["method_name"], description["method"] = description["method"], label
    image_set.metadata["teacher_id"] = teacher_id(args, args.teacher)
    image_set.metadata["method_name"], image_set.metadata["method"] = image_set.metadata["method"], label
    image_set.save(args.out)
    record = inversion_record(
        teacher=teacher,
        teacher_id=teacher_id(args, args.teacher),
        seed=args.seed,
        image_set=args.out,
        method=description,
        costs=costs,
        config_hash=chash,
        provenance=provenance(device, args.seed, chash),
        inversion_config=dataclasses.asdict(config),
    )
    write_json(args.metrics, record)
    if args.grid:
        save_grid(image_set.images, args.grid)
    print(
        f"{label}: {len(image_set)} images, {record['time_per_image_s']:.3f} s/image, "
        f"{record['gflops_per_image']:.2f} GFLOPs/image, kept {costs.final_kept_patches:.1f}/"
        f"{costs.num_patches} patches"
    )
    return 0
