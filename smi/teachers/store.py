"""The teacher file: one ``.pt`` holding timm-loadable weights and the suite's metadata.

Layout: ``{"state_dict": model.state_dict(), "smi_teacher": {model_name, model_kwargs,
num_classes, data_config, dataset, recipe, metadata}}``. ``state_dict`` is the key timm's
``load_checkpoint`` reads, so the file also works as a plain timm checkpoint; loading goes
back through ``timm.create_model(..., checkpoint_path=path)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from smi.errors import SMIError
from smi.io import torch_save
from smi.teachers.models import create_from_checkpoint
from smi.types import Teacher

METADATA_KEY = "smi_teacher"
_REQUIRED = ("model_name", "model_kwargs", "num_classes", "data_config", "dataset")


def save_teacher(teacher: Teacher, path: str | os.PathLike[str], recipe_info: Mapping[str, Any] | None) -> None:
    """Write the teacher file atomically.

    Args:
        teacher: The teacher; ``teacher.metadata['model_kwargs']`` holds its timm kwargs.
        path: Destination ``.pt`` file.
        recipe_info: How it was made (recipe, source, seed...), stored as ``recipe``.
    """
    meta = {
        "model_name": teacher.model_name,
        "model_kwargs": dict(teacher.metadata.get("model_kwargs", {})),
        "num_classes": teacher.num_classes,
        "data_config": _plain(teacher.data_config),
        "dataset": teacher.dataset,
        "recipe": _plain(dict(recipe_info or {})),
        "metadata": _plain({k: v for k, v in teacher.metadata.items() if k != "model_kwargs"}),
    }
    state = {k: v.detach().cpu().clone() for k, v in teacher.model.state_dict().items()}
    torch_save({"state_dict": state, METADATA_KEY: meta}, path)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``smi_teacher`` metadata of a weights file, or ``None`` if it has none.

    Raises:
        SMIError: If the file is missing or not a readable torch file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SMIError(f"teacher file {path} does not exist; train it with 'smi train-teacher' first.")
    if path.endswith(".safetensors"):
        return None
    try:
        # mmap: the metadata is needed now, the tensors only later (through timm).
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # pickle, zip and EOF errors all mean "not a torch file"
        raise SMIError(
            f"cannot read teacher file {path}: {type(exc).__name__}: {str(exc)[:200]}; "
            "the file is corrupt or not a torch checkpoint: delete it and re-create it."
        ) from exc
    if not isinstance(blob, dict) or METADATA_KEY not in blob:
        return None
    meta = blob[METADATA_KEY]
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise SMIError(f"teacher file {path} has incomplete metadata (missing {missing}); re-create it.")
    return dict(meta)


def load_teacher(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> Teacher:
    """Load a teacher file written by :func:`save_teacher`.

    Returns:
        The teacher with the model in eval mode and its parameters frozen.

    Raises:
        SMIError: If the file is missing, corrupt, lacks the suite's metadata or does not fit.
    """
    path = os.fspath(path)
    meta = read_metadata(path)
    if meta is None:
        raise SMIError(
            f"{path} is not a teacher file of this suite (no '{METADATA_KEY}' metadata); load plain "
            "weights with a teacher spec of source 'checkpoint' instead."
        )
    model = create_from_checkpoint(meta["model_name"], int(meta["num_classes"]), meta["model_kwargs"], path)
    metadata = dict(meta.get("metadata", {}))
    metadata.update({"model_kwargs": dict(meta["model_kwargs"]), "recipe": meta.get("recipe"), "file": path})
    return freeze(
        Teacher(
            model, meta["model_name"], int(meta["num_classes"]), _tuples(meta["data_config"]), meta["dataset"], metadata
        ),
        device,
    )


def freeze(teacher: Teacher, device: torch.device | str) -> Teacher:
    """Move to ``device``, switch to eval mode and stop gradients into the parameters."""
    teacher.model.to(device).eval()
    for p in teacher.model.parameters():
        p.requires_grad_(False)
    return teacher


def _plain(value: Any) -> Any:
    """Tuples to lists and paths to strings, so that ``weights_only`` loading accepts it."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _tuples(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
