"""The record contract (smi.records): kinds, shared keys and one builder per kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from smi.records import (
    COMMON_KEYS,
    FOREGROUND_KEYS,
    KINDS,
    PTQ_KEYS,
    SALIENCY_KEYS,
    TRAINING_KEYS,
    Figures,
    Foreground,
    InversionCosts,
    OfficialDistillation,
    Quantization,
    SuiteDistillation,
    TeacherBuild,
    TeacherEvaluation,
    combine,
    inversion_record,
    mean_kept_patches,
    teacher_keys,
)
from smi.report.aggregate import KINDS as AGGREGATED_KINDS
from smi.types import Teacher

#: What every kind's record holds beyond the common keys, as docs/architecture.md lists it.
QUANTIZATION_OWN = {"calibration", "image_set", "set_teacher", "allow_foreign_set", *PTQ_KEYS}
DISTILLATION_OWN = {
    "protocol",
    "method",
    "student",
    "student_model_name",
    "epochs",
    "num_images",
    "final_top1",
    "final_top5",
    "teacher_top1",
    "teacher_top5",
    "train_time_s",
    "curve",
    "student_spec",
    "recipe",
}
SUITE_OWN = {"image_set", "image_sparsity", "set_teacher", "allow_foreign_set"}
SUITE_OPTIONAL = {"budget_gflops", "gflops_per_image", "final_top1_correlated", "decorrelation_gap"}
OFFICIAL_OWN = {
    "inversion_method",
    "method_params",
    "images_per_epoch",
    "official_best_top1",
    "official_best_top5",
    "official_best_epoch",
    "resumed_from_epoch",
    "inversion_config",
}
TEACHER_OWN = {"file", "teacher_spec", "dataset_spec", *TRAINING_KEYS}
TEACHER_EVAL_OWN = {"split", "top1", "top5", "num_images", "eval_time_s", "num_params", "recipe", "dataset_spec"}
FOREGROUND_OWN = {"split", "iterations", "ratio", *FOREGROUND_KEYS}
PROVENANCE = {"threads": 1}


def costs(**overrides) -> InversionCosts:
    values = dict(
        num_images=4,
        num_patches=64,
        final_kept_patches=16.0,
        wall_time_s=2.0,
        flops_total=8e9,
        peak_memory_bytes=10,
        peak_memory_after_last_stop_bytes=5,
        memory_kind="saved_activations",
    )
    return InversionCosts(**{**values, **overrides})


def test_every_kind_written_by_a_command_is_one_the_summary_knows() -> None:
    assert "teacher_eval" in KINDS and AGGREGATED_KINDS is KINDS


def test_teacher_keys_are_the_common_keys_and_reject_an_unknown_kind(tiny_teacher) -> None:
    keys = teacher_keys("quantization", tiny_teacher, "vit-xs", 3)
    assert set(keys) | {"provenance"} == set(COMMON_KEYS)
    assert keys["teacher"] == "vit-xs" and keys["seed"] == 3
    with pytest.raises(ValueError, match="unknown record kind"):
        teacher_keys("quantisation", tiny_teacher, "vit-xs", 3)


def test_per_image_costs_are_derived_from_the_produced_images() -> None:
    keys = costs().as_keys()
    assert keys["time_per_image_s"] == 0.5 and keys["gflops_per_image"] == 2.0
    assert costs(flops_total=None).as_keys()["gflops_per_image"] is None  # an external command's unknown FLOPs


def test_suite_and_external_records_share_every_key(tiny_teacher) -> None:
    common = dict(teacher=tiny_teacher, teacher_id="t", seed=0, image_set="s.pt", config_hash="h", provenance={})
    suite = inversion_record(
        **common,
        method={"method": "smi", "method_name": "smi", "method_params": {}, "protocol": "suite"},
        costs=costs(batch_size=4, iterations=10, active_tokens=[64.0], loss_curve=[1.0], decision_iterations=[2]),
        inversion_config={"iterations": 10},
    )
    external = inversion_record(
        **common,
        method={"method": "toy", "method_params": {"command": "x"}},
        costs=costs(flops_total=None, peak_memory_bytes=None, peak_memory_after_last_stop_bytes=None, memory_kind=None),
        inversion_config=None,
        external=True,
    )
    assert set(suite) - set(external) == {"method_name", "protocol"}
    assert set(external) - set(suite) == {"external"}
    for record in (suite, external):
        assert record["kind"] == "inversion" and record["time_protocol"] == "job"
        assert set(COMMON_KEYS) <= set(record)


def test_mean_kept_patches_counts_per_image() -> None:
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :2] = True  # 8 patches
    masks[1, 0, :2] = True  # 2 patches
    assert mean_kept_patches(masks) == 5.0


@pytest.fixture
def teacher() -> Teacher:
    """A teacher as the builders see it (they read its name, dataset and seed, never run it)."""
    return Teacher(torch.nn.Identity(), "vit_x", 3, {}, "shapes", {"seed": 7})


def quantization(**ptq_overrides) -> Quantization:
    ptq = {**dict.fromkeys(PTQ_KEYS, 1.0), **ptq_overrides}
    return Quantization(calibration="smi", image_set="s.pt", set_teacher="same", allow_foreign_set=False, ptq=ptq)


def distillation_figures() -> dict:
    return dict(
        method="smi",
        student="s",
        student_model_name="vit_s",
        epochs=2,
        num_images=8,
        final_top1=60.0,
        final_top5=90.0,
        teacher_top1=80.0,
        teacher_top5=99.0,
        train_time_s=1.0,
        curve=[{"epoch": 1}],
        student_spec={"model": "vit_s"},
        recipe={"epochs": 2},
    )


def suite(**overrides) -> SuiteDistillation:
    own = dict(image_set="s.pt", image_sparsity=0.5, set_teacher="same", allow_foreign_set=False)
    return SuiteDistillation(**{**distillation_figures(), **own, **overrides})


def official() -> OfficialDistillation:
    own = dict(
        inversion_method="smi",
        method_params={},
        images_per_epoch=4,
        official_best_top1=65.0,
        official_best_top5=91.0,
        official_best_epoch=1,
        resumed_from_epoch=None,
        inversion_config={"iterations": 3},
    )
    return OfficialDistillation(**distillation_figures(), **own)


def test_quantization_record_has_its_documented_keys(teacher) -> None:
    record = quantization().record(teacher, "t", 2, PROVENANCE, "shapes")
    assert set(record) == set(COMMON_KEYS) | QUANTIZATION_OWN
    assert record["kind"] == "quantization" and record["provenance"] == PROVENANCE
    assert (record["teacher"], record["teacher_seed"], record["seed"], record["calibration"]) == ("t", 7, 2, "smi")


def test_evaluators_name_the_dataset_they_evaluate_on(teacher) -> None:
    record = quantization().record(teacher, "t", 0, {}, "other")
    assert record["dataset"] == "other"
    assert teacher_keys("teacher", teacher, "t", 0)["dataset"] == "shapes"  # by default the teacher's own


def test_a_key_given_twice_is_refused_not_overwritten(teacher) -> None:
    with pytest.raises(ValueError, match=r"\['seed'\] given twice"):
        quantization(seed=5).record(teacher, "t", 0, {}, "shapes")
    with pytest.raises(ValueError, match="given twice"):
        combine({"a": 1}, {"b": 2}, {"a": 1})


def test_suite_distillation_record_has_its_keys_and_optional_ones_only_when_measured(teacher) -> None:
    def record(figures: SuiteDistillation) -> dict:
        return figures.record(teacher, "t", 1, {}, "shapes")

    plain = record(suite())
    assert set(plain) == set(COMMON_KEYS) | DISTILLATION_OWN | SUITE_OWN
    assert plain["protocol"] == "suite" and plain["teacher_seed"] == 7
    full = record(suite(budget_gflops=3.0, gflops_per_image=0.5, final_top1_correlated=75.0))
    assert set(full) - set(plain) == SUITE_OPTIONAL
    assert full["decorrelation_gap"] == 15.0  # correlated minus final top-1


def test_official_distillation_record_has_its_keys_without_the_teacher_seed(teacher) -> None:
    record = official().record(teacher, "t", 1, {}, "shapes")
    assert set(record) == (set(COMMON_KEYS) - {"teacher_seed"}) | DISTILLATION_OWN | OFFICIAL_OWN
    assert record["protocol"] == "official" and record["resumed_from_epoch"] is None


def test_teacher_record_has_its_keys_and_the_build_seed_twice(teacher) -> None:
    build = TeacherBuild(
        file="t.pt",
        teacher_spec={"model": "vit_x"},
        dataset_spec={"name": "shapes"},
        training=dict.fromkeys(TRAINING_KEYS),
    )
    record = build.record(teacher, "t", 7, {})
    assert set(record) == set(COMMON_KEYS) | TEACHER_OWN
    assert record["kind"] == "teacher" and record["seed"] == record["teacher_seed"] == 7


def test_teacher_eval_record_has_its_keys_and_no_seeds(teacher) -> None:
    evaluation = TeacherEvaluation(
        split="test",
        top1=50.0,
        top5=90.0,
        num_images=10,
        eval_time_s=0.1,
        num_params=100,
        recipe=None,
        dataset_spec={"name": "shapes"},
    )
    record = evaluation.record(teacher, "t", None, {}, "shapes")
    assert set(record) == (set(COMMON_KEYS) - {"seed", "teacher_seed"}) | TEACHER_EVAL_OWN
    assert record["kind"] == "teacher_eval" and record["split"] == "test"


def test_foreground_record_has_its_keys_and_the_saliency_keys_with_image_sets(teacher) -> None:
    def record(saliency: dict) -> dict:
        figures = Foreground(
            split="test", iterations=[1, 2], ratio=0.3, scores=dict.fromkeys(FOREGROUND_KEYS, 0.5), saliency=saliency
        )
        return figures.record(teacher, "t", 0, {}, "shapes")

    assert set(record({})) == set(COMMON_KEYS) | FOREGROUND_OWN
    assert set(record(dict.fromkeys(SALIENCY_KEYS))) == set(COMMON_KEYS) | FOREGROUND_OWN | set(SALIENCY_KEYS)


@pytest.mark.parametrize("kind", [*KINDS, "quantisation", "teacher-eval", ""])
def test_every_kind_is_accepted_and_any_other_refused(teacher, kind) -> None:
    if kind in KINDS:
        assert teacher_keys(kind, teacher, "t", 0)["kind"] == kind
    else:
        with pytest.raises(ValueError, match="unknown record kind"):
            teacher_keys(kind, teacher, "t", 0)


def test_every_figures_class_builds_a_known_kind_and_a_misnamed_one_is_refused(teacher) -> None:
    def subclasses(cls: type) -> list[type]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    kinds = {getattr(cls, "KIND", None) for cls in subclasses(Figures)} - {None}
    assert kinds == {"teacher", "teacher_eval", "quantization", "distillation", "foreground"} and kinds <= set(KINDS)

    @dataclass
    class Misnamed(Figures):
        KIND: ClassVar[str] = "quantisation"

    with pytest.raises(ValueError, match="unknown record kind 'quantisation'"):
        Misnamed().record(teacher, "t", 0, {})
