"""Foreground precision of CLS-attention stopping on shapes (behaviour, not accuracy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from smi.cli import main
from smi.data import DatasetSpec, load_dataset
from smi.errors import SMIError
from smi.foreground import foreground_precision, patch_foreground, stop_at_random, stop_by_attention
from smi.inversion.schedule import StoppingSchedule
from smi.records import COMMON_KEYS, FOREGROUND_KEYS, SALIENCY_KEYS
from smi.sparse_vit import TokenSubsetViT
from smi.teachers import TeacherSpec, build_teacher, save_teacher

MODEL = "vit_tiny_patch16_224"
KWARGS = {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 1, "num_heads": 2, "mlp_ratio": 2}
SHAPES = DatasetSpec("shapes", options={"num_train": 100, "num_test": 60, "seed": 0})


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = TeacherSpec(MODEL, KWARGS, "train", recipe={"epochs": 1, "batch_size": 50})
    teacher, metrics = build_teacher(spec, SHAPES, seed=0, progress=False)
    path = tmp_path_factory.mktemp("fg") / "shapes.pt"
    save_teacher(teacher, path, {"recipe": metrics["recipe"]})
    return path


def test_patch_foreground_uses_half_the_pixels() -> None:
    tsv = TokenSubsetViT(__import__("timm").create_model(MODEL, num_classes=3, **KWARGS))
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[0, :4, :2] = True  # patch 0: exactly half foreground
    masks[0, 4:8, 4:5] = True  # patch 5: a quarter
    fg = patch_foreground(tsv, masks)
    assert fg.shape == (1, 16) and fg[0].nonzero().flatten().tolist() == [0]


def test_attention_stopping_keeps_the_top_scoring_patches(teacher_file: Path) -> None:
    from smi.teachers import load_teacher

    teacher = load_teacher(teacher_file)
    tsv = TokenSubsetViT(teacher.model)
    images = load_dataset(SHAPES, "test", teacher.data_config).images[:4]
    schedule = StoppingSchedule.build([1, 2], 0.3)
    counts = schedule.kept_counts(16)
    kept = stop_by_attention(tsv, images, schedule)
    assert [k.shape for k in kept] == [(4, counts[1]), (4, counts[2])]
    with torch.no_grad():
        scores = tsv.forward(images, return_cls_attention=True).cls_attention
    expected = scores.topk(counts[1], dim=1).indices.sort(dim=1).values
    assert torch.equal(kept[0], expected)
    assert all(set(b.tolist()) <= set(a.tolist()) for a, b in zip(kept[0], kept[1])), "stopped patches stay stopped"
    rand = stop_at_random(4, 16, schedule, torch.Generator().manual_seed(0))
    assert [r.shape for r in rand] == [k.shape for k in kept]


def test_foreground_precision_report(teacher_file: Path) -> None:
    from smi.teachers import load_teacher

    teacher = load_teacher(teacher_file)
    dataset = load_dataset(SHAPES, "test", teacher.data_config, with_masks=True)
    schedule = StoppingSchedule.build([1, 2, 3, 4], 0.3)
    result = foreground_precision(teacher, dataset, schedule, num_images=60, batch_size=25, seed=0, progress=False)
    assert result["kept_patches"] == schedule.kept_counts(16)[-1] and result["num_patches"] == 16
    assert result["num_images"] == 60 and len(result["steps"]) == 4
    for key in ("precision", "recall", "random_precision", "random_recall", "fg_fraction"):
        assert 0.0 <= result[key] <= 1.0, key
    # Random stopping keeps a uniform subset: its precision estimates the foreground fraction.
    assert abs(result["random_precision"] - result["fg_fraction"]) < 0.08
    assert result["random_recall"] == pytest.approx(result["kept_patches"] / 16, abs=0.1)
    again = foreground_precision(teacher, dataset, schedule, num_images=60, batch_size=60, seed=0, progress=False)
    assert again["precision"] == pytest.approx(result["precision"])
    with pytest.raises(SMIError, match="with_masks"):
        foreground_precision(teacher, load_dataset(SHAPES, "test", teacher.data_config), schedule, progress=False)


def test_foreground_cli(tmp_path: Path, teacher_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fg.json"
    args = [
        "foreground",
        "--teacher",
        str(teacher_file),
        "--iterations",
        "1",
        "2",
        "--ratio",
        "0.5",
        "--num-images",
        "20",
        "--out",
        str(out),
        "--teacher-id",
        "tiny",
        "--no-progress",
        "--threads",
        "1",
    ]
    assert main(args) == 0
    record = json.loads(out.read_text())
    assert record["kind"] == "foreground" and record["teacher"] == "tiny" and record["dataset"] == "shapes"
    assert record["kept_patches"] == 4 and record["num_images"] == 20 and "provenance" in record
    # The record contract (smi.records): the scores are exactly the documented FOREGROUND_KEYS.
    assert set(record) == {*COMMON_KEYS, "split", "iterations", "ratio", *FOREGROUND_KEYS}
    for key in ("precision", "recall", "random_precision", "random_recall", "fg_fraction", "num_patches"):
        assert key in record
    bad = [
        "foreground",
        "--teacher",
        str(teacher_file),
        "--dataset-spec",
        '{"name": "digits"}',
        "--out",
        str(tmp_path / "x.json"),
    ]
    assert main(bad) == 2 and "only 'shapes'" in capsys.readouterr().err


def test_foreground_cli_scores_inverted_sets_and_checks_the_proxy(tmp_path: Path, teacher_file: Path) -> None:
    from smi.imageset import ImageSet

    gen = torch.Generator().manual_seed(0)
    sparse = torch.zeros(6, 4, 4, dtype=torch.bool)
    sparse[:, 1:3, 1:3] = True
    paths = []
    for name, mask in (("smi", sparse), ("dense", torch.ones(6, 4, 4, dtype=torch.bool))):
        path = tmp_path / f"{name}.pt"
        ImageSet(torch.rand(6, 3, 16, 16, generator=gen), mask, torch.arange(6) % 10, {"method": name, "seed": 1}).save(
            path
        )
        paths.append(str(path))
    out = tmp_path / "fg.json"
    args = [
        "foreground",
        "--teacher",
        str(teacher_file),
        "--iterations",
        "1",
        "2",
        "--ratio",
        "0.5",
        "--num-images",
        "20",
        "--image-sets",
        *paths,
        "--out",
        str(out),
        "--no-progress",
        "--threads",
        "1",
    ]
    assert main(args) == 0
    record = json.loads(out.read_text())
    assert set(record["inverted"]) == {"smi", "dense"}
    assert set(record) == {*COMMON_KEYS, "split", "iterations", "ratio", *FOREGROUND_KEYS, *SALIENCY_KEYS}
    assert record["inverted"]["smi"]["seed1"]["kept_patches"] == 4.0
    assert record["inverted"]["dense"]["seed1"]["stopped_after_inversion"] == 6
    assert 0.0 <= record["saliency_proxy_precision"] <= 1.0
    assert main([*args[:-5], "--labels", "only-one", "--out", str(out)]) == 2
