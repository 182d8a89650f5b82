"""In-memory dataset of normalised image tensors (the embedded datasets).

The embedded datasets are small, so they live in memory as one tensor; trainers and
evaluators can take whole batches by slicing ``images`` instead of going through a
``DataLoader`` item by item.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from smi.errors import SMIError


class TensorImageDataset(Dataset):
    """Images, labels and (optionally) foreground masks held as tensors.

    Args:
        images: Normalised images (N, C, H, W), float32.
        labels: Class indices (N,), int64.
        masks: Boolean foreground masks (N, H, W), or ``None``.
        with_masks: Return ``(image, label, mask)`` items instead of ``(image, label)``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        masks: torch.Tensor | None = None,
        with_masks: bool = False,
    ) -> None:
        if with_masks and masks is None:
            raise SMIError("foreground masks were requested but this dataset has none (only 'shapes' has masks).")
        if images.shape[0] != labels.shape[0]:
            raise ValueError("images and labels differ in length")
        self.images = images.float().contiguous()
        self.labels = labels.long().contiguous()
        self.masks = masks.bool().contiguous() if masks is not None else None
        self.with_masks = with_masks

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        if self.with_masks:
            assert self.masks is not None
            return self.images[index], self.labels[index], self.masks[index]
        return self.images[index], self.labels[index]
