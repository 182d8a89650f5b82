"""Whole-patch jitter and horizontal flip for (sparse) model inversion.

DeepInversion (Yin et al., CVPR 2020) rolls the image by a random offset and flips it at every
iteration. With stopped patches a sub-patch roll would mix a stopped patch's pixels into an
active token, so here the roll is applied in whole patches: every token still holds exactly one
source patch, and only its *displayed* grid position (hence its position embedding) changes.
A flip mirrors each patch's content and its column. Jitter amplitude follows the paper's
"up to 1/8 of the side", rounded to whole patches (at least one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PatchJitter:
    """One sampled augmentation: a roll by (dy, dx) patches and an optional horizontal flip."""

    dy: int = 0
    dx: int = 0
    flip: bool = False

    def positions(self, source: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Displayed grid positions of patches that sit at ``source`` positions in the image.

        Args:
            source: Row-major source indices (B, K).
            grid: Patch grid (gh, gw).

        Returns:
            Row-major displayed indices (B, K).
        """
        gh, gw = grid
        row = torch.remainder(source // gw + self.dy, gh)
        col = torch.remainder(source % gw + self.dx, gw)
        if self.flip:
            col = gw - 1 - col
        return row * gw + col

    def patch_content(self, patches: torch.Tensor) -> torch.Tensor:
        """Apply the in-patch part of the augmentation to (B, K, C, ph, pw) patches."""
        return patches.flip(-1) if self.flip else patches

    def apply_to_image(self, images: torch.Tensor, patch_size: tuple[int, int]) -> torch.Tensor:
        """The same augmentation on whole images (B, C, H, W); used to check equivalence."""
        out = torch.roll(images, shifts=(self.dy * patch_size[0], self.dx * patch_size[1]), dims=(2, 3))
        return out.flip(3) if self.flip else out


@dataclass(frozen=True)
class JitterSampler:
    """Draws a :class:`PatchJitter` per iteration from a seeded generator.

    Attributes:
        max_shift: Largest roll in patches along each axis (0 disables jitter).
        flip: Whether random horizontal flips are drawn.
    """

    max_shift: int
    flip: bool = True

    @classmethod
    def for_image(cls, image_size: int, patch_size: int, fraction: float, flip: bool) -> "JitterSampler":
        """Jitter of up to ``fraction`` of the image side, rounded to whole patches (>= 1 if > 0)."""
        if fraction <= 0:
            return cls(0, flip)
        return cls(max(1, round(image_size * fraction / patch_size)), flip)

    def sample(self, generator: torch.Generator) -> PatchJitter:
        """Draw one augmentation (the same for the whole batch, as in DeepInversion)."""
        dy = dx = 0
        if self.max_shift > 0:
            dy, dx = torch.randint(-self.max_shift, self.max_shift + 1, (2,), generator=generator).tolist()
        flip = bool(self.flip and torch.rand((), generator=generator) < 0.5)
        return PatchJitter(dy, dx, flip)
