"""Atomic file writes and run provenance.

Outputs are written to a temporary file in the destination folder and renamed into place, so
an interrupted job never leaves a half-written file that Snakemake would take as finished.
The renamed file gets the permissions ``open()`` would give it under the user's umask (a
temporary file is created private), so a group on a shared cluster can read the results.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

#: Mode of a new file before the umask is applied, as ``open()`` uses.
NEW_FILE_MODE = 0o666


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Args:
        path: The final destination. Its parent folder is created.

    Yields:
        A temporary file path to write to. It is removed if the block raises.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, NEW_FILE_MODE & ~current_umask())
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def current_umask() -> int:
    """The process's umask (reading it means setting it; it is restored at once)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` atomically, with the same bytes for the same object."""
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        # Through a stream, not a path: given a path, torch names the archive's records after the
        # file, here a random temporary name, so that equal objects would give different bytes.
        torch.save(obj, stream)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, or ``None`` outside git."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def device_name(device: torch.device | str) -> str:
    """A human-readable name of the compute device."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def provenance(device: torch.device | str, seed: int | None = None, config_hash: str | None = None) -> dict[str, Any]:
    """The provenance block stored in every metrics record.

    Args:
        device: The compute device of the job.
        seed: The job's seed, if any.
        config_hash: Hash of the config parts that determine the job's output.

    Returns:
        A dict with config hash, seed, git commit, library versions, device and threads.
    """
    import timm  # local import: timm is slow to import and not needed by every caller

    return {
        "config_hash": config_hash,
        "seed": seed,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "device": device_name(device),
        "threads": torch.get_num_threads(),
    }
