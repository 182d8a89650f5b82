"""Helpers shared by the sub-commands: argument types and what their ``run`` functions share.

Numeric options take one of the range-checked ``type=`` functions below, so a bad value is
one argparse error line naming the option before any work starts. The options that several
commands take are declared in :mod:`smi.cli._options`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from smi.errors import SMIError

#: The most bits a quantizer takes (the config schema's limit too).
MAX_BITS = 16
MIN_BITS = 2


def json_arg(text: str) -> dict[str, Any]:
    """argparse type of every JSON option (a spec or a parameter set): JSON text or a JSON file.

    Text that does not start with ``{`` and names an existing file is read from that file, so a
    long spec can be kept in a ``.json`` file.
    """
    source = text
    if not text.lstrip().startswith("{") and os.path.isfile(text):
        source = Path(text).read_text()
    try:
        value = json.loads(source)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({exc.msg} at position {exc.pos}; give JSON text or a JSON file's path): {text!r}"
        ) from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"must be a JSON object such as '{{\"key\": 1}}', got a JSON {type(value).__name__}: {text!r}"
        )
    return value


def _number(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in ``[low, high]`` (``high=None``: no upper bound)."""

    def parse(text: str) -> int:
        value = _number(text, int)
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


def float_range(
    low: float, high: float | None = None, low_open: bool = False, high_open: bool = False
) -> Callable[[str], float]:
    """argparse type: a finite number between ``low`` and ``high`` (open or closed ends)."""

    def parse(text: str) -> float:
        value = float(_number(text, float))
        too_low = value <= low if low_open else value < low
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            span = f"in {left}{low}, {high}{right}" if high is not None else (f"> {low}" if low_open else f">= {low}")
            raise argparse.ArgumentTypeError(f"must be a number {span}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


#: The range-checked types of the sub-commands' numeric options.
positive_int = int_range(1)
nonneg_int = int_range(0)
bits_int = int_range(MIN_BITS, MAX_BITS)
positive_float = float_range(0.0, low_open=True)
nonneg_float = float_range(0.0)
open_fraction = float_range(0.0, 1.0, low_open=True, high_open=True)
unit_fraction = float_range(0.0, 1.0, low_open=True)


def inversion_config(args: argparse.Namespace) -> Any:
    """The run's ``InversionConfig``: ``--inversion-config`` with ``--batch-size`` / ``--iterations`` on top."""
    from smi.config import from_dict
    from smi.inversion import InversionConfig

    overrides = dict(args.inversion_config)
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    if args.iterations is not None:
        overrides["iterations"] = args.iterations
    return from_dict(InversionConfig, overrides, "the inversion config")


def check_writable(
    paths: Iterable[str | os.PathLike[str] | None], folders: Iterable[str | os.PathLike[str] | None] = ()
) -> None:
    """Raise unless every output can be created, before any work is done.

    The nearest existing folder above each output must accept a new file (probed by creating
    and removing one: permission bits alone mislead for root and on network file systems).

    Args:
        paths: Output files (``None`` entries are skipped).
        folders: Output folders (``None`` entries are skipped).

    Raises:
        SMIError: For an output that is an existing folder (or, for ``folders``, an existing
            file), or below a path that is not a writable folder.
    """
    targets = [(Path(p), False) for p in paths if p is not None] + [(Path(p), True) for p in folders if p is not None]
    for path, is_folder in targets:
        if not is_folder and path.is_dir():
            raise SMIError(f"output {path} is a folder; give a file path.")
        if is_folder and path.exists() and not path.is_dir():
            raise SMIError(f"output folder {path} is an existing file; give a folder path.")
        base = Path(os.path.abspath(path if is_folder else path.parent))  # abspath: '..' as the job will see it
        while not base.exists() and base != base.parent:
            base = base.parent
        if not base.is_dir():
            raise SMIError(f"cannot write {path}: {base} is a file, not a folder; choose another output path.")
        try:
            fd, probe = tempfile.mkstemp(prefix=".smi-write-check.", dir=base)
        except OSError as exc:
            raise SMIError(
                f"cannot write {path}: folder {base} is not writable ({exc.strerror}); choose another "
                "output path or fix its permissions."
            ) from None
        os.close(fd)
        os.unlink(probe)


def resolve_device(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads`` and check that the requested device exists."""
    torch.set_num_threads(args.threads)
    device = parse_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SMIError(f"device {args.device!r} was requested but CUDA is not available; use --device cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SMIError(
            f"device {args.device!r} was requested but this machine has {torch.cuda.device_count()} GPU(s); "
            "use cuda:0 ... or cuda."
        )
    return device


def parse_device(text: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a torch device.

    Raises:
        SMIError: For anything else.
    """
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise SMIError(f"unknown device {text!r}; use cpu, cuda or cuda:N.")
    return device


def teacher_dataset_spec(spec_values: dict[str, Any] | None, teacher: Any, teacher_path: str) -> Any:
    """The dataset a teacher is evaluated on: ``--dataset-spec`` or the one its file stores.

    Raises:
        SMIError: If neither is available.
    """
    from smi.data import DatasetSpec

    if spec_values is not None:
        return DatasetSpec.from_config(spec_values)
    if teacher.metadata.get("dataset_spec"):
        return DatasetSpec.from_config(teacher.metadata["dataset_spec"])
    raise SMIError(f"{teacher_path} stores no dataset spec; pass --dataset-spec.")


def teacher_id(args: argparse.Namespace, teacher_path: str | os.PathLike[str]) -> str:
    """The ``--teacher-id`` given, or the stem of the teacher file (one default for every command)."""
    return args.teacher_id or Path(teacher_path).stem


def load_teacher(path: str, device: Any) -> Any:
    """Load a teacher file (a seam the tests replace)."""
    from smi.teachers import load_teacher as _load

    return _load(path, device=device)


def load_split(spec_values: dict[str, Any], split: str, teacher: Any) -> tuple[Any, Any]:
    """The dataset spec and one split of it, normalised for ``teacher``.

    Raises:
        SMIError: If the spec names another dataset than the teacher's.
    """
    from smi.data import DatasetSpec, load_dataset

    spec = DatasetSpec.from_config(spec_values)
    if teacher.dataset and spec.name != teacher.dataset:
        raise SMIError(
            f"the dataset spec names '{spec.name}' but the teacher was trained on '{teacher.dataset}'; "
            "evaluate on the teacher's own dataset."
        )
    return spec, load_dataset(spec, split, teacher.data_config)


def save_grid(images: torch.Tensor, path: str | os.PathLike[str], max_images: int = 64) -> None:
    """Save a PNG grid of images (stopped patches are already black), atomically."""
    from torchvision.utils import save_image

    from smi.io import atomic_path

    with atomic_path(path) as tmp:
        save_image(images[:max_images], tmp, nrow=8, padding=1, format="png")
