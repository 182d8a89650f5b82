"""Argument helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch

from smi.errors import SMIError


def json_arg(text: str) -> Any:
    """argparse type: a JSON value (objects for specs and parameters)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at position {exc.pos}): {text!r}") from exc


#: Torch CPU threads unless ``--threads`` says otherwise. Fixed rather than torch's choice (the
#: machine's core count): results such as trained weights change with the thread count, so a
#: default that follows the machine would make the same command give different numbers.
DEFAULT_THREADS = 1


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--threads``."""
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS,
        help=f"CPU threads for torch (default: {DEFAULT_THREADS}; results can depend on it, every record stores it)",
    )


def resolve_device(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads`` and check that the requested device exists."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SMIError(f"device {args.device!r} was requested but CUDA is not available; use --device cpu.")
    return device


def teacher_dataset_spec(spec_text: str | None, teacher: Any, teacher_path: str) -> Any:
    """The dataset a teacher is evaluated on: ``--dataset-spec`` or the one its file stores.

    Raises:
        SMIError: If neither is available.
    """
    from smi.data import DatasetSpec

    if spec_text is not None:
        return DatasetSpec.from_config(spec_arg(spec_text, "--dataset-spec"))
    if teacher.metadata.get("dataset_spec"):
        return DatasetSpec.from_config(teacher.metadata["dataset_spec"])
    raise SMIError(f"{teacher_path} stores no dataset spec; pass --dataset-spec.")


def spec_arg(text: str, option: str) -> dict[str, Any]:
    """Parse a CLI option given as JSON text or as the path of a JSON file."""
    source = text
    if not text.lstrip().startswith("{") and os.path.isfile(text):
        source = Path(text).read_text()
    try:
        value = json.loads(source)
    except json.JSONDecodeError as exc:
        raise SMIError(f"{option} is neither JSON text nor a JSON file: {exc}.") from exc
    if not isinstance(value, dict):
        raise SMIError(f"{option} must be a JSON object, got {type(value).__name__}.")
    return value
