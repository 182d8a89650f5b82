"""Synthesise images from a teacher with an inversion method (dense, smi, ...).

Reads the teacher file (and, for the ``real`` image source, its dataset); writes the image-set
file (``--out``), a metrics record of kind ``inversion`` with provenance (``--metrics``) and,
with ``--grid``, a PNG grid of the images, all atomically.
"""

from __future__ import annotations

import argparse
import dataclasses

from smi.cli import _options as options
from smi.cli._common import (
    inversion_config,
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    options.add_teacher_arguments(parser)
    parser.add_argument("--method", required=True, help="registered method name (see `smi methods`)")
    parser.add_argument(
        "--label", default=None, help="name of this configuration in metrics and tables (default: the method name)"
    )
    options.add_method_params_argument(parser)
    parser.add_argument(
        "--schedule",
        type=nonneg_int,
        nargs="+",
        default=None,
        help="stopping iterations; sets the method parameter 'iterations' (default: the method's)",
    )
    parser.add_argument(
        "--ratio",
        type=open_fraction,
        default=None,
        help="stopping ratio; sets the method parameter 'ratio' (default: the method's)",
    )
    parser.add_argument("--num-images", type=positive_int, required=True, help="output images to produce")
    options.add_inversion_arguments(parser)
    options.add_dataset_spec_argument(parser, absent="none; the 'real' image source needs it")
    options.add_seed_argument(parser)
    options.add_output_arguments(parser, "image-set file (.pt)", metrics=True, grid=True)
    options.add_progress_argument(parser)
    options.add_device_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Synthesise the image set, write it with its record and grid, and print a summary."""
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
