"""The seeded subset of a dataset split that ``max_images`` asks for (file-backed datasets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from smi.errors import SMIError

#: One entry per image of a split: an array indexed along its first axis, or a list.
Items = TypeVar("Items", np.ndarray, list)


def subset_indices(count: int, max_images: int | None, seed: int) -> list[int] | None:
    """Sorted indices of ``max_images`` items drawn without replacement from ``count``.

    Returns:
        None when no subset is asked for or the split is not larger than it (keep everything).
    """
    if max_images is None or count <= max_images:
        return None
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(count, generator=generator)[:max_images].tolist())


@dataclass(frozen=True)
class SubsetOptions:
    """Options every file-backed dataset has: a seeded random subset of each split.

    Attributes:
        max_images: Keep at most this many images per split (a seeded random subset, for quick
            evaluation); ``None`` keeps all.
        subset_seed: Seed of that subset.
    """

    max_images: int | None = None
    subset_seed: int = 0

    def __post_init__(self) -> None:
        if self.max_images is not None and self.max_images < 1:
            raise SMIError(f"max_images {self.max_images} must be at least 1 (or null for all images).")

    def subset(self, items: Items) -> Items:
        """``items`` (one entry per image of a split) restricted to the subset; all of them without one.

        The same split length gives the same indices, so parallel arrays (images and labels) stay aligned.
        """
        keep = subset_indices(len(items), self.max_images, self.subset_seed)
        if keep is None:
            return items
        return items[keep] if isinstance(items, np.ndarray) else [items[i] for i in keep]
