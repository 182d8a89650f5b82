"""Where the jobs run and what this machine has: the Snakemake executor and CUDA.

Also the switch that skips the checks of this machine (``SMI_SKIP_MACHINE_CHECKS=1``), for
planning a run on a machine other than the one that will run it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from smi.errors import SMIError

#: Snakemake executors that run jobs on the machine running Snakemake.
LOCAL_EXECUTORS: frozenset[str] = frozenset({"local", "dryrun", "touch"})
#: Environment variable that skips the checks of this machine (dataset folders, weights files, CUDA).
SKIP_MACHINE_ENV = "SMI_SKIP_MACHINE_CHECKS"


def jobs_run_here(argv: Iterable[str], environ: Mapping[str, str]) -> bool:
    """Whether Snakemake runs the jobs on this machine, from its command line and profile.

    A cluster login node submits jobs elsewhere and usually has no GPU, so ``device: cuda``
    is checked only when jobs run here: no ``--executor``/``-e`` and no profile
    (``--profile`` or ``SNAKEMAKE_PROFILE``) naming an executor other than local ones.
    """
    args = list(argv)
    executor = _option(args, ("--executor", "-e"))
    profile = _option(args, ("--profile",)) or environ.get("SNAKEMAKE_PROFILE")
    if executor is None and profile:
        executor = _profile_executor(profile)
    return executor is None or executor in LOCAL_EXECUTORS


def _option(args: list[str], names: tuple[str, ...]) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "=") and name.startswith("--"):
                return arg.split("=", 1)[1]
    return None


def _profile_executor(profile: str) -> str | None:
    # A profile is a folder, or a name looked up where Snakemake looks for it.
    folders = [Path(profile), Path.home() / ".config" / "snakemake" / profile, Path("/etc/xdg/snakemake") / profile]
    config = next((f / "config.yaml" for f in folders if (f / "config.yaml").is_file()), None)
    if config is None:
        return None  # not found: assume local; each job checks its device again when it starts
    match = re.search(r"^executor:\s*([A-Za-z0-9_-]+)", config.read_text(), flags=re.MULTILINE)
    return match.group(1) if match else None


def check_device(device: str, check_cuda: bool) -> None:
    """Raise if ``device`` is CUDA and this machine has none (only when ``check_cuda``)."""
    if not check_cuda or not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise SMIError(
            f"device: {device!r} but CUDA is not available on this machine; set device: cpu "
            "(or submit the jobs to GPU nodes with a cluster profile)."
        )
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise SMIError(
            f"device: {device!r} but this machine has {torch.cuda.device_count()} GPU(s); use cuda or cuda:0."
        )


def machine_checks_enabled(environ: Mapping[str, str]) -> bool:
    """False when ``SMI_SKIP_MACHINE_CHECKS=1`` (planning a run for another machine)."""
    return environ.get(SKIP_MACHINE_ENV, "") != "1"
