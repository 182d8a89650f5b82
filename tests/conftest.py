"""Shared fixtures: tiny timm ViTs that run in milliseconds on a CPU."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from smi.types import Teacher
from tests.tiny import make_teacher, make_tiny_vit
from tests.workflow_cmd import snakemake_argv


@pytest.fixture
def tiny_vit() -> torch.nn.Module:
    return make_tiny_vit()


@pytest.fixture
def tiny_teacher(tiny_vit) -> Teacher:
    return make_teacher(tiny_vit)


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ci_local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CI config's whole DAG run locally once per test session; returns its work directory.

    Shared by the workflow tests and the SLURM test (which compares a SLURM run against it),
    so CI pays for one local run. Tests must not change files under its ``results/``.
    """
    workdir = tmp_path_factory.mktemp("ci-local")
    proc = subprocess.run(
        snakemake_argv(workdir, "--cores", "2", "--configfile", str(REPO / "config" / "ci.yaml"), "--config", "run=ci"),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise AssertionError(f"CI workflow failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return workdir
