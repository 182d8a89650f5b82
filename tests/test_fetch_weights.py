"""Offline compute nodes: ``smi fetch-weights``, the ``fetch_weights`` rule and the errors of jobs
that find neither a weights file nor a network.

The network is always blocked (sockets refuse, in this process through monkeypatch and in
subprocesses through tests/offline/sitecustomize.py); the hub is a stand-in cache with random
weights (tests/standin_hub.py), or a stand-in for timm's hub loader. The real hub is never reached.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
import yaml

from smi.cli import main
from smi.errors import SMIError
from smi.teachers import hub
from tests.layouts import imagenet_wnids, make_classfolders
from tests.standin_hub import REPO, add_to_cache, offline_env, random_state_dict
from tests.workflow_cmd import snakemake_argv

MODEL = "deit_tiny_patch16_224"
# Far below the hub client's retries (about 45 s offline): the probe fails at once.
FAST_FAILURE_S = 15.0


def _refuse(*args, **kwargs):
    raise OSError("network access is blocked in this test")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No network in this process and an empty stand-in hub cache; returns the cache folder."""
    for name in ("create_connection", "getaddrinfo"):
        monkeypatch.setattr(socket, name, _refuse)
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # blocked, not declared offline
    return cache


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _assert_same_weights(saved: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert set(saved) == set(expected)
    assert all(torch.equal(saved[k], expected[k]) for k in expected)


def test_fetch_copies_the_cached_weights_once(offline: Path, tmp_path: Path, capsys) -> None:
    expected = random_state_dict(MODEL, seed=3)
    add_to_cache(offline, MODEL, expected)
    out = tmp_path / "weights"
    assert main(["fetch-weights", "--model", MODEL, "--out-dir", str(out)]) == 0
    path = out / f"{MODEL}.pth"
    _assert_same_weights(torch.load(path, weights_only=True), expected)
    stamp = path.stat().st_mtime_ns
    assert main(["fetch-weights", "--model", MODEL, "--model", MODEL, "--out-dir", str(out)]) == 0
    assert "already present" in capsys.readouterr().out and path.stat().st_mtime_ns == stamp


def test_fetch_downloads_when_the_hub_answers(offline: Path, tmp_path: Path, monkeypatch) -> None:
    # A stand-in for timm's hub loader, as if the hub were reachable: no cache, no socket.
    import timm.models._builder

    expected = random_state_dict(MODEL, seed=4)
    calls = []
    monkeypatch.setattr(hub, "reachable", lambda host, timeout=hub.PROBE_TIMEOUT_S: True)
    monkeypatch.setattr(
        timm.models._builder,
        "load_state_dict_from_hf",
        lambda model_id, *args, **kwargs: calls.append(model_id) or dict(expected),
    )
    assert main(["fetch-weights", "--model", MODEL, "--out-dir", str(tmp_path)]) == 0
    assert calls == [timm.models.get_pretrained_cfg(MODEL).hf_hub_id]
    _assert_same_weights(torch.load(tmp_path / f"{MODEL}.pth", weights_only=True), expected)


def test_fetch_without_cache_or_network_fails_at_once_in_one_line(offline: Path, tmp_path: Path, capsys) -> None:
    start = time.perf_counter()
    assert main(["fetch-weights", "--model", MODEL, "--out-dir", str(tmp_path)]) == 2
    assert time.perf_counter() - start < FAST_FAILURE_S
    line = _error_line(capsys)
    assert "not in the timm/Hugging Face cache" in line and "huggingface.co cannot be reached" in line
    assert "pretrained_file" in line and "fetch-weights" in line
    assert not list(tmp_path.glob("*.pth"))


def _teacher(tmp_path: Path, spec: dict, capsys) -> tuple[int, str]:
    root = make_classfolders(tmp_path / "inet", imagenet_wnids()[:2], per=1)
    code = main(
        [
            "train-teacher",
            "--teacher-spec",
            json.dumps(spec),
            "--dataset-spec",
            json.dumps({"name": "imagenet", "root": str(root)}),
            "--out",
            str(tmp_path / "t.pt"),
            "--metrics",
            str(tmp_path / "t.json"),
            "--no-progress",
        ]
    )
    return code, _error_line(capsys) if code else ""


def test_teacher_job_without_weights_file_names_it_and_the_fetch_command(offline: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "results" / "paper" / "weights" / f"{MODEL}.pth"
    for source in ("pretrained", "finetune"):
        code, line = _teacher(tmp_path, {"model": MODEL, "source": source, "pretrained_file": str(missing)}, capsys)
        assert code == 2
        assert str(missing) in line and f"smi fetch-weights --model {MODEL} --out-dir {missing.parent}" in line
        assert "--until fetch_weights" in line


def test_teacher_without_file_cache_or_network_fails_fast(offline: Path, tmp_path: Path, capsys) -> None:
    start = time.perf_counter()
    code, line = _teacher(tmp_path, {"model": MODEL, "source": "pretrained"}, capsys)
    assert code == 2 and time.perf_counter() - start < FAST_FAILURE_S
    assert "put them in the cache" in line and "pretrained_file" in line and "fetch-weights" in line
    assert "re-download" not in line


def test_teacher_from_cached_weights_works_offline(offline: Path, tmp_path: Path, capsys) -> None:
    add_to_cache(offline, MODEL)
    code, _ = _teacher(tmp_path, {"model": MODEL, "source": "pretrained"}, capsys)
    assert code == 0
    record = json.loads((tmp_path / "t.json").read_text())
    assert record["num_test_images"] == 2


def test_missing_checkpoint_is_not_called_a_teacher_to_train(tmp_path: Path, capsys) -> None:
    code, line = _teacher(
        tmp_path, {"model": MODEL, "source": "checkpoint", "checkpoint": str(tmp_path / "x.pth")}, capsys
    )
    assert code == 2 and "checkpoint" in line and "does not exist" in line and "train it" not in line


def test_student_without_its_fetched_file_names_the_fetch_command(tmp_path: Path) -> None:
    import timm

    from smi.distill.config import StudentSpec
    from smi.distill.student import build_student
    from tests.tiny import make_teacher

    teacher = make_teacher(timm.create_model(MODEL, pretrained=False, num_classes=5, img_size=32), num_classes=5)
    missing = tmp_path / "weights" / f"{MODEL}.pth"
    with pytest.raises(SMIError, match=r"does not exist.*smi fetch-weights --model deit_tiny_patch16_224"):
        build_student(StudentSpec(MODEL, init="pretrained", checkpoint=str(missing)), teacher, 0, "cpu")
    missing.parent.mkdir()
    torch.save(random_state_dict(MODEL), missing)  # the file fetch-weights writes
    student = build_student(StudentSpec(MODEL, init="pretrained", checkpoint=str(missing)), teacher, 0, "cpu")
    assert student.get_classifier().out_features == 5 and student.patch_embed.img_size == (32, 32)


@pytest.mark.slow
def test_until_fetch_weights_offline_with_a_standin_hub(tmp_path: Path) -> None:
    """``snakemake --until fetch_weights`` fetches each weight once, offline, and nothing else runs."""
    config = yaml.safe_load((REPO / "config" / "ci.yaml").read_text())
    root = make_classfolders(tmp_path / "inet", imagenet_wnids()[:2], per=1)
    config["datasets"]["inet"] = {"name": "imagenet", "root": str(root)}
    config["teachers"]["deit-t"] = {"model": MODEL, "source": "pretrained"}
    config["teachers"]["deit-t-ft"] = {"model": MODEL, "source": "finetune", "recipe": {"epochs": 1}}
    config["experiments"].append(
        {"dataset": "inet", "teacher": "deit-t", "seeds": [0], "methods": ["dense"], "students": ["deit-t-pretrained"]}
    )
    config["distillation"]["students"]["deit-t-pretrained"] = {"model": MODEL, "init": "pretrained"}
    config["experiments"].append(
        {
            "dataset": "inet",
            "teacher": "deit-t-ft",
            "seeds": [0],
            "methods": ["dense"],
            "students": ["deit-t-pretrained"],
        }
    )
    path = tmp_path / "offline.yaml"
    path.write_text(yaml.safe_dump(config))
    cache = tmp_path / "cache"
    expected = random_state_dict(MODEL, seed=5)
    add_to_cache(cache, MODEL, expected)
    snakemake = snakemake_argv(tmp_path, "--cores", "1", "--configfile", str(path))
    env = offline_env(cache)
    proc = subprocess.run(
        [*snakemake, "--until", "fetch_weights"], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    weights = tmp_path / "results" / "ci" / "weights"
    assert [p.name for p in weights.iterdir()] == [f"{MODEL}.pth"]  # two teachers and a student: one file
    _assert_same_weights(torch.load(weights / f"{MODEL}.pth", weights_only=True), expected)
    assert not (tmp_path / "results" / "ci" / "teachers").exists()
    # The teacher and student jobs are handed that file, so they need no network.
    plan = subprocess.run([*snakemake, "-n", "-p"], capture_output=True, text=True, env=env, timeout=600)
    assert plan.returncode == 0, plan.stderr[-4000:]
    text = plan.stdout + plan.stderr
    assert text.count(f'"pretrained_file": "results/ci/weights/{MODEL}.pth"') >= 2
    assert f'"checkpoint": "results/ci/weights/{MODEL}.pth"' in text
    assert "fetch_weights" not in text.split("Job stats")[-1]
