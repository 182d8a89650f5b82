"""The command line of a Snakemake run of this repository's workflow, for the tests that run it."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def snakemake_argv(workdir: Path, *args: str) -> list[str]:
    """``python -m snakemake`` on this repository's Snakefile, working in ``workdir``, with ``args``."""
    snakemake = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    return [*snakemake, "--directory", str(workdir), *args]
