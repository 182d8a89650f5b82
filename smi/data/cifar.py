"""CIFAR-10 and CIFAR-100 read from torchvision's on-disk layout (no download).

The knowledge-transfer experiments of Sparse Model Inversion (Hu et al., ICML 2024; official
code ``test_kt.py``) distil CIFAR-10/100 teachers. Their data is read from the folders that
``torchvision.datasets.CIFAR10/100(root, download=True)`` leaves under ``root``:

- ``cifar-10-batches-py/``: ``data_batch_1`` ... ``data_batch_5`` (train), ``test_batch``,
  ``batches.meta``; each batch a pickled dict with ``data`` (N, 3072) uint8, channel-first
  32x32, and ``labels``;
- ``cifar-100-python/``: ``train``, ``test``, ``meta``; labels under ``fine_labels``.

The pickles are read directly (as torchvision does, ``encoding='latin1'``) rather than through
torchvision's classes, whose md5 check would reject anything but the published archives (the
tests use tiny files in the same layout). ``root`` is the folder that holds the CIFAR folder
(torchvision's convention) or the CIFAR folder itself.

Each image goes through timm's eval transform of the teacher's data config (the official
code's validation transform for DeiT: resize to 256 bicubic, centre crop 224, normalise), so a
teacher fine-tuned at 224 px sees 224 px inputs. ``keep_zero`` reproduces a quirk of the
official code: its ``Normalizer(keep_zero=True)`` leaves every pixel value that is exactly 0
at 0 after normalisation, on the test split too.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from smi.data.subset import SubsetOptions
from smi.data.transforms import check_data_config, eval_transform
from smi.errors import SMIError

SPLITS: tuple[str, ...] = ("train", "test")
SIDE = 32  # CIFAR images are 32 x 32 RGB


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant keeps its files.

    Attributes:
        folder: Sub-folder name torchvision uses under ``root``.
        files: Batch file names of each split.
        label_key: Key of the class labels in a batch.
        num_classes: Class count.
    """

    folder: str
    files: dict[str, tuple[str, ...]]
    label_key: str
    num_classes: int

    def describe(self) -> str:
        names = sorted({f for files in self.files.values() for f in files})
        return f"<root>/{self.folder}/ with {', '.join(names)} (torchvision's python pickles)"


LAYOUTS: dict[str, CifarLayout] = {
    "cifar10": CifarLayout(
        "cifar-10-batches-py",
        {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        "labels",
        10,
    ),
    "cifar100": CifarLayout("cifar-100-python", {"train": ("train",), "test": ("test",)}, "fine_labels", 100),
}


@dataclass(frozen=True)
class CifarOptions(SubsetOptions):
    """Options of the CIFAR datasets: ``max_images`` and ``subset_seed`` (:class:`SubsetOptions`), and:

    Attributes:
        keep_zero: Leave pixels that are exactly 0 at 0 after normalisation (the official SMI
            code's ``keep_zero`` normalisation, applied to its test split as well).
    """

    keep_zero: bool = False


class CifarDataset(Dataset):
    """CIFAR images (uint8, N x 32 x 32 x 3) with labels, transformed on access.

    Args:
        pixels: (N, 32, 32, 3) uint8 images.
        labels: (N,) class indices.
        transform: PIL image -> normalised (C, H, W) tensor.
    """

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, transform: Callable[[Any], torch.Tensor]) -> None:
        self.pixels = pixels
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.pixels[index])), int(self.labels[index])


def load_cifar_split(
    name: str, root: str, options: CifarOptions, split: str, data_config: Mapping[str, Any]
) -> CifarDataset:
    """The ``split`` of ``name`` (``cifar10`` / ``cifar100``) under ``root``, transformed for the model."""
    pixels, labels = read_split(name, root, split)
    return CifarDataset(options.subset(pixels), options.subset(labels), cifar_transform(data_config, options.keep_zero))


def cifar_num_classes(name: str, root: str | None = None) -> int:
    """Class count of ``name`` (fixed by the dataset; ``root`` is not read)."""
    return LAYOUTS[name].num_classes


def cifar_transform(data_config: Mapping[str, Any], keep_zero: bool) -> Callable[[Any], torch.Tensor]:
    """timm's eval transform of ``data_config``; with ``keep_zero``, zeros stay zeros after normalising."""
    if not keep_zero:
        return eval_transform(data_config)
    c = check_data_config(data_config)[0]
    # Resize and crop exactly as timm does, but normalise here, where the raw zeros are still visible.
    to_pixels = eval_transform({**dict(data_config), "mean": (0.0,) * c, "std": (1.0,) * c})
    mean = torch.tensor(data_config["mean"], dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(data_config["std"], dtype=torch.float32).view(-1, 1, 1)

    def transform(image: Any) -> torch.Tensor:
        pixels = to_pixels(image)
        return ((pixels - mean) / std).masked_fill(pixels == 0, 0.0)

    return transform


def read_split(name: str, root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) int64 of one split, from the pickles."""
    layout = LAYOUTS[name]
    base = _base_folder(name, Path(root).expanduser())
    images, labels = [], []
    for file in layout.files[split]:
        batch = _read_batch(name, base / file)
        if "data" not in batch or layout.label_key not in batch:
            raise _layout_error(name, base / file, f"lacks the key 'data' or '{layout.label_key}'")
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
            raise _layout_error(name, base / file, f"holds 'data' of shape {data.shape}, not (N, {3 * SIDE * SIDE})")
        lab = np.asarray(batch[layout.label_key], dtype=np.int64)
        if lab.shape != (data.shape[0],):
            raise _layout_error(name, base / file, f"has {lab.shape[0]} labels for {data.shape[0]} images")
        if lab.size and (lab.min() < 0 or lab.max() >= layout.num_classes):
            raise _layout_error(name, base / file, f"holds labels outside 0..{layout.num_classes - 1}")
        images.append(data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1))
        labels.append(lab)
    pixels, all_labels = np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)
    if not len(all_labels):
        raise _layout_error(name, base, f"has no images in the '{split}' split")
    return pixels, all_labels


def _base_folder(name: str, root: Path) -> Path:
    folder = LAYOUTS[name].folder
    for candidate in (root / folder, root):
        if candidate.is_dir() and candidate.name == folder:
            return candidate
    raise SMIError(f"dataset '{name}': {root / folder} does not exist; expected layout: {LAYOUTS[name].describe()}.")


def _read_batch(name: str, path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise _layout_error(name, path, "is missing")
    try:
        with path.open("rb") as f:
            raw = pickle.load(f, encoding="latin1")
    except Exception as exc:  # pickle raises many types for a damaged file
        raise _layout_error(name, path, f"cannot be read as a CIFAR pickle ({exc})") from exc
    if not isinstance(raw, dict):
        raise _layout_error(name, path, "does not hold a dict")
    # The published files are Python 2 pickles (str keys under latin1); files written by Python 3 may use bytes.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in raw.items()}


def _layout_error(name: str, path: Path, what: str) -> SMIError:
    return SMIError(f"dataset '{name}': {path} {what}; expected layout: {LAYOUTS[name].describe()}.")
