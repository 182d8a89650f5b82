"""Real datasets read from a user-given folder in their standard layouts.

- ``imagenet``: ILSVRC2012 with ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (the
  validation images sorted into class folders, as timm and torchvision expect). The folder
  names must be ILSVRC-2012 wnids, and a folder's class index is its index in the canonical
  1000-class list timm ships (``timm.data.ImageNetInfo``), the label order of timm's ImageNet
  heads. A subset of the folders (ImageNet-100, a few classes for a quick check) thus keeps
  every label of the full set and 1000 classes, never a shifted order. ``test`` reads ``val/``.
- ``flowers102``: Oxford Flowers-102 with ``jpg/image_00001.jpg...``, ``imagelabels.mat``
  (``labels``, 1-based) and ``setid.mat`` (``trnid``, ``valid``, ``tstid``). ``train`` is
  ``trnid`` + ``valid`` (2040 images), ``test`` is ``tstid`` (6149), as is usual for teachers.
- ``cub200``: CUB-200-2011 with ``images/``, ``images.txt``, ``image_class_labels.txt``
  (1-based) and ``train_test_split.txt`` (1 = train).
- ``imagefolder``: ``train/<class>/*`` and ``test/<class>/*`` (or ``val/<class>/*``).

Images go through timm's eval transform built from the teacher's data config. Every missing
file or malformed index raises one :class:`SMIError` that names the file and the layout.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from smi.data.subset import SubsetOptions
from smi.data.transforms import eval_transform
from smi.errors import SMIError

SPLITS: tuple[str, ...] = ("train", "test")
LAYOUTS: dict[str, str] = {
    "imagenet": "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (validation images in class folders)",
    "flowers102": (
        "jpg/image_00001.jpg ..., imagelabels.mat (key 'labels') and setid.mat (keys 'trnid', 'valid', 'tstid')"
    ),
    "cub200": "images/<class>/*.jpg, images.txt, image_class_labels.txt and train_test_split.txt",
    "imagefolder": "train/<class>/<image> and test/<class>/<image> (or val/<class>/<image>)",
}
Samples = list[tuple[str, int]]


@dataclass(frozen=True)
class FolderOptions(SubsetOptions):
    """Options of the folder datasets: ``max_images`` and ``subset_seed`` (:class:`SubsetOptions`)."""


class FileImageDataset(Dataset):
    """Image files with labels, read with PIL and passed through a transform."""

    def __init__(self, samples: Samples, transform: Callable[[Any], torch.Tensor]) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        path, label = self.samples[index]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise SMIError(f"cannot read image {path}: {exc}; replace or remove the file.") from exc
        return self.transform(image), label


def load_folder_split(
    name: str, root: str, options: FolderOptions, split: str, data_config: Mapping[str, Any]
) -> FileImageDataset:
    """The ``split`` of folder dataset ``name`` under ``root``, with timm's eval transform."""
    samples, _ = scan(name, root, split)
    return FileImageDataset(options.subset(samples), eval_transform(data_config))


def folder_num_classes(name: str, root: str) -> int:
    """Number of classes of folder dataset ``name`` under ``root``."""
    return scan(name, root, "train")[1]


def scan(name: str, root: str, split: str) -> tuple[Samples, int]:
    """List ``(path, label)`` of a split and the class count, checking the layout."""
    base = Path(root)
    if not base.is_dir():
        raise SMIError(f"dataset '{name}' folder {root} does not exist; expected layout: {LAYOUTS[name]}.")
    scanners = {
        "imagenet": _scan_classfolders,
        "imagefolder": _scan_classfolders,
        "flowers102": _scan_flowers,
        "cub200": _scan_cub,
    }
    return scanners[name](name, base, split)


def _missing(name: str, path: Path, what: str = "is missing") -> SMIError:
    return SMIError(f"dataset '{name}': {path} {what}; expected layout under the root: {LAYOUTS[name]}.")


def _split_dir(name: str, base: Path, split: str) -> Path:
    if split == "train":
        candidates = ["train"]
    else:
        candidates = ["val"] if name == "imagenet" else ["test", "val"]
    for sub in candidates:
        if (base / sub).is_dir():
            return base / sub
    return base / candidates[0]


def _scan_classfolders(name: str, base: Path, split: str) -> tuple[Samples, int]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    train_dir = base / "train"
    if not train_dir.is_dir():
        raise _missing(name, train_dir)
    classes = sorted(e.name for e in os.scandir(train_dir) if e.is_dir())
    if not classes:
        raise _missing(name, train_dir, "has no class folders")
    directory = _split_dir(name, base, split)
    if not directory.is_dir():
        raise _missing(name, directory)
    extra = sorted({e.name for e in os.scandir(directory) if e.is_dir()} - set(classes))
    if extra:
        raise SMIError(f"dataset '{name}': {directory} has class folders {extra[:5]} that train/ lacks.")
    if name == "imagenet":
        class_to_idx, num = _imagenet_indices(base, classes)
    else:
        class_to_idx, num = {c: i for i, c in enumerate(classes)}, len(classes)
    samples = make_dataset(str(directory), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    if not samples:
        raise _missing(name, directory, f"holds no images ({', '.join(IMG_EXTENSIONS)})")
    return samples, num


def _imagenet_indices(base: Path, classes: list[str]) -> tuple[dict[str, int], int]:
    """Class folder -> ILSVRC-2012 class index, and the class count (always the full 1000).

    Sorted folder names agree with the canonical order only when all 1000 folders are present;
    mapping through the wnid list keeps a subset's labels where a 1000-class head expects them.
    """
    from timm.data import ImageNetInfo

    wnids = ImageNetInfo().label_names()
    index = {wnid: i for i, wnid in enumerate(wnids)}
    unknown = [c for c in classes if c not in index]
    if unknown:
        raise SMIError(
            f"dataset 'imagenet': class folders {unknown[:5]} under {base / 'train'} are not ILSVRC-2012 wnids "
            f"(such as {wnids[0]}); ImageNet labels follow the canonical wnid list. Use dataset 'imagefolder' "
            "for other class folders."
        )
    return {c: index[c] for c in classes}, len(wnids)


def _load_mat(name: str, path: Path, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    from scipy.io import loadmat

    if not path.is_file():
        raise _missing(name, path)
    try:
        data = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a damaged file
        raise _missing(name, path, f"cannot be read as a MATLAB file ({exc})") from exc
    lacking = [k for k in keys if k not in data]
    if lacking:
        raise _missing(name, path, f"lacks the key(s) {lacking}")
    return {k: torch.as_tensor(data[k].astype("int64")).flatten() for k in keys}


def _scan_flowers(name: str, base: Path, split: str) -> tuple[Samples, int]:
    labels = _load_mat(name, base / "imagelabels.mat", ("labels",))["labels"]
    ids = _load_mat(name, base / "setid.mat", ("trnid", "valid", "tstid"))
    chosen = torch.cat([ids["trnid"], ids["valid"]]) if split == "train" else ids["tstid"]
    if int(chosen.min()) < 1 or int(chosen.max()) > labels.numel():
        raise _missing(name, base / "setid.mat", f"refers to images outside 1..{labels.numel()}")
    samples = [(str(base / "jpg" / f"image_{i:05d}.jpg"), int(labels[i - 1]) - 1) for i in sorted(chosen.tolist())]
    _check_files(name, samples)
    return samples, int(labels.max())


def _read_table(name: str, path: Path) -> dict[int, str]:
    if not path.is_file():
        raise _missing(name, path)
    table = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise _missing(name, path, f"line {number} is not '<image id> <value>'")
        table[int(parts[0])] = parts[1].strip()
    return table


def _scan_cub(name: str, base: Path, split: str) -> tuple[Samples, int]:
    images = _read_table(name, base / "images.txt")
    labels = _read_table(name, base / "image_class_labels.txt")
    is_train = _read_table(name, base / "train_test_split.txt")
    for table, path in ((labels, "image_class_labels.txt"), (is_train, "train_test_split.txt")):
        lacking = sorted(set(images) - set(table))
        if lacking:
            raise _missing(name, base / path, f"misses image id(s) {lacking[:5]} listed in images.txt")
    try:
        label_of = {i: int(labels[i]) - 1 for i in images}
    except ValueError as exc:
        raise _missing(name, base / "image_class_labels.txt", "holds a non-integer class") from exc
    wanted = "1" if split == "train" else "0"
    samples = [(str(base / "images" / images[i]), label_of[i]) for i in sorted(images) if is_train[i] == wanted]
    _check_files(name, samples)
    return samples, max(label_of.values()) + 1


def _check_files(name: str, samples: Samples) -> None:
    if not samples:
        raise SMIError(f"dataset '{name}' has no images in this split; expected layout: {LAYOUTS[name]}.")
    for path, _ in samples:
        if not os.path.isfile(path):
            raise _missing(name, Path(path))
