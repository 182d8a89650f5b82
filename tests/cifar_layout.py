"""Tiny CIFAR-10 / CIFAR-100 folders in torchvision's exact on-disk layout, for tests.

``write_cifar(root, "cifar10")`` creates ``root/cifar-10-batches-py/`` with ``data_batch_1`` ...
``data_batch_5``, ``test_batch`` and ``batches.meta``; ``"cifar100"`` creates
``root/cifar-100-python/`` with ``train``, ``test`` and ``meta``. Each file is a pickled dict
like the published ones (``data``: (N, 3072) uint8 channel-first, ``labels`` or
``fine_labels`` / ``coarse_labels``), so the loader is tested on the real format, only smaller.

Each class has its own mean colour plus noise, so a small model can learn the classes and a
distillation smoke test has something to transfer.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

SIDE = 32
FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
CLASSES = {"cifar10": 10, "cifar100": 100}
TRAIN_BATCHES = 5  # CIFAR-10 splits its training set into five files


def class_images(labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """(N, 3072) uint8 images: a per-class colour plus noise, channel-first rows as in CIFAR."""
    palette = np.random.default_rng(1234).integers(30, 226, (num_classes, 3, 1, 1))
    noise = rng.normal(0.0, 20.0, (len(labels), 3, SIDE, SIDE))
    pixels = np.clip(palette[labels] + noise, 0, 255).astype(np.uint8)
    return pixels.reshape(len(labels), -1)


def _dump(path: Path, obj: dict) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar(
    root: Path, name: str = "cifar10", train_per_class: int = 2, test_per_class: int = 1, seed: int = 0
) -> Path:
    """Write a tiny CIFAR folder under ``root``; returns ``root`` (the dataset spec's root).

    Args:
        root: Folder that will hold ``cifar-10-batches-py`` or ``cifar-100-python``.
        name: ``cifar10`` or ``cifar100``.
        train_per_class: Training images per class (spread over the five CIFAR-10 batches).
        test_per_class: Test images per class.
        seed: Seed of the noise.
    """
    num_classes = CLASSES[name]
    rng = np.random.default_rng(seed)
    base = Path(root) / FOLDERS[name]
    base.mkdir(parents=True, exist_ok=True)
    train = rng.permutation(np.repeat(np.arange(num_classes), train_per_class))
    test = np.repeat(np.arange(num_classes), test_per_class)
    if name == "cifar10":
        for i, part in enumerate(np.array_split(train, TRAIN_BATCHES), start=1):
            _dump(
                base / f"data_batch_{i}",
                {
                    "batch_label": f"training batch {i} of 5",
                    "labels": part.tolist(),
                    "data": class_images(part, num_classes, rng),
                    "filenames": [f"train_{i}_{j}.png" for j in range(len(part))],
                },
            )
        _dump(
            base / "test_batch",
            {
                "batch_label": "testing batch 1 of 1",
                "labels": test.tolist(),
                "data": class_images(test, num_classes, rng),
                "filenames": [f"test_{j}.png" for j in range(len(test))],
            },
        )
        _dump(
            base / "batches.meta",
            {
                "label_names": [f"class{c}" for c in range(num_classes)],
                "num_cases_per_batch": len(train) // TRAIN_BATCHES,
                "num_vis": SIDE * SIDE * 3,
            },
        )
    else:
        for split, labels in (("train", train), ("test", test)):
            _dump(
                base / split,
                {
                    "fine_labels": labels.tolist(),
                    "coarse_labels": (labels // 5).tolist(),
                    "data": class_images(labels, num_classes, rng),
                    "filenames": [f"{split}_{j}.png" for j in range(len(labels))],
                },
            )
        _dump(
            base / "meta",
            {
                "fine_label_names": [f"class{c}" for c in range(num_classes)],
                "coarse_label_names": [f"super{c}" for c in range(num_classes // 5)],
            },
        )
    return Path(root)
