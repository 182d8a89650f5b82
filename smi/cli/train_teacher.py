"""Build a teacher from a teacher spec on a dataset; write the .pt file and a metrics JSON.

The teacher spec says how: a pretrained model, a checkpoint, training from scratch or
fine-tuning (:mod:`smi.teachers`). Reads the dataset (and the weights the spec names); writes
the teacher file (``--out``, see :mod:`smi.teachers.store`) and a metrics record of kind
``teacher`` (``--metrics``) with test top-1/top-5, training time, recipe and provenance, both
atomically. An existing pair of outputs is kept unless ``--force``: teachers are never
retrained by accident.
"""

from __future__ import annotations

import argparse
import os

from smi.cli import _options as options
from smi.cli._common import resolve_device, teacher_id
from smi.config import config_hash
from smi.data import DatasetSpec
from smi.io import provenance, write_json

COMMAND = "train-teacher"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    options.add_json_argument(parser, "--teacher-spec", "teacher spec")
    options.add_dataset_spec_argument(parser, "the dataset to train and test on")
    options.add_output_arguments(parser, "teacher file (.pt)", metrics=True)
    options.add_teacher_id_argument(parser)
    options.add_seed_argument(parser)
    options.add_device_arguments(parser)
    parser.add_argument("--force", action="store_true", help="rebuild even if both outputs exist")
    options.add_progress_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Build the teacher unless both outputs exist, write the file and its record, and print a summary."""
    from smi.records import TeacherBuild
    from smi.teachers import TeacherSpec, build_teacher, save_teacher

    if not args.force and os.path.isfile(args.out) and os.path.isfile(args.metrics):
        print(f"{args.out} exists; kept it (use --force to rebuild)")
        return 0
    spec = TeacherSpec.from_config(args.teacher_spec)
    dataset = DatasetSpec.from_config(args.dataset_spec)
    device = resolve_device(args)
    teacher, metrics = build_teacher(spec, dataset, device, args.seed, progress=not args.no_progress)
    chash = config_hash(spec.to_config(), dataset.to_config(), args.seed)
    recipe_info = {
        "source": spec.source,
        "recipe": metrics["recipe"],
        "seed": args.seed,
        "config_hash": chash,
        "teacher_spec": spec.to_config(),
        "dataset_spec": dataset.to_config(),
    }
    save_teacher(teacher, args.out, recipe_info)
    build = TeacherBuild(
        file=str(args.out), teacher_spec=spec.to_config(), dataset_spec=dataset.to_config(), training=metrics
    )
    record = build.record(teacher, teacher_id(args, args.out), args.seed, provenance(device, args.seed, chash))
    write_json(args.metrics, record)
    print(
        f"teacher {record['teacher']} ({spec.model}, {dataset.name}): top-1 {metrics['top1']:.2f} %, "
        f"top-5 {metrics['top5']:.2f} %, trained in {metrics['train_time_s']:.1f} s "
        f"(CPU {metrics['train_cpu_time_s']:.1f} s)"
    )
    return 0
