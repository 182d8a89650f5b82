"""``smi distill --protocol official``: the official SMI knowledge-transfer protocol as one job.

The job synthesises its own growing pool with ``--inversion-method`` (one inversion batch of
``images_per_epoch`` per epoch), trains a linear probe on a pretrained copy of the teacher's
architecture with one SGD step per epoch, and writes the metrics record with the final epoch
(``final_top1``) and, labelled as the official metric, the best evaluation
(``official_best_top1``). Pool and checkpoint live in ``--state-dir`` (default: ``<out>.state``);
an interrupted job run again resumes there; the folder is removed after success unless
``--keep-state``.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

from smi.cli._common import resolve_device, teacher_id as teacher_id_of
from smi.config import config_hash, from_dict, to_dict
from smi.distill.config import StudentSpec, parse_recipe
from smi.errors import SMIError
from smi.inversion import InversionConfig
from smi.io import provenance, write_json

#: Bytes read at a time when hashing the teacher file (its identity for resuming).
_HASH_CHUNK = 1 << 24


def run_official(args: argparse.Namespace) -> int:
    """Run the official protocol for the parsed ``smi distill`` arguments."""
    from smi.cli import distill as base  # the seams the tests replace (load_teacher, load_split)
    from smi.distill.official import distill_official
    from smi.methods.registry import create_method
    from smi.records import OfficialDistillation

    for flag, value in (
        ("--image-set", args.image_set),
        ("--budget-gflops", args.budget_gflops),
        ("--num-images", args.num_images),
    ):
        if value is not None:
            raise SMIError(
                f"protocol 'official' synthesises its own pool each epoch; {flag} belongs to protocol 'suite'."
            )
    if not args.inversion_method:
        raise SMIError(
            "protocol 'official' needs --inversion-method: the registered method that fills the pool (e.g. smi)."
        )
    device = resolve_device(args)
    student_spec = from_dict(StudentSpec, args.student_spec, "the student spec")
    recipe = parse_recipe("official", args.recipe)
    method = create_method(args.inversion_method, args.method_params)
    inversion_config = from_dict(InversionConfig, args.inversion_config, "the inversion config")
    label = args.method or args.inversion_method

    teacher = base.load_teacher(args.teacher, device)
    spec, test_set = base.load_split(args.dataset_spec, "test", teacher)
    teacher_id = teacher_id_of(args, args.teacher)
    state_dir = Path(args.state_dir or f"{args.out}.state")
    identity = f"{teacher_id}:{_file_digest(args.teacher)}"
    result = distill_official(
        teacher=teacher,
        method=method,
        inversion_config=inversion_config,
        student_spec=student_spec,
        recipe=recipe,
        test_set=test_set,
        seed=args.seed,
        device=device,
        state_dir=state_dir,
        dataset_spec=spec,
        identity=identity,
        progress=not args.no_progress,
    )

    digest = config_hash(
        to_dict(student_spec), to_dict(recipe), teacher_id, method.describe(), to_dict(inversion_config), args.seed
    )
    final, best = result.final, result.best
    distillation = OfficialDistillation(
        **base.student_figures(args, student_spec, recipe, result),
        method=label,
        num_images=result.pool_size,
        inversion_method=args.inversion_method,
        method_params=method.describe().get("method_params", {}),
        images_per_epoch=recipe.images_per_epoch,
        official_best_top1=best["test_top1"],
        official_best_top5=best["test_top5"],
        official_best_epoch=best["epoch"],
        resumed_from_epoch=result.resumed_from,
        inversion_config=to_dict(inversion_config),
    )
    record = distillation.record(teacher, teacher_id, args.seed, provenance(device, args.seed, digest), spec.name)
    if args.save_student:
        from smi.io import torch_save

        torch_save(
            {"state_dict": result.student.state_dict(), "student_spec": to_dict(student_spec)}, args.save_student
        )
    write_json(args.out, record)
    if not args.keep_state:
        shutil.rmtree(state_dir, ignore_errors=True)
    print(
        f"student {record['student']} (official protocol, '{label}' pool of {result.pool_size} images, "
        f"{recipe.epochs} epochs): final top-1 {final['test_top1']:.2f}, best (official metric) "
        f"{best['test_top1']:.2f} at epoch {best['epoch']} (teacher {record['teacher_top1']:.2f}) -> {args.out}"
    )
    return 0


def _file_digest(path: str) -> str:
    """SHA-256 of the teacher file (a checkpoint of another teacher is never resumed)."""
    file = Path(path)
    if not file.is_file():
        return path
    sha = hashlib.sha256()
    with file.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()
