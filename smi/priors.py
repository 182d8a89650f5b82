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
    """Per-sample weighted prior loss: the reference definition on whole images.

    The inversion loop uses :func:`patch_priors`, which computes the same value from the kept
    patches (tested against this function) at a cost that shrinks with the active set.

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


def _boundary_pairs(x: torch.Tensor, m: torch.Tensor, p: tuple[int, int]) -> list[list[torch.Tensor]]:
    """Masked differences of the pixel pairs that straddle a patch boundary, per direction.

    Directions and pair conventions are those of :func:`_neighbour_differences`. Pairs inside a
    patch are left out: :func:`patch_priors` takes them from the kept patches. Only the two
    pixel columns and the two pixel rows on either side of each patch boundary are read, each
    band with one ``index_select`` (one full-size gradient buffer in backward, not one per slice).

    Returns:
        Per direction, the masked differences (as a list of tensors).
    """
    ph, pw = p
    h, w = x.shape[-2:]
    cols = torch.arange(pw, w, pw, device=x.device)  # first column of each patch but the first
    rows = torch.arange(ph, h, ph, device=x.device)
    # Columns c*pw-1 and c*pw side by side: band[..., 2k] is left, band[..., 2k+1] right of boundary k.
    col_index = torch.stack([cols - 1, cols], dim=1).flatten()
    row_index = torch.stack([rows - 1, rows], dim=1).flatten()
    xc, mc = x.index_select(3, col_index), m.index_select(3, col_index)
    xr, mr = x.index_select(2, row_index), m.index_select(2, row_index)
    left, right, m_left, m_right = xc[..., 0::2], xc[..., 1::2], mc[..., 0::2], mc[..., 1::2]
    top, bottom, m_top, m_bottom = xr[..., 0::2, :], xr[..., 1::2, :], mr[..., 0::2, :], mr[..., 1::2, :]
    not_vertical = torch.ones(w - 1, dtype=x.dtype, device=x.device)
    not_vertical[pw - 1 :: pw] = 0  # these columns' right neighbours are counted with the column band

    def masked(a: torch.Tensor, b: torch.Tensor, ma: torch.Tensor, mb: torch.Tensor) -> torch.Tensor:
        return (a - b) * (ma * mb)

    return [
        # right: (i, j) - (i, j+1), across vertical boundaries
        [masked(left, right, m_left, m_right)],
        # down: (i, j) - (i+1, j), across horizontal boundaries
        [masked(top, bottom, m_top, m_bottom)],
        # (i+1, j) - (i, j+1): across a vertical boundary, or a horizontal one (other columns)
        [
            masked(left[..., 1:, :], right[..., :-1, :], m_left[..., 1:, :], m_right[..., :-1, :]),
            masked(bottom[..., :-1], top[..., 1:], m_bottom[..., :-1], m_top[..., 1:]) * not_vertical,
        ],
        # (i, j) - (i+1, j+1): across a vertical boundary, or a horizontal one (other columns)
        [
            masked(left[..., :-1, :], right[..., 1:, :], m_left[..., :-1, :], m_right[..., 1:, :]),
            masked(top[..., :-1], bottom[..., 1:], m_top[..., :-1], m_bottom[..., 1:]) * not_vertical,
        ],
    ]


def _inner_pairs(patches: torch.Tensor) -> list[torch.Tensor]:
    """Differences of the pixel pairs inside each kept patch (B, K, C, ph, pw), per direction."""
    return [
        patches[..., :, :-1] - patches[..., :, 1:],
        patches[..., :-1, :] - patches[..., 1:, :],
        patches[..., 1:, :-1] - patches[..., :-1, 1:],
        patches[..., :-1, :-1] - patches[..., 1:, 1:],
    ]


def patch_priors(
    x: torch.Tensor,
    kept_patches: torch.Tensor,
    pixel_mask: torch.Tensor,
    patch_size: tuple[int, int],
    weights: PriorWeights,
) -> torch.Tensor:
    """The priors of :func:`image_priors`, computed from the kept patches (same value).

    Pairs inside a kept patch come from the gathered patches, so that work scales with the
    number of kept patches; only the pairs across patch boundaries are read from the image.
    This keeps a sparse iteration's fixed cost small, which is what lets the wall time follow
    the FLOPs.

    Args:
        x: Images (B, C, H, W) in the model's normalised space.
        kept_patches: The kept patches of ``x`` (B, K, C, ph, pw), gathered at source positions.
        pixel_mask: Bool (B, 1, H, W), True on active pixels.
        patch_size: (ph, pw).
        weights: Prior weights.

    Returns:
        Loss per sample (B,).
    """
    total = x.new_zeros(x.shape[0])
    if weights.tv_l2 == 0 and weights.tv_l1 == 0 and weights.l2 == 0:
        return total
    b, c, h, w = x.shape
    if weights.tv_l2 or weights.tv_l1:
        m = pixel_mask.to(x.dtype)
        # Element counts of the full-image difference tensors, so means match image_priors.
        sizes = [c * h * (w - 1), c * (h - 1) * w, c * (h - 1) * (w - 1), c * (h - 1) * (w - 1)]
        inner = _inner_pairs(kept_patches)
        cross = _boundary_pairs(x, m, patch_size)
        for inside, across, size in zip(inner, cross, sizes):
            parts = [inside.reshape(b, -1)] + [d.reshape(b, -1) for d in across]
            if weights.tv_l2:
                # The norm of the concatenation, without copying the parts into one tensor;
                # vector_norm's backward is safe (zero) where a part is all zero.
                norms = torch.stack([part.norm(dim=1) for part in parts], dim=1)
                total = total + weights.tv_l2 * norms.norm(dim=1)
            if weights.tv_l1:
                total = total + weights.tv_l1 * sum(part.abs().sum(dim=1) for part in parts) / size / 4
    if weights.l2:
        total = total + weights.l2 * kept_patches.reshape(b, -1).norm(dim=1)
    return total
