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

from smi.sparse_vit import gather_patches


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
    """Per-sample weighted prior loss: the reference definition on whole images.

    The inversion loop uses :func:`patch_priors`, which computes the same value from the active
    patches alone (tested against this function) at a cost that shrinks with the active set.

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


@dataclass(frozen=True)
class PatchNeighbours:
    """Where each active patch's grid neighbours sit in the active list, computed once per active set.

    Relations, as (row, column) offsets on the patch grid: right (0, 1), down (1, 0),
    down-right (1, 1) and up-right (-1, 1). Every pixel pair that straddles a patch boundary has
    one patch of the pair and one of these relations as its anchor, so each pair is counted once.

    Attributes:
        index: (4, B, K) index into the active list of each relation's neighbour (0 where absent).
        valid: (4, B, K) bool, True where the neighbour exists and is active.
    """

    index: torch.Tensor
    valid: torch.Tensor

    OFFSETS = ((0, 1), (1, 0), (1, 1), (-1, 1))

    @classmethod
    def from_positions(cls, positions: torch.Tensor, grid: tuple[int, int]) -> PatchNeighbours:
        """Neighbours of the active patches at row-major grid ``positions`` (B, K)."""
        b, k = positions.shape
        gh, gw = grid
        slot = torch.full((b, gh * gw), -1, dtype=torch.long, device=positions.device)
        slot.scatter_(1, positions, torch.arange(k, device=positions.device).expand(b, k))
        row, col = positions // gw, positions % gw
        indices, valids = [], []
        for dr, dc in cls.OFFSETS:
            r, c = row + dr, col + dc
            inside = (r >= 0) & (r < gh) & (c >= 0) & (c < gw)
            neighbour = slot.gather(1, r.clamp(0, gh - 1) * gw + c.clamp(0, gw - 1))
            valid = inside & (neighbour >= 0)
            indices.append(torch.where(valid, neighbour, 0))
            valids.append(valid)
        return cls(torch.stack(indices), torch.stack(valids))


def _direction_pairs(patches: torch.Tensor, neighbours: PatchNeighbours) -> list[list[torch.Tensor]]:
    """Differences of every active pixel pair, per direction of :func:`_neighbour_differences`.

    Pairs inside a patch come from the patch itself; pairs across a boundary from the slice of
    the neighbouring patch that touches it, zeroed where that neighbour is stopped or absent.
    Work and memory scale with the number of active patches, not with the image.

    Args:
        patches: Active patches (B, K, C, ph, pw).
        neighbours: Their neighbour relations.

    Returns:
        Per direction (right, down, up-right, down-right), the difference tensors.
    """
    right_i, down_i, down_right_i, up_right_i = neighbours.index
    valid = neighbours.valid.to(patches.dtype)
    v_right, v_down = valid[0][..., None, None], valid[1][..., None, None]
    v_down_right, v_up_right = valid[2][..., None], valid[3][..., None]
    right = gather_patches(patches[..., :, 0], right_i)  # their first column (B, K, C, ph)
    down = gather_patches(patches[..., 0, :], down_i)  # their first row (B, K, C, pw)
    corner_dr = gather_patches(patches[..., 0, 0], down_right_i)  # (B, K, C)
    corner_ur = gather_patches(patches[..., -1, 0], up_right_i)
    p = patches
    return [
        # (i, j) - (i, j+1)
        [p[..., :, :-1] - p[..., :, 1:], (p[..., :, -1] - right) * v_right],
        # (i, j) - (i+1, j)
        [p[..., :-1, :] - p[..., 1:, :], (p[..., -1, :] - down) * v_down],
        # (i+1, j) - (i, j+1): inside; across the right edge; across the bottom edge; across the
        # corner, anchored at the lower-left patch of the pair with its up-right neighbour.
        [
            p[..., 1:, :-1] - p[..., :-1, 1:],
            (p[..., 1:, -1] - right[..., :-1]) * v_right,
            (down[..., :-1] - p[..., -1, 1:]) * v_down,
            (p[..., 0, -1] - corner_ur) * v_up_right,
        ],
        # (i, j) - (i+1, j+1): inside; across the right edge; across the bottom edge; the corner.
        [
            p[..., :-1, :-1] - p[..., 1:, 1:],
            (p[..., :-1, -1] - right[..., 1:]) * v_right,
            (p[..., -1, :-1] - down[..., 1:]) * v_down,
            (p[..., -1, -1] - corner_dr) * v_down_right,
        ],
    ]


def patch_priors(
    patches: torch.Tensor,
    neighbours: PatchNeighbours,
    image_shape: tuple[int, int, int],
    weights: PriorWeights,
) -> torch.Tensor:
    """The priors of :func:`image_priors`, computed from the active patches alone (same value).

    The inversion loop optimises only the active patches, so the priors read nothing else:
    pairs inside a patch come from the patch, pairs across a boundary from the touching slice
    of the neighbouring active patch. A sparse iteration's prior cost thus shrinks with the
    active set, which is what lets the wall time follow the FLOPs.

    Args:
        patches: Active patches (B, K, C, ph, pw) in the model's normalised space.
        neighbours: Their neighbour relations (:meth:`PatchNeighbours.from_positions`).
        image_shape: (C, H, W) of the whole image (the L1 TV is a mean over its pairs).
        weights: Prior weights.

    Returns:
        Loss per sample (B,).
    """
    b = patches.shape[0]
    total = patches.new_zeros(b)
    if weights.tv_l2 == 0 and weights.tv_l1 == 0 and weights.l2 == 0:
        return total
    c, h, w = image_shape
    if weights.tv_l2 or weights.tv_l1:
        # Element counts of the full-image difference tensors, so means match image_priors.
        sizes = [c * h * (w - 1), c * (h - 1) * w, c * (h - 1) * (w - 1), c * (h - 1) * (w - 1)]
        for parts, size in zip(_direction_pairs(patches, neighbours), sizes):
            flat = [part.reshape(b, -1) for part in parts]
            if weights.tv_l2:
                # The norm of the concatenation, without copying the parts into one tensor;
                # vector_norm's backward is safe (zero) where a part is all zero.
                norms = torch.stack([part.norm(dim=1) for part in flat], dim=1)
                total = total + weights.tv_l2 * norms.norm(dim=1)
            if weights.tv_l1:
                total = total + weights.tv_l1 * sum(part.abs().sum(dim=1) for part in flat) / size / 4
    if weights.l2:
        total = total + weights.l2 * patches.reshape(b, -1).norm(dim=1)
    return total


def batch_total_variation(x: torch.Tensor) -> torch.Tensor:
    """The official SMI / PSAQ-ViT L2 total variation: one scalar for the whole batch.

    ``sum over the 4 directions of ||D(x)||``, each norm unsquared and taken over the whole
    batch tensor at once (``get_image_prior_losses`` in Egg-Hu/SMI and zkkli/PSAQ-ViT). The
    per-image share therefore shrinks with the batch only as ``1/sqrt(B)``, not ``1/B`` as a
    per-sample mean would: at equal weight this prior is ``sqrt(B)`` times stronger per image
    than :func:`image_priors` averaged over the batch (5.7x at B = 32).

    Args:
        x: Images (B, C, H, W), every pixel counted (stopped ones too, as the official code).

    Returns:
        A scalar.
    """
    d1, d2, d3, d4 = _official_differences(x)
    return d1.norm() + d2.norm() + d3.norm() + d4.norm()


def _official_differences(x: torch.Tensor) -> list[torch.Tensor]:
    """The four unmasked neighbour differences, in the official code's order."""
    return [
        x[:, :, :, :-1] - x[:, :, :, 1:],
        x[:, :, :-1, :] - x[:, :, 1:, :],
        x[:, :, 1:, :-1] - x[:, :, :-1, 1:],
        x[:, :, :-1, :-1] - x[:, :, 1:, 1:],
    ]


def batch_priors(x: torch.Tensor, weights: PriorWeights) -> torch.Tensor:
    """The official code's prior terms on whole images, one scalar for the batch.

    TV-L2 as :func:`batch_total_variation`; TV-L1 as the official ``loss_var_l1`` (the sum over
    directions of the mean of ``|D(x)| / 255``, times 255); L2 as ``torch.norm(x)`` over the
    batch. Terms of weight zero are skipped (the official code adds them multiplied by zero).

    Args:
        x: Images (B, C, H, W) in the model's normalised space.
        weights: Prior weights.

    Returns:
        A scalar.
    """
    total = x.new_zeros(())
    if weights.tv_l2 or weights.tv_l1:
        d1, d2, d3, d4 = diffs = _official_differences(x)
        if weights.tv_l2:
            total = total + weights.tv_l2 * (d1.norm() + d2.norm() + d3.norm() + d4.norm())
        if weights.tv_l1:
            total = total + weights.tv_l1 * (sum((d.abs() / 255.0).mean() for d in diffs) * 255.0)
    if weights.l2:
        total = total + weights.l2 * x.norm()
    return total
