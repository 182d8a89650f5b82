"""The records about a teacher itself: ``teacher`` (how it was built) and ``teacher_eval``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from smi.records.common import Figures

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
class TeacherBuild(Figures):
    """A ``teacher`` record's figures (``smi train-teacher``); its ``seed`` is also its ``teacher_seed``.

    Attributes:
        file: The teacher file written.
        teacher_spec: The teacher spec, as configured.
        dataset_spec: The dataset spec it was built on.
        training: The figures of :func:`smi.teachers.build_teacher` (:data:`TRAINING_KEYS`: test
            top-1/top-5 in %, test images, parameters, source, recipe, wall and CPU training time,
            optimiser steps, per-epoch history), written as top-level keys.
    """

    KIND: ClassVar[str] = "teacher"
    SPREAD: ClassVar[tuple[str, ...]] = ("training",)

    file: str
    teacher_spec: dict[str, Any]
    dataset_spec: dict[str, Any]
    training: Mapping[str, Any]


@dataclass
class TeacherEvaluation(Figures):
    """A ``teacher_eval`` record's figures (``smi eval-teacher``).

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

    KIND: ClassVar[str] = "teacher_eval"
    # The evaluation has no seed, and the record has never named the teacher's (kept so that
    # summaries of earlier runs stay comparable).
    OMITS: ClassVar[tuple[str, ...]] = ("seed", "teacher_seed")

    split: str
    top1: float
    top5: float
    num_images: int
    eval_time_s: float
    num_params: int
    recipe: dict[str, Any] | None
    dataset_spec: dict[str, Any]
