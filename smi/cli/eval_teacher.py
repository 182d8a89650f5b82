"""``smi eval-teacher``: top-1/top-5 of a saved teacher on a split of a dataset."""

from __future__ import annotations

import argparse
import time

from smi.cli._common import (
    add_device_arguments,
    add_teacher_id_argument,
    json_arg,
    positive_int,
    resolve_device,
    teacher_dataset_spec,
    teacher_id,
)
from smi.config import config_hash
from smi.data import load_dataset, num_classes
from smi.errors import SMIError
from smi.io import provenance, write_json

COMMAND = "eval-teacher"
HELP = "Evaluate a teacher file on a dataset split; write a metrics JSON."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", required=True, help="teacher file (.pt) written by train-teacher")
    parser.add_argument(
        "--dataset-spec",
        type=json_arg,
        default=None,
        help="dataset spec as JSON text or a .json file (default: the one stored in the teacher)",
    )
    parser.add_argument("--split", default="test", help="split to evaluate (test; shapes also test_correlated)")
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    add_teacher_id_argument(parser)
    parser.add_argument("--batch-size", type=positive_int, default=256)
    add_device_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from smi.records import TeacherEvaluation
    from smi.teachers import evaluate, load_teacher

    device = resolve_device(args)
    teacher = load_teacher(args.teacher, device)
    spec = teacher_dataset_spec(args.dataset_spec, teacher, args.teacher)
    if num_classes(spec) != teacher.num_classes:
        raise SMIError(f"teacher has {teacher.num_classes} classes but dataset '{spec.name}' has {num_classes(spec)}.")
    start = time.perf_counter()
    scores = evaluate(teacher.model, load_dataset(spec, args.split, teacher.data_config), args.batch_size, device)
    evaluation = TeacherEvaluation(
        split=args.split,
        top1=scores["top1"],
        top5=scores["top5"],
        num_images=scores["num_images"],
        eval_time_s=time.perf_counter() - start,
        num_params=sum(p.numel() for p in teacher.model.parameters()),
        recipe=teacher.metadata.get("recipe"),
        dataset_spec=spec.to_config(),
    )
    prov = provenance(device, None, config_hash(spec.to_config(), args.split, str(args.teacher)))
    record = evaluation.record(teacher, teacher_id(args, args.teacher), None, prov, spec.name)
    write_json(args.out, record)
    print(
        f"{record['teacher']} on {spec.name}/{args.split}: top-1 {scores['top1']:.2f} %, top-5 {scores['top5']:.2f} %"
    )
    return 0
