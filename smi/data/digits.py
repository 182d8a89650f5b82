"""``digits``: the real handwritten digits that ship with scikit-learn.

1797 grayscale 8x8 images of the digits 0-9 (the UCI optical-recognition test set), so the
suite runs end to end with no download. Images are scaled to [0, 1], replicated to the
teacher's channels, resized to its input size and normalised with its mean/std. The
train/test split is stratified and fixed by ``seed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from smi.data.tensors import TensorImageDataset
from smi.data.transforms import normalise, resize_images
from smi.errors import SMIError

NUM_CLASSES = 10
SPLITS: tuple[str, ...] = ("train", "test")
# sklearn's digits store ink intensity as integers 0..16.
_MAX_INTENSITY = 16.0


@dataclass(frozen=True)
class DigitsOptions:
    """Options of the ``digits`` dataset.

    Attributes:
        test_fraction: Fraction of the 1797 images held out as the test split.
        seed: Seed of the stratified split.
    """

    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < float(self.test_fraction) < 1.0:
            raise SMIError(f"digits test_fraction {self.test_fraction} must lie in (0, 1).")


def split_indices(options: DigitsOptions, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stratified, seeded train/test indices into the 1797 images."""
    from sklearn.model_selection import train_test_split

    index = torch.arange(labels.shape[0]).numpy()
    train, test = train_test_split(
        index, test_size=options.test_fraction, random_state=options.seed, stratify=labels.numpy()
    )
    return {"train": torch.as_tensor(sorted(train)), "test": torch.as_tensor(sorted(test))}


def load_digits_split(
    options: DigitsOptions, split: str, data_config: Mapping[str, Any], with_masks: bool = False
) -> TensorImageDataset:
    """The ``split`` of the digits, resized and normalised per ``data_config``."""
    from sklearn.datasets import load_digits

    if with_masks:
        raise SMIError("dataset 'digits' has no foreground masks; use 'shapes' for the foreground evaluation.")
    raw = load_digits()
    images = torch.as_tensor(raw.images, dtype=torch.float32)[:, None] / _MAX_INTENSITY
    labels = torch.as_tensor(raw.target, dtype=torch.int64)
    index = split_indices(options, labels)[split]
    pixels = resize_images(images[index], data_config)
    return TensorImageDataset(normalise(pixels, data_config), labels[index])
