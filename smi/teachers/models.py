"""Building timm ViTs for teachers, with every timm failure turned into a clear SMIError.

Weights always arrive through timm's own loaders: ``timm.create_model(pretrained=True,
pretrained_cfg_overlay=dict(file=...))`` for pretrained weights and ``checkpoint_path=`` /
``timm.models.load_checkpoint`` for checkpoints, so timm's key cleaning, EMA selection,
safetensors support and position-embedding resampling all apply.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from typing import Any

import timm
import torch
from torch import nn

from smi.data.transforms import check_data_config
from smi.errors import SMIError
from smi.sparse_vit import check_vit

# Errors timm/torch/safetensors raise for an unreadable weights file.
_CORRUPT_ERRORS = (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError, KeyError)


def check_model_name(name: str) -> None:
    """Raise SMIError unless ``name`` is a timm model name."""
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8] if name else []
        hint = f" Similar names: {close}." if close else ""
        raise SMIError(f"unknown timm model '{name}'; see timm.list_models() for valid names.{hint}")


def check_architecture(name: str, model_kwargs: Mapping[str, Any]) -> None:
    """Raise SMIError unless ``name`` with ``model_kwargs`` builds a supported ViT.

    The model is built on the meta device (no memory, no weights), so a wrong name or a
    non-ViT fails before any download or training starts.
    """
    with torch.device("meta"):
        create(name, 1, model_kwargs)


def create(name: str, num_classes: int, model_kwargs: Mapping[str, Any], **extra: Any) -> nn.Module:
    """``timm.create_model`` with the teacher's class count and checks that it is a usable ViT."""
    check_model_name(name)
    try:
        model = timm.create_model(name, num_classes=num_classes, **dict(model_kwargs), **extra)
    except TypeError as exc:
        raise SMIError(f"invalid model_kwargs {dict(model_kwargs)} for timm model '{name}': {exc}") from exc
    check_vit(model)
    return model


def create_pretrained(name: str, num_classes: int, model_kwargs: Mapping[str, Any], file: str | None) -> nn.Module:
    """A model with timm's pretrained weights, from ``file`` when given (works offline).

    Args:
        name: timm model name.
        num_classes: Classes of the head. Without ``file`` it must equal the pretrained head's
            unless the head is to be replaced (fine-tuning).
        model_kwargs: Extra ``create_model`` arguments.
        file: Local weights file; its head must have ``num_classes`` outputs.
    """
    from smi.teachers import hub

    overlay: dict[str, Any] = {}
    if file:
        if not os.path.isfile(file):
            raise hub.missing_file_error(file, name)
        # Declaring the file's class count stops timm from discarding its head.
        overlay = {"file": os.path.abspath(file), "source": "", "num_classes": num_classes}
    else:
        # The cache first, and the hub only once a probe finds it reachable: offline, timm's hub
        # client would retry for most of a minute before failing.
        cached = hub.local_or_reachable(name)
        if cached is not None:
            overlay = {"file": cached, "source": ""}  # timm drops the cached head if num_classes differs
    where = overlay.get("file")
    try:
        return create(name, num_classes, model_kwargs, pretrained=True, pretrained_cfg_overlay=overlay or None)
    except SMIError:
        raise
    except Exception as exc:  # hub, network and file errors come in many types
        raise _weights_error(
            exc, where or f"the pretrained weights of '{name}'", num_classes, local=bool(where)
        ) from exc


def pretrained_num_classes(name: str) -> int | None:
    """Class count of the head of timm's default pretrained weights of ``name``."""
    check_model_name(name)
    cfg = timm.models.get_pretrained_cfg(name)
    return getattr(cfg, "num_classes", None) if cfg is not None else None


def create_from_checkpoint(
    name: str, num_classes: int, model_kwargs: Mapping[str, Any], path: str, replace_head: bool = False
) -> nn.Module:
    """A model with the weights of a local checkpoint.

    Args:
        replace_head: Start fine-tuning: keep every weight but a head of another class count,
            which is re-initialised (the position embedding is resampled by timm's filter
            when the image size differs).
    """
    _check_file(path)
    try:
        if not replace_head:
            return create(name, num_classes, model_kwargs, checkpoint_path=path)
        model = create(name, num_classes, model_kwargs)
        filter_fn = _head_dropping_filter(getattr(timm.models.get_pretrained_cfg(name), "classifier", "head"))
        result = timm.models.load_checkpoint(model, path, strict=False, filter_fn=filter_fn)
        _check_only_head_missing(result, path)
        return model
    except SMIError:
        raise
    except Exception as exc:
        raise _weights_error(exc, path, num_classes) from exc


def init_sincos_pos_embed(model: nn.Module) -> None:
    """Initialise the learned position embedding with a 2-D sin-cos embedding (as MAE does).

    A fixed-frequency start gives every token its grid position from the first step, which
    is what lets a ViT trained from scratch on a thousand images converge in a few epochs; the
    embedding stays a trained parameter of the unmodified timm model.
    """
    from timm.layers import build_sincos2d_pos_embed

    gh, gw = model.patch_embed.grid_size
    table = build_sincos2d_pos_embed([gh, gw], dim=model.embed_dim).reshape(gh * gw, model.embed_dim)
    prefix = 0 if model.no_embed_class else model.num_prefix_tokens
    with torch.no_grad():
        model.pos_embed[:, prefix:] = table.to(model.pos_embed.dtype)
        model.pos_embed[:, :prefix] = 0.0


def model_data_config(model: nn.Module, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """timm's data config of ``model`` at the size the model was built for, plus overrides."""
    from timm.data import resolve_model_data_config

    config = dict(resolve_model_data_config(model))
    config["input_size"] = (config["input_size"][0], *model.patch_embed.img_size)
    config.update(dict(overrides or {}))
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    check_data_config(config)
    return config


def _check_file(path: str) -> None:
    if not os.path.isfile(path):
        raise SMIError(f"weights file {path} does not exist; give the path of a .pth/.pt or .safetensors file.")


def _weights_error(exc: Exception, what: str, num_classes: int, local: bool = True) -> SMIError:
    """One clear error for a failed load; ``local``: ``what`` is a file on disk (else a download)."""
    text = str(exc)
    mismatched = re.findall(r"size mismatch for ([\w.]+):", text)
    if mismatched and all(key.split(".")[0] == "head" for key in mismatched):
        return SMIError(
            f"the classifier head in {what} does not match the dataset's {num_classes} classes ({_first_line(text)}); "
            "use a checkpoint trained on this dataset, or source 'finetune' to replace the head."
        )
    if "size mismatch" in text or "Missing key" in text or "Unexpected key" in text:
        return SMIError(
            f"the weights in {what} do not fit this model ({_first_line(text)}); check 'model' and 'model_kwargs'."
        )
    if local and (isinstance(exc, _CORRUPT_ERRORS) or "safetensor" in type(exc).__name__.lower()):
        return SMIError(
            f"cannot read {what}: {type(exc).__name__}: {_first_line(text)}. Is the file complete and a "
            "torch or safetensors checkpoint? Re-create or re-download it."
        )
    return SMIError(
        f"could not load {what}: {type(exc).__name__}: {_first_line(text)}. Offline, place the weights "
        "in the timm/Hugging Face cache, give 'pretrained_file', or run 'smi fetch-weights' where the "
        "network is reachable."
    )


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines[:2])[:300] if lines else "no message"


def _head_dropping_filter(classifier: str | tuple[str, ...]) -> Any:
    from timm.models.vision_transformer import checkpoint_filter_fn

    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)

    def filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
        own = model.state_dict()
        state_dict = {
            k: v
            for k, v in state_dict.items()
            if not (k.rsplit(".", 1)[0] in names and k in own and own[k].shape != v.shape)
        }
        return checkpoint_filter_fn(state_dict, model)

    return filter_fn


def _check_only_head_missing(result: Any, path: str) -> None:
    missing = [k for k in getattr(result, "missing_keys", []) if not k.startswith("head")]
    unexpected = list(getattr(result, "unexpected_keys", []))
    if missing or unexpected:
        raise SMIError(
            f"the weights in {path} do not fit this model (missing {missing[:4]}, unexpected {unexpected[:4]}); "
            "check 'model' and 'model_kwargs'."
        )
