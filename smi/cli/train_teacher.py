"""``smi train-teacher``: build a teacher (pretrained, checkpoint, train, finetune) and save it.

Writes the teacher file (``--out``, see :mod:`smi.teachers.store`) and a metrics JSON
(``--metrics``) with test top-1/top-5, training time, recipe and provenance, both atomically.
An existing pair of outputs is kept unless ``--force``: teachers are never retrained by accident.
"""

from __future__ import annotations

import argparse
import os

from smi.cli._common import (
    add_device_arguments,
    add_teacher_id_argument,
    json_arg,
    nonneg_int,
    resolve_device,
    teacher_id,
)
from smi.config import config_hash
from smi.data import DatasetSpec
from smi.io import provenance, write_json

COMMAND = "train-teacher"
HELP = "Build a teacher from a teacher spec on a dataset; write the .pt file and a metrics JSON."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--teacher-spec", type=json_arg, required=True, help="teacher spec as JSON text or a .json file"
    )
    parser.add_argument(
        "--dataset-spec", type=json_arg, required=True, help="dataset spec as JSON text or a .json file"
    )
    parser.add_argument("--out", required=True, help="teacher file to write (.pt)")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    add_teacher_id_argument(parser)
    parser.add_argument("--seed", type=nonneg_int, default=0)
    add_device_arguments(parser)
    parser.add_argument("--force", action="store_true", help="rebuild even if both outputs exist")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from smi.records import TeacherBuild
    from smi.teachers import TeacherSpec, build_teacher, save_teacher

    if not args.force and os.path.isfile(args.out) and os.path.isfile(args.metrics):
        print(f"smi train-teacher: {args.out} exists; keeping it (use --force to rebuild).")
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
