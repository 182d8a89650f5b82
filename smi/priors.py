"""Image priors of model inversion, restricted to active patches.

Total variation and L2 norm priors as in DeepInversion (Yin et al., CVPR 2020): the L2 TV is
the sum of the L2 norms of the differences between neighbouring pixels in four directions
(horizontal, vertical and both diagonals), the L1 TV their mean absolute value, the L2 prior the
image norm; all per sample. Pixel pairs count only where both pixels belong to active patches:
a stopped patch's content is frozen and never shown to the model, so it must neither receive
a gradient nor pull its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PriorWeights:
    """Weights of the image priors (paper default: TV-L2 1e-4, others 0)."""

    tv_l2: float = 1e-4
    tv_l1: float = 0.0
    l2: float = 0.0


def _neighbour_differences(x: torch.Tensor, m: torch.Tensor) -> list[torch.Tensor]:
    """Masked differences to the right, down, down-right and up-right neighbours."""
    pairs = [
        (x[:, :, :, :-1], x[:, :, :, 1:], m[:, :, :, :-1] * m[:, :, :, 1:]),
        (x[:, :, :-1, :], x[:, :, 1:, :], m[:, :, :-1, :] * m[:, :, 1:, :]),
        (x[:, :, 1:, :-1], x[:, :, :-1, 1:], m[:, :, 1:, :-1] * m[:, :, :-1, 1:]),
        (x[:, :, :-1, :-1], x[:, :, 1:, 1:], m[:, :, :-1, :-1] * m[:, :, 1:, 1:]),
    ]
    return [(a - b) * mask for a, b, mask in pairs]


def image_priors(x: torch.Tensor, pixel_mask: torch.Tensor | None, weights: PriorWeights) -> torch.Tensor:
    """Per-sample weighted prior loss.

    Args:
        x: Images (B, C, H, W) in the model's normalised space.
        pixel_mask: Bool (B, 1, H, W), True on active pixels; ``None`` means all active.
        weights: Prior weights.

    Returns:
        Loss per sample (B,).
    """
    total = x.new_zeros(x.shape[0])
    if weights.tv_l2 == 0 and weights.tv_l1 == 0 and weights.l2 == 0:
        return total
    m = x.new_ones(x.shape[0], 1, *x.shape[2:]) if pixel_mask is None else pixel_mask.to(x.dtype)
    if weights.tv_l2 or weights.tv_l1:
        diffs = _neighbour_differences(x, m)
        if weights.tv_l2:
            total = total + weights.tv_l2 * sum(d.flatten(1).norm(dim=1) for d in diffs)
        if weights.tv_l1:
            total = total + weights.tv_l1 * sum(d.abs().flatten(1).mean(dim=1) for d in diffs) / 4
    if weights.l2:
        total = total + weights.l2 * (x * m).flatten(1).norm(dim=1)
    return total
