"""Testbed properties: channel ranges and the activation outlier ratio on hand-made inputs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from smi.cli import main
from smi.errors import SMIError
from smi.testbed import LinearActivationRanges, channel_ranges, measure_outliers, outlier_ratio, summarise
from tests.tiny import make_tiny_vit, save_digits_teacher

TINY_KWARGS = {"img_size": 32, "patch_size": 4, "embed_dim": 48, "depth": 2, "num_heads": 3, "mlp_ratio": 2.0}


def test_channel_ranges_over_tokens_and_batch():
    # Channel 0 spans [-1, 3], channel 1 spans [2, 2] (constant), channel 2 spans [-5, 0].
    act = torch.tensor([[[-1.0, 2.0, 0.0], [3.0, 2.0, -5.0]], [[0.0, 2.0, -1.0], [1.0, 2.0, -2.0]]])
    assert channel_ranges(act).tolist() == [4.0, 0.0, 5.0]


def test_outlier_ratio_known_answer():
    # Ranges 1, 2, 2, 3, 40: median 2, largest 40 -> 20.
    assert outlier_ratio(torch.tensor([3.0, 2.0, 40.0, 1.0, 2.0])) == pytest.approx(20.0)
    # Equal channels: no outlier.
    assert outlier_ratio(torch.full((8,), 0.7)) == pytest.approx(1.0)
    # Even count: the lower median (torch.median): ranges 1, 2, 4, 8 -> 8 / 2.
    assert outlier_ratio(torch.tensor([8.0, 1.0, 4.0, 2.0])) == pytest.approx(4.0)


def test_outlier_ratio_degenerate_and_bad_input():
    assert outlier_ratio(torch.tensor([0.0, 0.0, 1.0])) == math.inf
    assert math.isnan(outlier_ratio(torch.zeros(4)))
    with pytest.raises(SMIError):
        outlier_ratio(torch.tensor([-1.0, 2.0]))
    with pytest.raises(SMIError):
        outlier_ratio(torch.zeros(2, 2))


class _TwoLinears(nn.Module):
    """A 'ViT' whose single block is two linears; the second doubles channel 0 only."""

    def __init__(self) -> None:
        super().__init__()
        first = nn.Linear(4, 4, bias=False)
        second = nn.Linear(4, 4, bias=False)
        with torch.no_grad():
            first.weight.copy_(torch.eye(4))
            second.weight.copy_(torch.diag(torch.tensor([10.0, 1.0, 1.0, 1.0])))
        self.blocks = nn.Sequential(nn.Sequential(first, second))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def test_hooks_measure_linear_inputs_and_outputs_across_batches():
    model = _TwoLinears()
    # Each channel spans [-1, 1] over the two batches, so every input has ratio 1; the second
    # linear's output has ranges 20, 2, 2, 2 -> ratio 10.
    batches = [torch.tensor([[[1.0, -1.0, 1.0, -1.0]]]), torch.tensor([[[-1.0, 1.0, -1.0, 1.0]]])]
    with LinearActivationRanges(model) as recorder:
        for batch in batches:
            model(batch)
    ratios = {(r["layer"], r["position"]): r["outlier_ratio"] for r in recorder.ratios()}
    assert ratios == pytest.approx(
        {
            ("blocks.0.0", "input"): 1.0,
            ("blocks.0.0", "output"): 1.0,
            ("blocks.0.1", "input"): 1.0,
            ("blocks.0.1", "output"): 10.0,
        }
    )
    # Hooks are gone after the context: a later forward changes nothing.
    model(torch.full((1, 1, 4), 100.0))
    assert recorder.ratios()[-1]["outlier_ratio"] == pytest.approx(10.0)
    assert summarise([1.0, 1.0, 1.0, 10.0]) == {"median": 1.0, "max": 10.0}


def test_recorder_rejects_models_without_blocks_and_empty_runs():
    with pytest.raises(SMIError, match="blocks"):
        LinearActivationRanges(nn.Linear(2, 2))
    with pytest.raises(SMIError, match="no activation"):
        with LinearActivationRanges(_TwoLinears()) as recorder:
            pass
        recorder.ratios()


def test_measure_outliers_on_a_vit_covers_every_block_linear():
    vit = make_tiny_vit(depth=2)
    result = measure_outliers(vit, torch.randn(6, 3, 32, 32), batch_size=4, device="cpu")
    # 2 blocks x (qkv, proj, fc1, fc2) x (input, output).
    assert len(result["per_activation"]) == 16
    assert result["num_images"] == 6
    assert 1.0 <= result["median"] <= result["max"]


def test_cli_testbed_writes_split_accuracies_and_ratios(tmp_path):
    teacher = save_digits_teacher(tmp_path / "t.pt", TINY_KWARGS)
    out = tmp_path / "testbed.json"
    code = main(
        [
            "testbed",
            "--teacher",
            str(teacher),
            "--dataset-spec",
            '{"name": "digits"}',
            "--num-images",
            "16",
            "--out",
            str(out),
            "--threads",
            "1",
        ]
    )
    assert code == 0
    record = json.loads(out.read_text())
    assert record["kind"] == "testbed" and record["dataset"] == "digits"
    assert 0.0 <= record["top1_test"] <= 100.0
    assert "shortcut_reliance" not in record  # digits has no correlated split
    assert record["outlier_ratio_real_median"] >= 1.0
    assert "outlier_ratio_noise_median" not in record


# --- the testbed table ------------------------------------------------------------------------


def _testbed_record(dataset, teacher, **values):
    return {"kind": "testbed", "dataset": dataset, "teacher": teacher, **values, "provenance": {"seed": None}}


def test_testbed_table_cells_and_pretraining_join():
    from smi.report.aggregate import aggregate
    from smi.report.render import render_markdown
    from smi.report.tables import testbed_table

    records = [
        _testbed_record(
            "shapes",
            "vit-t",
            top1_test=70.0,
            top1_test_correlated=95.0,
            shortcut_reliance=25.0,
            outlier_ratio_real_median=3.0,
            outlier_ratio_real_max=12.0,
            outlier_ratio_noise_median=2.0,
            outlier_ratio_noise_max=5.0,
        ),
        _testbed_record("digits", "vit-t", top1_test=98.0, outlier_ratio_real_median=4.0, outlier_ratio_real_max=9.0),
        _testbed_record("digits", "vit-s", top1_test=97.0, outlier_ratio_real_median=6.0, outlier_ratio_real_max=30.0),
        {
            "kind": "pretrain",
            "dataset": "digits",
            "pretrain_dataset": "shapes",
            "student": "st",
            "pretrain_top1": 80.0,
            "provenance": {"seed": 0},
        },
        {
            "kind": "pretrain",
            "dataset": "shapes",
            "pretrain_dataset": "digits",
            "student": "st",
            "pretrain_top1": 90.0,
            "provenance": {"seed": 0},
        },
    ]
    table = testbed_table(aggregate((f"r{i}", r) for i, r in enumerate(records)).summary)
    cells = table.cells.set_index(["dataset", "teacher", "column"])
    assert cells.loc[("shapes", "vit-t", "Shortcut reliance (pp)"), "mean"] == 25.0
    assert cells.loc[("digits", "vit-s", "Outlier ratio real, max"), "mean"] == 30.0
    # The pretrained student belongs to every teacher of its target dataset, its source named.
    assert cells.loc[("digits", "vit-s", "st pretraining top-1 (%)"), "mean"] == 80.0
    assert cells.loc[("digits", "vit-s", "st pretraining top-1 (%)"), "note"] == "(on shapes)"
    assert cells.loc[("shapes", "vit-t", "st pretraining top-1 (%)"), "mean"] == 90.0
    text = render_markdown(table)
    assert "Shortcut reliance" in text and "(on digits)" in text
    assert list(table.rows["teacher"]) == ["vit-s", "vit-t", "vit-t"]


def test_testbed_table_without_records_is_empty():
    import pandas as pd

    from smi.report.tables import testbed_table

    assert testbed_table(pd.DataFrame({"kind": ["teacher"], "dataset": ["digits"], "teacher": ["t"]})).empty


# --- foreground precision on inverted images: the saliency region --------------------------------


def test_top_region_and_kept_precision_known_answers():
    from smi.testbed_saliency import kept_precision, top_region

    saliency = torch.tensor([[3.0, 1.0, 2.0, 0.0], [0.0, 5.0, 5.0, 1.0]])
    region = top_region(saliency, torch.tensor([2, 1]))
    assert region.tolist() == [[True, False, True, False], [False, True, False, False]]  # tie -> lower index
    kept = torch.tensor([[True, True, False, False], [False, True, True, False]])
    assert kept_precision(kept, region).tolist() == [0.5, 0.5]
    with pytest.raises(SMIError, match="keeps no patch"):
        kept_precision(torch.zeros(1, 4, dtype=torch.bool), region[:1])


class _PatchZeroClassifier(nn.Module):
    """Class 0's logit reads only the pixels of grid patch 0 (top-left 4x4); class 1 is constant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = x[:, :, :4, :4].sum(dim=(1, 2, 3))
        return torch.stack([evidence, torch.zeros_like(evidence)], dim=1)


def test_patch_saliency_points_at_the_only_patch_the_class_reads():
    from smi.sparse_vit import TokenSubsetViT
    from smi.testbed_saliency import patch_saliency

    tsv = TokenSubsetViT(make_tiny_vit(num_classes=2, img_size=16))
    tsv.model = _PatchZeroClassifier()
    saliency = patch_saliency(tsv, torch.zeros(2, 3, 16, 16), torch.tensor([0, 1]))
    assert saliency.shape == (2, 16)
    # d log p0 / dx = (1 - p0) on patch 0 (p0 = 1/2 at zero input), 0 elsewhere; 48 pixels -> 0.5 * sqrt(48).
    assert saliency[0, 0].item() == pytest.approx(0.5 * math.sqrt(48))
    assert saliency[0, 1:].abs().max().item() == 0.0
    assert saliency[1, 0].item() == pytest.approx(0.5 * math.sqrt(48))  # log p1 falls as patch 0 grows


def test_inverted_precision_uses_own_masks_and_stops_dense_sets():
    from smi.imageset import ImageSet
    from smi.inversion.schedule import StoppingSchedule
    from smi.testbed_saliency import inverted_precision
    from tests.tiny import make_teacher

    teacher = make_teacher(make_tiny_vit(num_classes=10, img_size=16), img_size=16)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 16, 16, generator=gen)
    sparse = torch.zeros(4, 4, 4, dtype=torch.bool)
    sparse[:, :2, :2] = True
    schedule = StoppingSchedule.build([1, 2], 0.3)
    own = inverted_precision(teacher, ImageSet(images, sparse, torch.arange(4)), schedule)
    assert own["kept_patches"] == 4.0 and own["stopped_after_inversion"] == 0
    assert own["chance_precision"] == pytest.approx(4 / 16)
    assert 0.0 <= own["precision"] <= 1.0
    dense = inverted_precision(
        teacher, ImageSet(images, torch.ones(4, 4, 4, dtype=torch.bool), torch.arange(4)), schedule
    )
    assert dense["stopped_after_inversion"] == 4
    assert dense["kept_patches"] == schedule.kept_counts(16)[-1]


# --- pretrained students ---------------------------------------------------------------------------


STUDENT = {
    "model": "vit_tiny_patch16_224",
    "model_kwargs": {"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 1, "num_heads": 2, "mlp_ratio": 2.0},
}


def test_pretrain_student_then_distil_with_a_new_head(tmp_path, capsys):
    from smi.distill.config import StudentSpec
    from smi.distill.student import build_student
    from smi.teachers import load_teacher

    ckpt, metrics = tmp_path / "student.pt", tmp_path / "student.json"
    args = [
        "pretrain-student",
        "--student-spec",
        json.dumps(STUDENT),
        "--dataset-spec",
        '{"name": "shapes", "options": {"num_train": 40, "num_test": 20}}',
        "--recipe",
        '{"epochs": 1, "batch_size": 20}',
        "--target-dataset",
        "digits",
        "--student-id",
        "st",
        "--out",
        str(ckpt),
        "--metrics",
        str(metrics),
        "--no-progress",
        "--threads",
        "1",
    ]
    assert main(args) == 0
    record = json.loads(metrics.read_text())
    assert record["kind"] == "pretrain" and record["dataset"] == "digits" and record["pretrain_dataset"] == "shapes"
    assert record["student"] == "st" and 0.0 <= record["pretrain_top1"] <= 100.0
    # The checkpoint starts a student for a digits teacher: every weight but the head is the pretrained one.
    teacher_file = save_digits_teacher(tmp_path / "t.pt", TINY_KWARGS)
    teacher = load_teacher(teacher_file)
    spec = StudentSpec(STUDENT["model"], STUDENT["model_kwargs"], init="checkpoint", checkpoint=str(ckpt))
    student = build_student(spec, teacher, seed=0, device="cpu")
    pretrained = load_teacher(ckpt).model.state_dict()
    state = student.state_dict()
    assert torch.equal(state["blocks.0.attn.qkv.weight"], pretrained["blocks.0.attn.qkv.weight"])
    assert state["head.weight"].shape == (teacher.num_classes, 32)
    # Pretraining on the target dataset itself is refused.
    bad = [*args[:4], '{"name": "digits"}', *args[5:]]
    assert main(bad) == 2 and "its target dataset" in capsys.readouterr().err
