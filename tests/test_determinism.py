"""Reruns reproduce: the same config, seeds, thread count and machine give the same results.

A small config (the CI config cut to one teacher and three image sources) runs twice into two
work directories: once with every job in a fresh interpreter (`warm_start: false`), once with
the jobs forked from the warm-start server (smi.warm, the default), so the test also shows that
warm start changes nothing. The teachers and image sets must be bit-identical files, and
`smi compare` of the two runs may list only wall-time cells (time per image and speed-up of the
efficiency table): every accuracy, FLOPs and memory cell must be equal.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from smi.io import torch_save
from smi.report.compare import SAME
from tests.workflow_cmd import snakemake_argv

REPO = Path(__file__).resolve().parents[1]
RUN = "determinism"
# The only table cells that may differ between two runs: they hold wall-clock measurements.
WALL_TIME_CELLS = {("efficiency", "Time / image (s)"), ("efficiency", "Speed-up (×)")}


def test_saving_the_same_object_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    # torch.save names the archive's records after the file; the atomic write's temporary name
    # is random, so the suite saves through a stream.
    obj = {"state_dict": {"w": torch.arange(6.0).view(2, 3)}, "metadata": {"seed": 0}}
    torch_save(obj, tmp_path / "a.pt")
    torch_save(obj, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def small_config() -> dict:
    """The CI config cut to the least that still fills the efficiency, quantization and distillation tables."""
    config = yaml.safe_load((REPO / "config" / "ci.yaml").read_text())
    config["run"] = RUN
    config["external_methods"] = {}
    config["experiments"] = [
        {
            "dataset": "digits",
            "teacher": "vit-xs",
            "seeds": [0],
            "methods": ["real", "dense", "smi"],
            "distill": ["smi"],
        }
    ]
    # The datasets stay: the student is pretrained on shapes before it distils the digits teacher.
    config["methods"] = {label: config["methods"][label] for label in ("real", "dense", "smi")}
    return config


def run_workflow(workdir: Path, configfile: Path) -> Path:
    proc = subprocess.run(
        snakemake_argv(workdir, "--cores", "2", "--configfile", str(configfile)),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    if proc.returncode != 0:
        raise AssertionError(f"workflow failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return workdir / "results" / RUN


@pytest.mark.slow
def test_two_runs_differ_only_in_wall_time(tmp_path: Path) -> None:
    cold, warm = tmp_path / "cold.yaml", tmp_path / "warm.yaml"
    cold.write_text(yaml.safe_dump({**small_config(), "warm_start": False}))
    warm.write_text(yaml.safe_dump({**small_config(), "warm_start": True}))
    run_a = run_workflow(tmp_path / "a", cold)
    run_b = run_workflow(tmp_path / "b", warm)

    # Teachers and image sets: the same bytes.
    files = sorted(p.relative_to(run_a) for p in run_a.glob("*/**/*.pt"))
    assert {p.parts[0] for p in files} == {"teachers", "images", "students"}, files
    assert files == sorted(p.relative_to(run_b) for p in run_b.glob("*/**/*.pt"))
    different = [str(p) for p in files if (run_a / p).read_bytes() != (run_b / p).read_bytes()]
    assert not different, f"not bit-identical between two runs: {different}"

    # Table cells: `smi compare` lists only wall-time cells.
    out = tmp_path / "cells.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "smi", "compare", str(run_a), str(run_b), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    cells = pd.read_csv(out)
    listed = cells[cells["status"] != SAME]
    unexpected = listed[[(t, c) not in WALL_TIME_CELLS for t, c in zip(listed["table"], listed["column"])]]
    assert unexpected.empty, f"cells that differ beyond wall time:\n{unexpected.to_string()}\n{proc.stdout}"
    # Not vacuous: the accuracy, FLOPs and memory cells were there and compared equal.
    compared = set(cells.loc[cells["status"] == SAME, "table"])
    assert {"efficiency", "quantization", "distillation"} <= compared, compared
    assert {("efficiency", "GFLOPs / image"), ("quantization", "vit-xs W8/A8 (%)")} <= set(
        zip(cells["table"], cells["column"])
    )
