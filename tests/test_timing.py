"""Isolated timing: compressed schedules, interleaved rounds and the ``smi time-inversions`` record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smi.bench import MethodTiming, TimingResult, compress_method, interleaved, time_methods
from smi.cli import main
from smi.errors import SMIError
from smi.inversion import InversionConfig
from smi.methods.registry import create_method
from smi.teachers import save_teacher
from tests.tiny import make_teacher, make_tiny_vit

TINY_KWARGS = {"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 1, "num_heads": 2, "mlp_ratio": 2.0}


@pytest.fixture
def teacher_file(tmp_path: Path) -> Path:
    teacher = make_teacher(make_tiny_vit(embed_dim=32, depth=1, num_heads=2))
    teacher.metadata.update(model_kwargs=dict(TINY_KWARGS), seed=3)  # as build_teacher records its seed
    path = tmp_path / "teacher.pt"
    save_teacher(teacher, path, {"source": "test", "seed": 3})
    return path


def test_compress_method_scales_schedules_in_proportion() -> None:
    smi = compress_method(create_method("smi", {"iterations": [8, 15, 30, 45], "ratio": 0.3}), 0.2)
    assert smi.params.iterations == (2, 3, 6, 9) and smi.params.ratio == 0.3
    psaq = compress_method(create_method("psaq-smi", {"iterations": [8, 15, 30, 45], "ratio": 0.3}), 0.2)
    assert psaq.params.iterations == (2, 3, 6, 9)
    pri = create_method("pri", {"division": 4})
    assert compress_method(pri, 0.2) is pri  # PRI's emissions are fractions of the run already
    dense = create_method("dense")
    assert compress_method(dense, 0.5) is dense


def test_interleaved_runs_every_method_once_per_round_alternating_the_order() -> None:
    calls: list[str] = []
    runs = {label: (lambda label=label: calls.append(label) or [label]) for label in "abc"}
    out = interleaved(runs, 3)
    assert calls == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]
    assert out == {label: [[label]] * 3 for label in "abc"}
    with pytest.raises(SMIError, match="at least one round"):
        interleaved({"a": lambda: []}, 0)


def test_time_methods_times_each_method_on_its_job_batch(tiny_teacher) -> None:
    methods = {
        "dense": create_method("dense"),
        "smi": create_method("smi", {"iterations": [2, 4], "ratio": 0.5}),
        "pri": create_method("pri", {"division": 2}),
    }
    config = InversionConfig(iterations=4, batch_size=8, warmup_iterations=0)
    result = time_methods(tiny_teacher, methods, config, num_images=8, rounds=3, full_iterations=8, progress=False)
    rows = {r["method"]: r for r in result.rows()}
    assert list(rows) == ["dense", "smi", "pri"]
    assert rows["dense"]["batch_size"] == 8 and rows["pri"]["batch_size"] == 4  # 8 images, 2 per trajectory
    assert rows["pri"]["images_per_round"] == 8
    for row in rows.values():
        assert len(row["time_per_round_s"]) == 3 and all(t > 0 for t in row["time_per_round_s"])
        assert len(row["speedup_per_round"]) == 3
        # The fastest round's figures: time per output image, and dense's fastest over the method's.
        assert row["time_per_image_s"] == min(row["time_per_round_s"]) / row["images_per_round"]
        assert row["speedup"] == rows["dense"]["time_per_image_s"] / row["time_per_image_s"]
    assert rows["dense"]["speedup_per_round"] == [1.0, 1.0, 1.0] and rows["dense"]["speedup"] == 1.0
    assert (result.iterations, result.full_iterations, result.reference) == (4, 8, "dense")


def test_fastest_round_is_the_reported_time_and_speed_up() -> None:
    # Hand-made times: the slow third round of 'b' (a disturbed machine) must not count.
    timings = {
        "dense": MethodTiming("dense", "dense", 4, 4, [8.0, 9.0, 8.4]),
        "b": MethodTiming("b", "smi", 4, 4, [2.0, 2.2, 6.0]),
    }
    rows = {r["method"]: r for r in TimingResult(timings, 10, 20, 3, "dense").rows()}
    assert rows["b"]["time_per_image_s"] == 0.5 and rows["b"]["speedup"] == 4.0
    assert rows["b"]["speedup_per_round"] == [4.0, 9.0 / 2.2, 8.4 / 6.0]


def test_time_methods_refuses_image_sources(tiny_teacher) -> None:
    with pytest.raises(SMIError, match="do not invert"):
        time_methods(tiny_teacher, {"noise": create_method("noise")}, InversionConfig(iterations=2, batch_size=2), 2)


def test_time_inversions_writes_one_record_for_every_method(teacher_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "timing.json"
    methods = {"noise": {}, "dense": {}, "smi": {"params": {"iterations": [2, 4], "ratio": 0.5}}}
    code = main(
        [
            "time-inversions",
            "--teacher",
            str(teacher_file),
            "--teacher-id",
            "tiny",
            "--methods",
            json.dumps(methods),
            "--num-images",
            "4",
            "--batch-size",
            "4",
            "--iterations",
            "8",
            "--timed-iterations",
            "4",
            "--rounds",
            "3",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    record = json.loads(out.read_text())
    assert record["kind"] == "timing" and record["time_protocol"] == "interleaved"
    assert (record["teacher"], record["teacher_seed"]) == ("tiny", 3)
    assert (record["rounds"], record["timed_iterations"], record["full_iterations"]) == (3, 4, 8)
    assert [r["method"] for r in record["timings"]] == ["dense", "smi"]
    assert record["not_timed"] == {"noise": "image source without inversion"}
    assert record["provenance"]["threads"] == 1  # the fixed CLI default


def test_time_inversions_bad_budget_is_one_line_error(teacher_file: Path, tmp_path: Path, capsys) -> None:
    code = main(
        [
            "time-inversions",
            "--teacher",
            str(teacher_file),
            "--methods",
            '{"dense": {}}',
            "--num-images",
            "2",
            "--iterations",
            "4",
            "--timed-iterations",
            "9",
            "--out",
            str(tmp_path / "t.json"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "--timed-iterations 9" in err and "Traceback" not in err
    assert not (tmp_path / "t.json").exists()
