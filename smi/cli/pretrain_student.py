"""Pretrain a student architecture on a pretraining dataset; write a checkpoint for 'init: checkpoint'.

Sparse Model Inversion (Hu et al., ICML 2024) distils into an ImageNet-pretrained DeiT whose
classifier is replaced for the teacher's classes: the student starts with general visual
features and learns the teacher's labels from the synthetic images alone. The embedded default
has no ImageNet, so the student is pretrained inside the workflow on *another* embedded dataset
(for a ``digits`` teacher on ``shapes``, and the reverse): general features, never the target
labels. Reads the pretraining dataset; writes a teacher-format file (:mod:`smi.teachers.store`,
``--out``), which a student spec with ``init: checkpoint`` loads with a new head, and a metrics
record of kind ``pretrain`` (``--metrics``) with the student's accuracy on the pretraining
source's own test split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smi.cli import _options as options
from smi.cli._common import resolve_device
from smi.config import config_hash
from smi.errors import SMIError
from smi.io import provenance, write_json

COMMAND = "pretrain-student"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    options.add_json_argument(
        parser, "--student-spec", "student spec (model, model_kwargs; init and train are ignored)"
    )
    options.add_dataset_spec_argument(parser, "the pretraining dataset")
    options.add_json_argument(parser, "--recipe", "teacher training Recipe (smi.teachers.spec)", "its defaults")
    parser.add_argument(
        "--target-dataset",
        default=None,
        help="the dataset the student will be distilled on, recorded; must differ (default: none)",
    )
    parser.add_argument(
        "--student-id", default=None, help="student name stored in the metrics (default: the --out file's stem)"
    )
    options.add_output_arguments(parser, "checkpoint (.pt)", metrics=True)
    options.add_seed_argument(parser)
    options.add_progress_argument(parser)
    options.add_device_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Train the student, write its checkpoint and record, and print a summary."""
    from smi.data import DatasetSpec
    from smi.teachers import TeacherSpec, build_teacher, save_teacher

    student = args.student_spec
    recipe = args.recipe
    dataset = DatasetSpec.from_config(args.dataset_spec)
    if args.target_dataset is not None and args.target_dataset == dataset.name:
        raise SMIError(
            f"the student would be pretrained on its target dataset '{dataset.name}'; pretrain on another source "
            "(the protocol gives the student general features, never the target labels)."
        )
    if "model" not in student:
        raise SMIError("--student-spec needs 'model' (a timm ViT name).")
    spec = TeacherSpec.from_config(
        {
            "model": student["model"],
            "model_kwargs": dict(student.get("model_kwargs") or {}),
            "source": "train",
            "recipe": recipe,
        }
    )
    device = resolve_device(args)
    model, metrics = build_teacher(spec, dataset, device, args.seed, progress=not args.no_progress)
    digest = config_hash(spec.to_config(), dataset.to_config(), args.seed)
    save_teacher(
        model,
        args.out,
        {
            "source": "train",
            "recipe": metrics["recipe"],
            "seed": args.seed,
            "config_hash": digest,
            "teacher_spec": spec.to_config(),
            "dataset_spec": dataset.to_config(),
        },
    )
    record = {
        "kind": "pretrain",
        "dataset": args.target_dataset,
        "pretrain_dataset": dataset.name,
        "student": args.student_id or Path(args.out).stem,
        "model_name": spec.model,
        "seed": args.seed,
        "file": str(args.out),
        "pretrain_top1": metrics["top1"],
        "pretrain_top5": metrics["top5"],
        **{k: metrics[k] for k in ("num_params", "train_time_s", "train_cpu_time_s", "steps", "recipe", "history")},
        "provenance": provenance(device, args.seed, digest),
    }
    write_json(args.metrics, record)
    print(
        f"student {record['student']} pretrained on {dataset.name}: top-1 {metrics['top1']:.2f} % "
        f"in {metrics['train_time_s']:.1f} s -> {args.out}"
    )
    return 0
