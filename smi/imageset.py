"""The image-set file: what every inversion method (and external baseline) produces.

One ``torch.save`` file holding tensors, not PNGs:

- ``images``: float32 (M, C, H, W) in pixel space [0, 1]; stopped patches are black (0);
- ``keep_masks``: bool (M, gh, gw), True where a patch is part of the image;
- ``targets``: int64 (M,) class labels the images were synthesised for;
- ``metadata``: dict with at least ``method``, ``teacher`` (model name, num_classes,
  input_size, patch_size), ``seed`` and ``config_hash``.

Evaluators feed the kept patches only to the models (the token-subset forward), so the black
pixels never enter a calibration range or a distillation loss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from smi.errors import SMIError
from smi.io import torch_save

FORMAT_VERSION = 1


@dataclass
class ImageSet:
    """Synthetic (or real, or noise) images with their keep masks and targets.

    Attributes:
        images: (M, C, H, W) float32 in [0, 1].
        keep_masks: (M, gh, gw) bool.
        targets: (M,) int64.
        metadata: Provenance and teacher description.
    """

    images: torch.Tensor
    keep_masks: torch.Tensor
    targets: torch.Tensor
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = self.images.shape[0]
        if self.images.ndim != 4:
            raise SMIError(f"image set images must be (M, C, H, W), got shape {tuple(self.images.shape)}")
        if self.keep_masks.ndim != 3 or self.keep_masks.shape[0] != m:
            raise SMIError(f"image set keep_masks must be (M, gh, gw) with M={m}, got {tuple(self.keep_masks.shape)}")
        if self.targets.shape != (m,):
            raise SMIError(f"image set targets must be (M,) with M={m}, got {tuple(self.targets.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def sparsity(self) -> float:
        """Fraction of patches that are stopped (0 for dense images)."""
        return 1.0 - float(self.keep_masks.float().mean())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the set atomically."""
        torch_save(
            {
                "format_version": FORMAT_VERSION,
                "images": self.images.detach().cpu().float().contiguous(),
                "keep_masks": self.keep_masks.detach().cpu().bool().contiguous(),
                "targets": self.targets.detach().cpu().long().contiguous(),
                "metadata": self.metadata,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "ImageSet":
        """Read a set written by :meth:`save` (or by an external baseline in this format)."""
        path = Path(path)
        if not path.is_file():
            raise SMIError(f"image set file {path} does not exist; run the inversion step that writes it first.")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt files
            raise SMIError(f"image set file {path} is not a readable torch file ({exc}); regenerate it.") from exc
        if not isinstance(blob, dict) or not {"images", "keep_masks", "targets"} <= set(blob):
            raise SMIError(
                f"image set file {path} lacks the keys images/keep_masks/targets; see smi/imageset.py "
                "for the format an external method must write."
            )
        return cls(blob["images"].float(), blob["keep_masks"].bool(), blob["targets"].long(), blob.get("metadata", {}))

    def check_compatible(self, num_classes: int, input_size: tuple[int, int, int], grid_size: tuple[int, int]) -> None:
        """Raise if this set cannot be fed to a model with the given classes and input size.

        Args:
            num_classes: The evaluated model's class count.
            input_size: The model's (C, H, W).
            grid_size: The model's patch grid (gh, gw).
        """
        if len(self) == 0:
            raise SMIError("the image set is empty; an evaluation needs at least one image.")
        if tuple(self.images.shape[1:]) != tuple(input_size):
            raise SMIError(
                f"image set has images of size {tuple(self.images.shape[1:])} but the model expects "
                f"{tuple(input_size)}; the set was made for another teacher."
            )
        if tuple(self.keep_masks.shape[1:]) != tuple(grid_size):
            raise SMIError(
                f"image set keep masks are {tuple(self.keep_masks.shape[1:])} but the model's patch grid is "
                f"{tuple(grid_size)}; the set was made for another teacher."
            )
        top = int(self.targets.max())
        if top >= num_classes or int(self.targets.min()) < 0:
            raise SMIError(
                f"image set has target label {top} but the model has {num_classes} classes; the set was made "
                "for another teacher."
            )
        meta_classes = self.metadata.get("teacher", {}).get("num_classes")
        if meta_classes is not None and int(meta_classes) != num_classes:
            raise SMIError(
                f"image set was made for a teacher with {meta_classes} classes, but the model has {num_classes}."
            )
