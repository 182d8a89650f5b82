"""timm's pretrained weights as local files, for machines without a network.

Cluster compute nodes often have no internet while login nodes do. ``smi fetch-weights`` (the
workflow's ``fetch_weights`` rule) saves the pretrained weights of a timm model once, as a plain
state dict under ``<weights dir>/<model>.pth``; teacher and student jobs then read only that
file, through timm's own loader (``pretrained_cfg_overlay=dict(file=...)``), so key cleaning and
position-embedding resampling still apply.

Where the weights come from, in order: the Hugging Face / timm cache (works offline), then the
hub itself, but only after a short probe finds it reachable. Without the probe, an offline
machine spends most of a minute in the hub client's retries before failing.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from smi.errors import SMIError
from smi.io import torch_save

#: Seconds the reachability probe waits for a TCP connection to the weights' host.
PROBE_TIMEOUT_S = 5.0
#: Port of the probe (the hub and weight URLs are HTTPS).
_HTTPS_PORT = 443
#: Files timm looks for in a Hugging Face model repository, in its order of preference.
_HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")
#: How the workflow fetches every weight file of a config (see docs/slurm.md).
WORKFLOW_FETCH = "snakemake --cores 1 --until fetch_weights"


def weights_path(out_dir: str | os.PathLike[str], model: str) -> Path:
    """The local file of ``model``'s pretrained weights inside ``out_dir``."""
    return Path(out_dir) / f"{model}.pth"


def fetch_command(model: str, out_dir: str | os.PathLike[str]) -> str:
    """The command line that saves ``model``'s pretrained weights into ``out_dir``."""
    return f"smi fetch-weights --model {model} --out-dir {os.fspath(out_dir)}"


def missing_file_error(path: str | os.PathLike[str], model: str) -> SMIError:
    """The one-line error of a job whose pretrained weights file is not there."""
    out_dir = Path(path).parent
    return SMIError(
        f"pretrained weights file {os.fspath(path)} does not exist; fetch it on a machine with network access: "
        f"'{fetch_command(model, out_dir)}' (in the workflow: '{WORKFLOW_FETCH}')."
    )


def _pretrained_cfg(model: str) -> Any:
    import timm

    cfg = timm.models.get_pretrained_cfg(model)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise SMIError(f"timm model '{model}' has no pretrained weights; use source 'train' or give a checkpoint.")
    return cfg


def cached_file(model: str) -> str | None:
    """The weights of ``model`` already in the Hugging Face cache, or ``None``."""
    from huggingface_hub import try_to_load_from_cache

    cfg = _pretrained_cfg(model)
    if not cfg.hf_hub_id:
        return None
    names = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _HUB_FILENAMES
    for name in names:
        found = try_to_load_from_cache(cfg.hf_hub_id, name)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def weights_host(model: str) -> str:
    """Host name the weights of ``model`` are downloaded from."""
    from huggingface_hub import constants

    cfg = _pretrained_cfg(model)
    return urlparse(constants.ENDPOINT if cfg.hf_hub_id else cfg.url).hostname or ""


def reachable(host: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds (offline mode: never)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or not host:
        return False
    try:
        with socket.create_connection((host, _HTTPS_PORT), timeout=timeout):
            return True
    except OSError:  # DNS failure, refused, unreachable, timeout
        return False


def offline_error(model: str, host: str) -> SMIError:
    """The error of a pretrained model whose weights are neither cached nor downloadable."""
    return SMIError(
        f"the pretrained weights of '{model}' are not in the timm/Hugging Face cache and {host} cannot be reached; "
        f"put them in the cache, give the teacher a 'pretrained_file', or fetch them where the network is reachable "
        f"with '{fetch_command(model, '<dir>')}' (in the workflow: '{WORKFLOW_FETCH}')."
    )


def local_or_reachable(model: str) -> str | None:
    """The cached weights file of ``model``, or ``None`` when the hub can be reached to download it.

    Raises:
        SMIError: Neither cached nor reachable (at once, not after the hub client's retries).
    """
    found = cached_file(model)
    if found is not None:
        return found
    host = weights_host(model)
    if not reachable(host):
        raise offline_error(model, host)
    return None


def pretrained_state_dict(model: str) -> dict[str, torch.Tensor]:
    """timm's pretrained weights of ``model`` (default head) as a state dict on the CPU.

    Raises:
        SMIError: Unknown model, no pretrained weights, no cache and no network, or a failed download.
    """
    from smi.teachers.models import create_pretrained, pretrained_num_classes

    cfg_classes = pretrained_num_classes(model)
    net = create_pretrained(model, cfg_classes or 0, {}, None)
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}


def fetch(model: str, out_dir: str | os.PathLike[str]) -> tuple[Path, bool]:
    """Save ``model``'s pretrained weights to ``out_dir/<model>.pth`` unless the file exists.

    Returns:
        The file and whether it was written now (``False``: it was already there).
    """
    dest = weights_path(out_dir, model)
    if dest.is_file():
        return dest, False
    torch_save(pretrained_state_dict(model), dest)
    return dest, True
