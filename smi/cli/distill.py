"""Distil a teacher into a student on a synthetic image set; evaluate every epoch on the real test split.

Two protocols (``--protocol``, recorded in the metrics): ``suite`` (default) reads a fixed
image set (``--image-set``); ``official`` runs the official SMI code's protocol, synthesising
into a growing pool inside this job (:mod:`smi.cli._distill_official`). Both read the teacher
file and the real test split of its dataset.

Writes one metrics JSON (kind ``distillation``, ``--out``) with the student's final-epoch
accuracy on the real test split, the whole per-epoch curve, the teacher's accuracy and
provenance; for the ``shapes`` dataset also the accuracy on ``test_correlated`` and the
decorrelation gap. ``--save-student`` also writes the student's weights.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from smi.cli import _options as options
from smi.cli._common import (
    load_split,
    load_teacher,
    positive_float,
    positive_int,
    resolve_device,
    teacher_id as teacher_id_of,
)
from smi.config import config_hash, from_dict, to_dict
from smi.distill.config import DEFAULT_PROTOCOL, PROTOCOLS, StudentSpec, parse_recipe
from smi.errors import SMIError
from smi.imageset import ImageSet, check_teacher_identity
from smi.io import provenance, read_json, torch_save, write_json

COMMAND = "distill"

# Datasets whose spurious-background variant is also scored (split name, metrics suffix).
CORRELATED_SPLITS: dict[str, str] = {"shapes": "test_correlated"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    options.add_teacher_arguments(parser)
    options.add_dataset_spec_argument(parser)
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default=DEFAULT_PROTOCOL,
        help="suite: distil on --image-set; official: the official SMI code's protocol, docs/protocols.md",
    )
    parser.add_argument("--image-set", default=None, help="synthetic image-set file to distil on (protocol suite)")
    parser.add_argument("--method", default=None, help="method name in metrics (default: the set's metadata method)")
    options.add_json_argument(
        parser, "--student-spec", "StudentSpec (model, model_kwargs, init, checkpoint, train)", "its defaults"
    )
    parser.add_argument("--student-id", default=None, help="student name used in metrics (default: its model name)")
    options.add_json_argument(
        parser, "--recipe", "DistillRecipe (epochs, batch_size, lr, temperature, ...)", "its defaults"
    )
    parser.add_argument(
        "--num-images", type=positive_int, default=None, help="images used, overriding the recipe (default: all)"
    )
    parser.add_argument(
        "--budget-gflops",
        type=positive_float,
        default=None,
        help="equal inversion budget: use as many images as this many GFLOPs buy (default: none)",
    )
    parser.add_argument(
        "--inversion-metrics",
        default=None,
        help="the set's inversion metrics JSON (gflops_per_image), needed with --budget-gflops",
    )
    options.add_seed_argument(parser)
    options.add_output_arguments(parser, "metrics JSON")
    parser.add_argument("--save-student", default=None, help="also write the student's weights (.pt; default: no)")
    options.add_progress_argument(parser)
    add_official_arguments(parser)
    options.add_foreign_set_argument(parser)
    options.add_device_arguments(parser)


def add_official_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of protocol ``official`` (the synthesis runs inside the job)."""
    group = parser.add_argument_group("protocol official")
    group.add_argument(
        "--inversion-method", default=None, help="registered method that fills the pool (e.g. smi, dense)"
    )
    options.add_method_params_argument(group)
    options.add_inversion_config_argument(group)
    group.add_argument(
        "--state-dir", default=None, help="folder of the pool and the resumable checkpoint (default: <out>.state)"
    )
    group.add_argument("--keep-state", action="store_true", help="keep the state folder (pool images) after success")


def run(args: argparse.Namespace) -> int:
    """Distil by the chosen protocol, write the record (and the student) and print a summary."""
    from smi.distill.budget import images_for_budget
    from smi.distill.train import distill
    from smi.records import SuiteDistillation

    if args.protocol == "official":
        from smi.cli._distill_official import run_official

        return run_official(args)
    if not args.image_set:
        raise SMIError("protocol 'suite' distils on a fixed image set: give --image-set.")
    device = resolve_device(args)
    student_spec = from_dict(StudentSpec, args.student_spec, "the student spec")
    recipe = parse_recipe("suite", args.recipe)
    image_set = ImageSet.load(args.image_set)
    method = args.method or image_set.metadata.get("method")
    if not method:
        raise SMIError(f"{args.image_set} has no metadata 'method'; name the source with --method.")

    budget: dict[str, Any] = {}
    if args.budget_gflops is not None:
        cost = _gflops_per_image(args.inversion_metrics)
        count = images_for_budget(args.budget_gflops, cost, len(image_set))
        recipe = dataclasses.replace(recipe, num_images=count)
        budget = {"budget_gflops": args.budget_gflops, "gflops_per_image": cost}
    elif args.num_images is not None:
        recipe = parse_recipe("suite", {**to_dict(recipe), "num_images": args.num_images})

    teacher = load_teacher(args.teacher, device)
    teacher_id = teacher_id_of(args, args.teacher)
    identity = check_teacher_identity(image_set, teacher, args.image_set, teacher_id, args.allow_foreign_set)
    spec, test_set = load_split(args.dataset_spec, "test", teacher)
    extra_name = CORRELATED_SPLITS.get(spec.name)
    extra = {extra_name: load_split(args.dataset_spec, extra_name, teacher)[1]} if extra_name else {}
    known = recorded_teacher_accuracy(teacher, spec)
    result = distill(
        teacher, image_set, student_spec, recipe, test_set, args.seed, device, extra, not args.no_progress, known
    )

    digest = config_hash(
        to_dict(student_spec), to_dict(recipe), teacher_id, image_set.metadata.get("config_hash"), args.seed
    )
    final = result.final
    distillation = SuiteDistillation(
        **student_figures(args, student_spec, recipe, result),
        method=method,
        num_images=result.num_images,
        image_set=str(args.image_set),
        image_sparsity=image_set.sparsity,
        set_teacher=identity,
        allow_foreign_set=args.allow_foreign_set,
        **budget,
        final_top1_correlated=result.extra[extra_name]["top1"] if extra_name else None,
    )
    record = distillation.record(teacher, teacher_id, args.seed, provenance(device, args.seed, digest), spec.name)
    if args.save_student:
        torch_save(
            {"state_dict": result.student.state_dict(), "student_spec": to_dict(student_spec)}, args.save_student
        )
    write_json(args.out, record)
    print(
        f"student {record['student']} on {result.num_images} '{method}' images, {recipe.epochs} epochs: final top-1 "
        f"{final['test_top1']:.2f} (teacher {record['teacher_top1']:.2f}) -> {args.out}"
    )
    return 0


def recorded_teacher_accuracy(teacher: Any, spec: Any) -> dict[str, float] | None:
    """The teacher's test-split accuracy as its file records it, or None to measure it here.

    ``smi train-teacher`` scores the teacher on the test split of its dataset spec and stores
    ``top1``/``top5`` in the file; every distillation job of that teacher would otherwise score
    the same frozen model on the same split again. The record is used only when it was taken on
    the very dataset spec this job evaluates on.
    """
    metadata = getattr(teacher, "metadata", None) or {}
    if not all(isinstance(metadata.get(key), (int, float)) for key in ("top1", "top5")):
        return None
    if metadata.get("dataset_spec") is None or metadata["dataset_spec"] != spec.to_config():
        return None
    return {"top1": float(metadata["top1"]), "top5": float(metadata["top5"])}


def _gflops_per_image(path: str | None) -> float:
    """The ``gflops_per_image`` of an inversion metrics JSON."""
    if not path:
        raise SMIError(
            "--budget-gflops needs --inversion-metrics: the set's inversion metrics JSON with gflops_per_image."
        )
    if not Path(path).is_file():
        raise SMIError(f"inversion metrics file {path} does not exist; run the inversion step that writes it first.")
    cost = read_json(path).get("gflops_per_image")
    if not isinstance(cost, (int, float)) or cost <= 0:
        raise SMIError(
            f"{path} has no positive gflops_per_image ({cost!r}); equal-budget comparisons apply to inversion methods, "
            "not to sources that cost no inversion (real images, noise)."
        )
    return float(cost)


def student_figures(args: argparse.Namespace, student_spec: Any, recipe: Any, result: Any) -> dict[str, Any]:
    """What both protocols' records report of the trained student (:class:`smi.records.Distillation`)."""
    final, teacher = result.final, result.teacher_accuracy
    return dict(
        student=args.student_id or student_spec.model,
        student_model_name=student_spec.model,
        epochs=recipe.epochs,
        final_top1=final["test_top1"],
        final_top5=final["test_top5"],
        teacher_top1=teacher["top1"],
        teacher_top5=teacher["top5"],
        train_time_s=final["wall_time_s"],
        curve=result.curve,
        student_spec=to_dict(student_spec),
        recipe=to_dict(recipe),
    )
