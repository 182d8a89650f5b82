"""Shared data types that cross module boundaries: the teacher and sparse images.

The teacher is handed to every method; the sparse images (pixels, keep masks, targets) are what
inversion results and image-set files both hold. Kept in one small module so that inversion,
evaluators and baselines agree on one contract without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class SparseImages:
    """Images on a model's patch grid with the patches each keeps: what an inversion produces.

    Attributes:
        images: (M, C, H, W) float32 in pixel space [0, 1]; stopped patches are black.
        keep_masks: (M, gh, gw) bool, True where a patch is part of the image.
        targets: (M,) int64 class labels the images were made for.
    """

    images: torch.Tensor
    keep_masks: torch.Tensor
    targets: torch.Tensor


@dataclass
class Teacher:
    """A trained classifier plus what is needed to feed it images.

    Attributes:
        model: The timm VisionTransformer, in eval mode.
        model_name: The timm model name (for example ``deit_tiny_patch16_224``).
        num_classes: Number of output classes.
        data_config: timm data config: ``input_size`` (C, H, W), ``mean``, ``std``,
            ``interpolation``, ``crop_pct``.
        dataset: Name of the dataset the teacher was trained on (``digits``, ``imagenet``...).
        metadata: Free-form provenance (source, checkpoint path, recipe, accuracy).
    """

    model: nn.Module
    model_name: str
    num_classes: int
    data_config: dict[str, Any]
    dataset: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(C, H, W) of the model input."""
        return tuple(self.data_config["input_size"])  # type: ignore[return-value]

    def mean_std(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std as (1, C, 1, 1) tensors."""
        mean = torch.tensor(self.data_config["mean"], dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.data_config["std"], dtype=torch.float32, device=device).view(1, -1, 1, 1)
        return mean, std

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Pixel space [0, 1] -> the model's normalised input space."""
        mean, std = self.mean_std(images.device)
        return (images - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The model's normalised input space -> pixel space (not clipped)."""
        mean, std = self.mean_std(x.device)
        return x * std + mean
