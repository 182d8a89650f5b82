"""``smi invert``, ``smi methods`` and ``smi bench-inversion`` as a user calls them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smi.cli import main
from smi.errors import SMIError
from smi.imageset import ImageSet
from smi.methods.registry import available_methods, create_method
from smi.teachers import save_teacher
from tests.tiny import make_teacher, make_tiny_vit


@pytest.fixture
def teacher_file(tmp_path: Path) -> Path:
    teacher = make_teacher(make_tiny_vit(embed_dim=32, depth=1, num_heads=2))
    teacher.metadata["model_kwargs"] = {
        "img_size": 32,
        "patch_size": 4,
        "embed_dim": 32,
        "depth": 1,
        "num_heads": 2,
        "mlp_ratio": 2.0,
    }
    path = tmp_path / "teacher.pt"
    save_teacher(teacher, path, {"source": "test"})
    return path


def test_invert_writes_image_set_metrics_and_grid(teacher_file: Path, tmp_path: Path) -> None:
    out, metrics, grid = tmp_path / "set.pt", tmp_path / "m.json", tmp_path / "g.png"
    code = main(
        [
            "invert",
            "--teacher",
            str(teacher_file),
            "--teacher-id",
            "tiny",
            "--method",
            "smi",
            "--schedule",
            "1",
            "2",
            "--ratio",
            "0.5",
            "--num-images",
            "6",
            "--batch-size",
            "4",
            "--iterations",
            "4",
            "--seed",
            "1",
            "--out",
            str(out),
            "--metrics",
            str(metrics),
            "--grid",
            str(grid),
            "--no-progress",
        ]
    )
    assert code == 0
    image_set = ImageSet.load(out)
    assert image_set.images.shape == (6, 3, 32, 32) and image_set.keep_masks.shape == (6, 8, 8)
    assert image_set.keep_masks.flatten(1).sum(1).tolist() == [16] * 6
    assert image_set.metadata["method"] == "smi" and image_set.metadata["seed"] == 1
    record = json.loads(metrics.read_text())
    assert record["kind"] == "inversion" and record["teacher"] == "tiny" and record["num_images"] == 6
    assert record["active_tokens"] == [64, 64, 32, 16]
    assert record["flops_total"] > 0 and record["gflops_per_image"] > 0
    assert record["provenance"]["seed"] == 1 and record["provenance"]["config_hash"]
    assert grid.stat().st_size > 100


def test_unknown_method_is_one_line_error(teacher_file: Path, tmp_path: Path, capsys) -> None:
    code = main(
        [
            "invert",
            "--teacher",
            str(teacher_file),
            "--method",
            "smj",
            "--num-images",
            "2",
            "--out",
            str(tmp_path / "x.pt"),
            "--metrics",
            str(tmp_path / "x.json"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown method 'smj'" in err and "smi" in err and "Traceback" not in err
    assert not (tmp_path / "x.pt").exists()


def test_unsorted_schedule_is_one_line_error(teacher_file: Path, tmp_path: Path, capsys) -> None:
    code = main(
        [
            "invert",
            "--teacher",
            str(teacher_file),
            "--method",
            "smi",
            "--schedule",
            "5",
            "3",
            "--num-images",
            "2",
            "--out",
            str(tmp_path / "x.pt"),
            "--metrics",
            str(tmp_path / "x.json"),
        ]
    )
    assert code == 2 and "strictly increasing" in capsys.readouterr().err


def test_missing_teacher_file_is_one_line_error(tmp_path: Path, capsys) -> None:
    code = main(
        [
            "invert",
            "--teacher",
            str(tmp_path / "nope.pt"),
            "--method",
            "dense",
            "--num-images",
            "2",
            "--out",
            str(tmp_path / "x.pt"),
            "--metrics",
            str(tmp_path / "x.json"),
        ]
    )
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_methods_are_registered_and_listed(capsys) -> None:
    assert {"dense", "smi", "smi-random"} <= set(available_methods())
    assert main(["methods"]) == 0
    assert "smi-random" in capsys.readouterr().out
    with pytest.raises(SMIError, match="unknown key"):
        create_method("smi", {"iteration": [1]})


def test_bench_inversion_reports_ratios(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench-inversion",
            "--model",
            "vit_tiny_patch16_224",
            "--img-size",
            "32",
            "--batch-size",
            "2",
            "--iterations",
            "8",
            "--schedule",
            "1",
            "2",
            "3",
            "4",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    figures = json.loads(out.read_text())
    assert figures["flop_ratio"] > 1 and figures["wall_time_speedup"] > 0
    assert 0 < figures["full_schedule_flop_reduction_pct"] < 100


def test_bench_unknown_model_is_clear(capsys) -> None:
    assert main(["bench-inversion", "--model", "deit_tiny_patch17_224"]) == 2
    assert "unknown timm model" in capsys.readouterr().err


def test_bench_non_vit_model_is_clear(capsys) -> None:
    assert main(["bench-inversion", "--model", "resnet18"]) == 2
    assert "not a timm VisionTransformer" in capsys.readouterr().err
