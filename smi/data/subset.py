"""The seeded subset of a dataset split that ``max_images`` asks for (file-backed datasets)."""

from __future__ import annotations

import torch


def subset_indices(count: int, max_images: int | None, seed: int) -> list[int] | None:
    """Sorted indices of ``max_images`` items drawn without replacement from ``count``.

    Returns:
        None when no subset is asked for or the split is not larger than it (keep everything).
    """
    if max_images is None or count <= max_images:
        return None
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(count, generator=generator)[:max_images].tolist())
