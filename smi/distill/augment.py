"""Augmentations of synthetic images that keep sparse images sparse.

Every augmented batch is labelled by the teacher's logits on the augmented input (see
:mod:`smi.distill.train`), so no augmentation invents a label.

A sparse image (Sparse Model Inversion, Hu et al., ICML 2024) is its kept patches; anything
that moved pixels across patch borders would blend kept and stopped (black) content. So the
image and its keep mask move together, in whole patches only:

- a random roll by (dy, dx) patches (wrapping around, as DeepInversion's jitter), and
- a random horizontal flip (mirrors each patch and the column order of the grid).

Every kept patch stays one kept token with the same content; only its grid position (hence
its position embedding) changes. Each image draws its own roll and flip from a seeded
generator.

:class:`PatchErase` is Random Erasing (Zhong et al., AAAI 2020) in whole patches: a random
fraction of each image's *kept* patches is painted black and stays a kept token, so the student
also learns the teacher's response to blank regions, which inverted images never contain.
Stopped patches stay stopped and black.
"""

from __future__ import annotations

import torch

from smi.errors import SMIError
from smi.sparse_vit import mask_to_pixels


class PatchAugment:
    """Per-image whole-patch roll and horizontal flip of images and keep masks.

    Args:
        patch_size: (ph, pw) of the model's patches.
        max_shift: Largest roll in patches along each axis (0: no roll).
        flip: Draw random horizontal flips.
    """

    def __init__(self, patch_size: tuple[int, int], max_shift: int, flip: bool) -> None:
        self.patch_size = tuple(patch_size)
        self.max_shift = int(max_shift)
        self.flip = flip

    @classmethod
    def from_name(cls, name: str, patch_size: tuple[int, int], max_shift: int) -> PatchAugment:
        """``patch_shift_flip``, ``flip`` or ``none``."""
        if name == "patch_shift_flip":
            return cls(patch_size, max_shift, True)
        if name == "flip":
            return cls(patch_size, 0, True)
        if name == "none":
            return cls(patch_size, 0, False)
        raise SMIError(f"augment {name!r} is unknown; choose patch_shift_flip, flip or none.")

    @property
    def active(self) -> bool:
        return self.max_shift > 0 or self.flip

    def __call__(
        self, images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch.

        Args:
            images: (B, C, H, W) images (pixel or normalised space).
            masks: (B, gh, gw) boolean keep masks.
            generator: Seeded CPU generator for the random draws.

        Returns:
            The augmented images and masks (new tensors).
        """
        b = images.shape[0]
        if not self.active:
            return images, masks
        shifts = torch.randint(-self.max_shift, self.max_shift + 1, (b, 2), generator=generator).tolist()
        flips = (torch.rand(b, generator=generator) < 0.5).tolist() if self.flip else [False] * b
        ph, pw = self.patch_size
        out_images, out_masks = [], []
        for i in range(b):
            dy, dx = shifts[i]
            image = torch.roll(images[i], shifts=(dy * ph, dx * pw), dims=(1, 2))
            mask = torch.roll(masks[i], shifts=(dy, dx), dims=(0, 1))
            if flips[i]:
                image, mask = image.flip(2), mask.flip(1)
            out_images.append(image)
            out_masks.append(mask)
        return torch.stack(out_images), torch.stack(out_masks)


class PatchErase:
    """Per-image random erasing of whole kept patches to black (they stay kept tokens).

    Each image draws a fraction ``u ~ U(0, max_fraction)`` and erases each of its kept patches
    independently with probability ``u``. Masks are unchanged: an erased patch is a black *kept*
    token, a stopped patch stays stopped.

    Args:
        patch_size: (ph, pw) of the model's patches.
        max_fraction: Largest expected fraction of kept patches erased, in [0, 1) (0: off).
    """

    def __init__(self, patch_size: tuple[int, int], max_fraction: float) -> None:
        if not 0.0 <= float(max_fraction) < 1.0:
            raise SMIError(f"erase fraction {max_fraction} must lie in [0, 1) (0 disables erasing).")
        self.patch_size = tuple(patch_size)
        self.max_fraction = float(max_fraction)

    @property
    def active(self) -> bool:
        return self.max_fraction > 0

    def __call__(self, images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Erase a batch.

        Args:
            images: (B, C, H, W) images in pixel space (black is 0).
            masks: (B, gh, gw) boolean keep masks.
            generator: Seeded CPU generator for the random draws.

        Returns:
            The images with the erased patches set to 0 (a new tensor; masks need no change).
        """
        if not self.active:
            return images
        b, gh, gw = masks.shape
        fraction = self.max_fraction * torch.rand(b, 1, 1, generator=generator)
        erased = (torch.rand(b, gh, gw, generator=generator) < fraction) & masks.cpu()
        return images.masked_fill(mask_to_pixels(erased, self.patch_size).to(images.device), 0.0)
