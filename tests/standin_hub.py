"""A local stand-in for the Hugging Face hub: random timm weights in the hub cache's layout.

timm loads pretrained weights through ``huggingface_hub``, which finds a file in its cache
(``<cache>/models--<org>--<name>/snapshots/<commit>/<file>``, with ``refs/main`` naming the
commit) before it goes to the network. Tests put random weights there and block the network,
so the real hub is never reached.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import timm
import torch

OFFLINE_DIR = Path(__file__).resolve().parent / "offline"
REPO = Path(__file__).resolve().parents[1]
#: Commit name of the stand-in snapshots (any hex string works).
COMMIT = "0" * 40


def random_state_dict(model: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random-weight timm model's state dict (its default head and input size)."""
    torch.manual_seed(seed)
    return {k: v.contiguous() for k, v in timm.create_model(model, pretrained=False).state_dict().items()}


def add_to_cache(cache: Path, model: str, state: dict[str, torch.Tensor] | None = None) -> Path:
    """Put ``state`` (random by default) as ``model``'s hub weights into the cache at ``cache``."""
    from safetensors.torch import save_file

    repo_id = timm.models.get_pretrained_cfg(model).hf_hub_id
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    path = snapshot / "model.safetensors"
    save_file(state if state is not None else random_state_dict(model), str(path))
    return path


def offline_env(cache: Path, **extra: str) -> dict[str, Any]:
    """Environment of a subprocess without network whose hub cache is ``cache``."""
    path = os.pathsep.join(p for p in (str(OFFLINE_DIR), str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", **extra}


def smi(*args: str, env: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """``python -m smi ARGS`` in a subprocess with ``env``."""
    return subprocess.run([sys.executable, "-m", "smi", *args], capture_output=True, text=True, env=env, timeout=600)
