"""Teachers: specs, the four sources, the teacher file, bad input, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from smi.cli import main
from smi.data import DatasetSpec, load_dataset
from smi.errors import SMIError
from smi.records import COMMON_KEYS, TRAINING_KEYS
from smi.teachers import Recipe, TeacherSpec, build_teacher, evaluate, load_teacher, read_metadata, save_teacher
from smi.teachers.models import create_from_checkpoint

MODEL = "vit_tiny_patch16_224"
KWARGS = {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 1, "num_heads": 2, "mlp_ratio": 2}
RECIPE = {"epochs": 1, "batch_size": 64, "eval_batch_size": 512}
DIGITS = DatasetSpec("digits")
SPEC = TeacherSpec.from_config({"model": MODEL, "model_kwargs": KWARGS, "source": "train", "recipe": RECIPE})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A tiny digits teacher trained for one epoch, saved by the suite."""
    path = tmp_path_factory.mktemp("teacher") / "tiny.pt"
    teacher, metrics = build_teacher(SPEC, DIGITS, "cpu", seed=0, progress=False)
    save_teacher(teacher, path, {"recipe": metrics["recipe"], "source": "train"})
    return path, metrics


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------- specs
def test_specs_reject_unknown_keys_and_sources() -> None:
    with pytest.raises(SMIError, match="unknown key"):
        TeacherSpec.from_config({"model": MODEL, "modle_kwargs": {}})
    with pytest.raises(SMIError, match="unknown key.*epoch"):
        TeacherSpec.from_config({"model": MODEL, "recipe": {"epoch": 3}})
    with pytest.raises(SMIError, match="unknown teacher source"):
        TeacherSpec.from_config({"model": MODEL, "source": "download"})
    with pytest.raises(SMIError, match="needs 'checkpoint'"):
        TeacherSpec.from_config({"model": MODEL, "source": "checkpoint"})
    assert TeacherSpec.from_config(SPEC.to_config()) == SPEC
    assert Recipe.from_config(RECIPE).epochs == 1


def test_unknown_model_and_non_vit_are_rejected() -> None:
    with pytest.raises(SMIError, match="unknown timm model 'vit_tinyy"):
        build_teacher(TeacherSpec("vit_tinyy_patch16_224"), DIGITS, progress=False)
    with pytest.raises(SMIError, match="not a timm VisionTransformer"):
        build_teacher(TeacherSpec("resnet18"), DIGITS, progress=False)
    with pytest.raises(SMIError, match="invalid model_kwargs"):
        build_teacher(TeacherSpec(MODEL, {"depht": 2}), DIGITS, progress=False)


# ---------------------------------------------------------------- train, save, load
def test_training_writes_a_timm_loadable_file(trained: tuple[Path, dict]) -> None:
    path, metrics = trained
    assert 0 <= metrics["top1"] <= metrics["top5"] <= 100 and metrics["num_test_images"] == 360
    assert metrics["train_time_s"] > 0 and metrics["train_cpu_time_s"] > 0 and len(metrics["history"]) == 1
    meta = read_metadata(path)
    assert meta is not None and meta["model_kwargs"] == KWARGS and meta["num_classes"] == 10
    assert meta["data_config"]["input_size"] == [3, 16, 16] and meta["dataset"] == "digits"
    teacher = load_teacher(path)
    assert not teacher.model.training and not any(p.requires_grad for p in teacher.model.parameters())
    assert teacher.input_size == (3, 16, 16) and teacher.data_config["mean"] == (0.5, 0.5, 0.5)
    scores = evaluate(teacher.model, load_dataset(DIGITS, "test", teacher.data_config), 512)
    assert scores["top1"] == pytest.approx(metrics["top1"])


def test_checkpoint_source_reloads_bit_identically(trained: tuple[Path, dict]) -> None:
    path, metrics = trained
    original = load_teacher(path)
    spec = TeacherSpec(MODEL, source="checkpoint", checkpoint=str(path))
    reloaded, again = build_teacher(spec, DIGITS, progress=False)
    _assert_identical(_state(original.model), _state(reloaded.model))
    assert reloaded.data_config == original.data_config and again["top1"] == pytest.approx(metrics["top1"])
    # A plain timm checkpoint (.safetensors, no suite metadata) loads as well.
    plain = path.with_suffix(".safetensors")
    save_file(_state(original.model), str(plain))
    from_plain, _ = build_teacher(
        TeacherSpec(MODEL, KWARGS, "checkpoint", str(plain), data_config={"mean": (0.5,) * 3, "std": (0.5,) * 3}),
        DIGITS,
        progress=False,
    )
    _assert_identical(_state(original.model), _state(from_plain.model))


def test_training_is_deterministic_by_seed(trained: tuple[Path, dict]) -> None:
    path, _ = trained
    again, _ = build_teacher(SPEC, DIGITS, "cpu", seed=0, progress=False)
    _assert_identical(_state(load_teacher(path).model), _state(again.model))


def test_pretrained_from_local_file_works_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained: tuple[Path, dict]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    weights = tmp_path / "weights.safetensors"
    original = load_teacher(trained[0])
    save_file(_state(original.model), str(weights))
    spec = TeacherSpec(MODEL, KWARGS, "pretrained", pretrained_file=str(weights))
    teacher, metrics = build_teacher(spec, DIGITS, progress=False)
    _assert_identical(_state(original.model), _state(teacher.model))
    assert teacher.input_size == (3, 16, 16) and metrics["train_time_s"] == 0.0


def test_finetune_from_checkpoint_replaces_only_the_head(tmp_path: Path, trained: tuple[Path, dict]) -> None:
    root = tmp_path / "folder"
    for split in ("train", "test"):
        for c in range(3):
            for i in range(2):
                (root / split / f"c{c}").mkdir(parents=True, exist_ok=True)
                pixels = np.random.default_rng(10 * c + i).integers(0, 255, (20, 20, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / f"c{c}" / f"{i}.png")
    folder = DatasetSpec("imagefolder", root=str(root))
    model = create_from_checkpoint(MODEL, 3, KWARGS, str(trained[0]), replace_head=True)
    original = _state(load_teacher(trained[0]).model)
    for key, value in _state(model).items():
        if key.startswith("head"):
            assert value.shape[0] == 3
        else:
            assert torch.equal(value, original[key]), key
    teacher, metrics = build_teacher(
        TeacherSpec(MODEL, {}, "finetune", str(trained[0]), recipe=RECIPE), folder, progress=False
    )
    assert teacher.num_classes == 3 and metrics["num_test_images"] == 6 and metrics["steps"] == 1
    with pytest.raises(SMIError, match="head of teacher file .* 10 classes but the dataset has 3"):
        build_teacher(TeacherSpec(MODEL, source="checkpoint", checkpoint=str(trained[0])), folder, progress=False)


# ---------------------------------------------------------------- bad weights
def test_head_mismatch_of_a_plain_checkpoint(tmp_path: Path, trained: tuple[Path, dict]) -> None:
    state = _state(load_teacher(trained[0]).model)
    state["head.weight"], state["head.bias"] = state["head.weight"][:5], state["head.bias"][:5]
    path = tmp_path / "five.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(SMIError, match="classifier head .* 10 classes"):
        build_teacher(TeacherSpec(MODEL, KWARGS, "checkpoint", str(path)), DIGITS, progress=False)


def test_wrong_architecture_for_the_weights(tmp_path: Path, trained: tuple[Path, dict]) -> None:
    path = tmp_path / "w.pth"
    torch.save(_state(load_teacher(trained[0]).model), path)
    with pytest.raises(SMIError, match="do not fit this model"):
        build_teacher(TeacherSpec(MODEL, {**KWARGS, "embed_dim": 48}, "checkpoint", str(path)), DIGITS, progress=False)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".safetensors"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path, trained: tuple[Path, dict], suffix: str) -> None:
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(trained[0].read_bytes()[:2000])  # truncated copy
    with pytest.raises(SMIError, match="cannot read"):
        build_teacher(TeacherSpec(MODEL, KWARGS, "checkpoint", str(path)), DIGITS, progress=False)
    if suffix == ".pt":
        with pytest.raises(SMIError, match="corrupt"):
            load_teacher(path)
    with pytest.raises(SMIError, match="does not exist"):
        load_teacher(tmp_path / "missing.pt")


# ---------------------------------------------------------------- CLI
def test_cli_train_and_eval_teacher(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, metrics_path, eval_path = tmp_path / "t.pt", tmp_path / "t.json", tmp_path / "e.json"
    args = [
        "train-teacher",
        "--teacher-spec",
        json.dumps(SPEC.to_config()),
        "--dataset-spec",
        '{"name": "digits"}',
        "--out",
        str(out),
        "--metrics",
        str(metrics_path),
        "--teacher-id",
        "tiny",
        "--seed",
        "1",
        "--threads",
        "1",
        "--no-progress",
    ]
    assert main(args) == 0
    record = json.loads(metrics_path.read_text())
    assert record["kind"] == "teacher" and record["teacher"] == "tiny" and record["model_name"] == MODEL
    # The record contract (smi.records): the build's figures are exactly the documented TRAINING_KEYS.
    assert set(record) == {*COMMON_KEYS, "file", "teacher_spec", "dataset_spec", *TRAINING_KEYS}
    assert record["seed"] == record["teacher_seed"] == 1
    for key in ("top1", "top5", "train_time_s", "num_params", "recipe", "provenance"):
        assert key in record
    assert record["provenance"]["seed"] == 1 and record["recipe"]["epochs"] == 1
    stamp = out.stat().st_mtime_ns
    assert main(args) == 0 and out.stat().st_mtime_ns == stamp, "an existing teacher is never retrained"
    assert main(["eval-teacher", "--teacher", str(out), "--out", str(eval_path), "--threads", "1"]) == 0
    assert json.loads(eval_path.read_text())["top1"] == pytest.approx(record["top1"])
    assert (
        main(
            [
                "train-teacher",
                "--teacher-spec",
                json.dumps(SPEC.to_config()),
                "--dataset-spec",
                '{"name": "mnist"}',
                "--out",
                str(tmp_path / "x.pt"),
                "--metrics",
                str(tmp_path / "x.json"),
            ]
        )
        == 2
    )
    assert "unknown dataset 'mnist'" in capsys.readouterr().err
