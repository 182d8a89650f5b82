"""Jitter and horizontal flip for (sparse) model inversion.

DeepInversion (Yin et al., CVPR 2020) rolls the image by a random offset and flips it at every
iteration. Two variants, one per inversion protocol (docs/protocols.md):

- ``suite``: :class:`PatchJitter` / :class:`JitterSampler`. With stopped patches a sub-patch
  roll would mix a stopped patch's pixels into an active token, so the roll is applied in whole
  patches: every token still holds exactly one source patch, and only its *displayed* grid
  position (hence its position embedding) changes. A flip mirrors each patch's content and its
  column. Jitter amplitude follows the paper's "up to 1/8 of the side", rounded to whole patches
  (at least one).
- ``official``: :class:`PixelJitter` / :class:`PixelJitterSampler`, as the official SMI code
  (Egg-Hu/SMI, ``jitter_and_flip`` and ``jitter_and_flip_index``) and PSAQ-ViT
  (zkkli/PSAQ-ViT, ``generate_data.py``) do it: the whole image rolls by whole *pixels*, and
  each active token is re-assigned to the grid position its patch is displayed nearest to
  (:func:`official_patch_shift`), so a token may carry pixels of a stopped neighbour.

The random draws read CPU tensors with ``tolist()``, which never synchronises an accelerator.
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
    def for_image(cls, image_size: int, patch_size: int, fraction: float, flip: bool) -> JitterSampler:
        """Jitter of up to ``fraction`` of the image side, rounded to whole patches (>= 1 if > 0)."""
        if fraction <= 0:
            return cls(0, flip)
        return cls(max(1, round(image_size * fraction / patch_size)), flip)

    def sample(self, generator: torch.Generator) -> PatchJitter:
        """Draw one augmentation (the same for the whole batch, as in DeepInversion)."""
        dy = dx = 0
        if self.max_shift > 0:
            dy, dx = torch.randint(-self.max_shift, self.max_shift + 1, (2,), generator=generator).tolist()
        # tolist() on a CPU draw: the same value as comparing the tensor, without dispatching
        # a scalar read (the loop is checked for host-synchronising operations).
        flip = bool(self.flip and torch.rand((), generator=generator).tolist() < 0.5)
        return PatchJitter(dy, dx, flip)


def official_patch_shift(offset: int, patch: int) -> int:
    """Grid shift the official token-index remap gives a roll of ``offset`` pixels.

    The official code splits the offset with Python's floor division and modulo and adds one
    more patch when the remainder is at least half a patch: the nearest patch, ties rounded
    up (an offset of -8 px with 16 px patches gives 0, +8 px gives +1).
    """
    whole, rest = divmod(offset, patch)
    return whole + (1 if rest / patch >= 0.5 else 0)


@dataclass(frozen=True)
class PixelJitter:
    """One sampled official augmentation: a roll by (dy, dx) pixels and an optional flip."""

    dy: int = 0
    dx: int = 0
    flip: bool = False

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """The augmented images (B, C, H, W): roll (wrapping around), then flip."""
        out = torch.roll(images, shifts=(self.dy, self.dx), dims=(2, 3))
        return out.flip(3) if self.flip else out

    def token_jitter(self, patch_size: tuple[int, int]) -> PatchJitter:
        """The whole-patch remap of the token indices (official ``jitter_and_flip_index``)."""
        ph, pw = patch_size
        return PatchJitter(official_patch_shift(self.dy, ph), official_patch_shift(self.dx, pw), self.flip)


@dataclass(frozen=True)
class PixelJitterSampler:
    """Draws official pixel jitters: ``dy`` in [-max_dy, max_dy], ``dx`` in [-max_dx, max_dx].

    Attributes:
        max_dy: Largest vertical roll in pixels.
        max_dx: Largest horizontal roll in pixels.
        flip: Whether the drawn flip is applied (it is drawn either way, as in the official code).
        diagonal: One offset for both axes (PSAQ-ViT rolls by ``(off, off)``).
    """

    max_dy: int
    max_dx: int
    flip: bool = True
    diagonal: bool = False

    @classmethod
    def official(cls, height: int, width: int, fraction: float, flip: bool) -> PixelJitterSampler:
        """SMI's official limits: ``int(side * fraction)`` pixels (28 px at 224 px and 1/8)."""
        return cls(int(height * fraction), int(width * fraction), flip)

    def sample(self, generator: torch.Generator) -> PixelJitter:
        """Draw one augmentation (the same for the whole batch); flip with probability 1/2."""
        dy = torch.randint(-self.max_dy, self.max_dy + 1, (1,), generator=generator).tolist()[0]
        dx = (
            dy if self.diagonal else torch.randint(-self.max_dx, self.max_dx + 1, (1,), generator=generator).tolist()[0]
        )
        flip = torch.rand((), generator=generator).tolist() > 0.5
        return PixelJitter(dy, dx, bool(flip and self.flip))
