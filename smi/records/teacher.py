"""The records about a teacher itself: ``teacher`` (how it was built) and ``teacher_eval``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from smi.records.common import combine, teacher_keys

#: Keys of a teacher-building run's figures (what :func:`smi.teachers.build_teacher` measures).
TRAINING_KEYS: tuple[str, ...] = (
    "top1",
    "top5",
    "num_test_images",
    "num_params",
    "source",
    "recipe",
    "train_time_s",
    "train_cpu_time_s",
    "steps",
    "history",
)


@dataclass
class TeacherBuild:
    """What a ``teacher`` record reports beyond the teacher keys (``smi train-teacher``).

    Attributes:
        file: The teacher file written.
        teacher_spec: The teacher spec, as configured.
        dataset_spec: The dataset spec it was built on.
        training: The figures of :func:`smi.teachers.build_teacher` (:data:`TRAINING_KEYS`: test
            top-1/top-5 in %, test images, parameters, source, recipe, wall and CPU training time,
            optimiser steps, per-epoch history), written as top-level keys.
    """

    file: str
    teacher_spec: dict[str, Any]
    dataset_spec: dict[str, Any]
    training: Mapping[str, Any]

    def as_keys(self) -> dict[str, Any]:
        """The record's keys of this part, the training figures at top level."""
        return combine(
            {"file": self.file, "teacher_spec": self.teacher_spec, "dataset_spec": self.dataset_spec}, self.training
        )


def teacher_record(
    *, teacher: Any, teacher_id: str, seed: int, build: TeacherBuild, provenance: dict[str, Any]
) -> dict[str, Any]:
    """The ``teacher`` record of a built teacher.

    Args:
        teacher: The built :class:`smi.types.Teacher` (its metadata's ``seed`` is the build seed).
        teacher_id: The teacher's id in the run.
        seed: The build's seed (also ``teacher_seed``: the teacher is what that seed made).
        build: What the build measured.
        provenance: :func:`smi.io.provenance` of the job.
    """
    return combine(teacher_keys("teacher", teacher, teacher_id, seed), build.as_keys(), {"provenance": provenance})


@dataclass
class TeacherEvaluation:
    """What a ``teacher_eval`` record reports beyond the teacher keys (``smi eval-teacher``).

    Attributes:
        split: The evaluated split (``test``; ``shapes`` also ``test_correlated``).
        top1: Top-1 accuracy in %.
        top5: Top-5 accuracy in %.
        num_images: Images evaluated.
        eval_time_s: Wall time of the evaluation.
        num_params: Parameters of the model.
        recipe: The recipe the teacher file records (``None`` if none).
        dataset_spec: The dataset spec evaluated on.
    """

    split: str
    top1: float
    top5: float
    num_images: int
    eval_time_s: float
    num_params: int
    recipe: dict[str, Any] | None
    dataset_spec: dict[str, Any]


#: Teacher keys a ``teacher_eval`` record leaves out: the evaluation has no seed, and the record has
#: never named the teacher's (summaries of earlier runs stay comparable).
TEACHER_EVAL_OMITS: tuple[str, ...] = ("seed", "teacher_seed")


def teacher_eval_record(
    *, teacher: Any, teacher_id: str, dataset: str, evaluation: TeacherEvaluation, provenance: dict[str, Any]
) -> dict[str, Any]:
    """The ``teacher_eval`` record of one evaluation of a saved teacher.

    Args:
        teacher: The evaluated :class:`smi.types.Teacher`.
        teacher_id: The teacher's id in the run.
        dataset: The evaluated dataset's name.
        evaluation: The figures.
        provenance: :func:`smi.io.provenance` of the job.
    """
    keys = teacher_keys("teacher_eval", teacher, teacher_id, None, dataset=dataset)
    for key in TEACHER_EVAL_OMITS:
        del keys[key]
    return combine(keys, asdict(evaluation), {"provenance": provenance})
