"""The records of the evaluators: ``quantization``, ``distillation`` (both protocols), ``foreground``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from smi.records.common import Figures

#: Keys of the post-training quantization figures (what :func:`smi.quant.ptq.run_ptq` returns).
PTQ_KEYS: tuple[str, ...] = (
    "top1",
    "top5",
    "fp_top1",
    "fp_top5",
    "w_bits",
    "a_bits",
    "calib_size",
    "range_estimator",
    "protocol",
    "num_act_quantizers",
    "calib_sparsity",
    "num_test_images",
    "calib_time_s",
    "eval_time_s",
    "quant_config",
    "activation_ranges",
)
#: Keys of the foreground figures (what :func:`smi.foreground.foreground_precision` returns).
FOREGROUND_KEYS: tuple[str, ...] = (
    "precision",
    "recall",
    "random_precision",
    "random_recall",
    "fg_fraction",
    "kept_patches",
    "num_patches",
    "num_images",
    "steps",
)
#: Keys of the saliency scores of inverted image sets (``smi foreground --image-sets``).
SALIENCY_KEYS: tuple[str, ...] = ("inverted", "saliency_proxy_precision", "saliency_proxy_chance")


@dataclass
class Quantization(Figures):
    """A ``quantization`` record's figures (``smi quantize``; its ``seed`` is the calibration subset's).

    Attributes:
        calibration: Name of the calibration source (a method, ``real``, ``noise``).
        image_set: The calibration image-set file.
        set_teacher: :func:`smi.imageset.check_teacher_identity` of the set.
        allow_foreign_set: Whether a set of another teacher was allowed.
        ptq: The quantization figures (:data:`PTQ_KEYS`: quantized and floating-point accuracy,
            bits, calibration size and sparsity, times, config, activation ranges), written as
            top-level keys.
    """

    KIND: ClassVar[str] = "quantization"
    SPREAD: ClassVar[tuple[str, ...]] = ("ptq",)

    calibration: str
    image_set: str
    set_teacher: str
    allow_foreign_set: bool
    ptq: Mapping[str, Any]


@dataclass(kw_only=True)
class Distillation(Figures):
    """A ``distillation`` record's figures in both protocols (``smi distill``); built as a subclass.

    Attributes:
        method: The image source's name (a method, ``real``, ``noise``).
        student: The student's id (``--student-id``, by default its model name).
        student_model_name: The student's timm model name.
        epochs: Epochs of the recipe.
        num_images: Images distilled on (protocol official: the final pool size).
        final_top1: The student's final-epoch top-1 on the real test split, in %.
        final_top5: Its final-epoch top-5, in %.
        teacher_top1: The teacher's top-1 on the same split, in %.
        teacher_top5: The teacher's top-5, in %.
        train_time_s: Wall time of the training.
        curve: The per-epoch evaluations.
        student_spec: The student spec.
        recipe: The distillation recipe.
    """

    KIND: ClassVar[str] = "distillation"
    #: The ``protocol`` key of the record.
    PROTOCOL: ClassVar[str]

    method: str
    student: str
    student_model_name: str
    epochs: int
    num_images: int
    final_top1: float
    final_top5: float
    teacher_top1: float
    teacher_top5: float
    train_time_s: float
    curve: list[dict[str, Any]]
    student_spec: dict[str, Any]
    recipe: dict[str, Any]

    def as_keys(self) -> dict[str, Any]:
        """The record's keys of this part, ``protocol`` first."""
        return {"protocol": self.PROTOCOL, **super().as_keys()}


@dataclass(kw_only=True)
class SuiteDistillation(Distillation):
    """A ``distillation`` record of protocol ``suite`` (a fixed image set).

    Attributes:
        image_set: The image-set file distilled on.
        image_sparsity: Its fraction of stopped patches.
        set_teacher: :func:`smi.imageset.check_teacher_identity` of the set.
        allow_foreign_set: Whether a set of another teacher was allowed.
        budget_gflops: The equal inversion budget, if the images were counted by one (else no key).
        gflops_per_image: The set's inversion cost per image under that budget (else no key).
        final_top1_correlated: Final top-1 on the dataset's correlated split (``shapes``), else no key;
            the record then also has ``decorrelation_gap`` (this minus ``final_top1``).
    """

    PROTOCOL: ClassVar[str] = "suite"
    #: Figures written only where the job measured them (``None`` otherwise).
    OPTIONAL: ClassVar[tuple[str, ...]] = ("budget_gflops", "gflops_per_image", "final_top1_correlated")

    image_set: str
    image_sparsity: float
    set_teacher: str
    allow_foreign_set: bool
    budget_gflops: float | None = None
    gflops_per_image: float | None = None
    final_top1_correlated: float | None = None

    def as_keys(self) -> dict[str, Any]:
        """The record's keys of this part, the optional figures only where measured."""
        keys = super().as_keys()
        for optional in self.OPTIONAL:
            if keys[optional] is None:
                del keys[optional]
        if self.final_top1_correlated is not None:
            keys["decorrelation_gap"] = self.final_top1_correlated - self.final_top1
        return keys


@dataclass(kw_only=True)
class OfficialDistillation(Distillation):
    """A ``distillation`` record of protocol ``official`` (a pool synthesised inside the job).

    Attributes:
        inversion_method: The registered method that filled the pool.
        method_params: Its parameters.
        images_per_epoch: Images added to the pool each epoch.
        official_best_top1: The best evaluation's top-1 (the official code's metric), in %.
        official_best_top5: Its top-5, in %.
        official_best_epoch: The epoch of the best evaluation.
        resumed_from_epoch: The epoch an interrupted run resumed from (``None`` if it did not).
        inversion_config: The inversion config of the pool's synthesis.
    """

    PROTOCOL: ClassVar[str] = "official"
    # The official record has never named the teacher's seed; kept so summaries stay comparable.
    OMITS: ClassVar[tuple[str, ...]] = ("teacher_seed",)

    inversion_method: str
    method_params: dict[str, Any]
    images_per_epoch: int
    official_best_top1: float
    official_best_top5: float
    official_best_epoch: int
    resumed_from_epoch: int | None
    inversion_config: dict[str, Any]


@dataclass
class Foreground(Figures):
    """A ``foreground`` record's figures (``smi foreground``; its ``seed`` is the random baseline's).

    Attributes:
        split: The evaluated split (``test`` or ``test_correlated``).
        iterations: The stopping steps.
        ratio: Fraction of active patches stopped per step.
        scores: The foreground figures (:data:`FOREGROUND_KEYS`), written as top-level keys.
        saliency: The inverted sets' scores (:data:`SALIENCY_KEYS`), or empty without ``--image-sets``.
    """

    KIND: ClassVar[str] = "foreground"
    SPREAD: ClassVar[tuple[str, ...]] = ("scores", "saliency")

    split: str
    iterations: list[int]
    ratio: float
    scores: Mapping[str, Any]
    saliency: Mapping[str, Any]
