"""The record contract (smi.records): kinds, shared keys and the one inversion-record builder."""

from __future__ import annotations

import pytest
import torch

from smi.records import COMMON_KEYS, KINDS, InversionCosts, inversion_record, mean_kept_patches, teacher_keys
from smi.report.aggregate import KINDS as AGGREGATED_KINDS


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
