"""Uniform fake quantization with a straight-through gradient.

The data-free ViT quantization literature (PSAQ-ViT, Li et al., ECCV 2022, the framework
Sparse Model Inversion reuses) quantizes weights per output channel with a symmetric min/max
range and activations per tensor with an asymmetric range calibrated on a few images. This
module holds the ``suite`` protocol's arithmetic only: integer grids, scale / zero-point
computation and the fake-quantize map (the official code's grids differ; see
:mod:`smi.quant.official_grid`).

The map follows torch's ``fake_quantize_per_{tensor,channel}_affine`` exactly
(``(clamp(round(x * (1 / s)) + z, qmin, qmax) - z) * s`` with round-half-to-even), so a
result can be checked against torch bit for bit, but is written with plain tensor ops: it runs
in any dtype and on any device, broadcasts a scale over any axis, and passes gradients
straight through the rounding (identity inside the range), which torch's kernels tie to
float32 tensors and fixed layouts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from smi.errors import SMIError

MIN_BITS = 2
MAX_BITS = 16
# Smallest scale used when a range collapses to a point (an all-zero tensor); keeps 1/s finite.
MIN_SCALE = 1e-8


def check_bits(bits: int, what: str) -> int:
    """Return ``bits`` as int, or raise :class:`SMIError` if it is outside [2, 16]."""
    if isinstance(bits, bool) or int(bits) != bits or not MIN_BITS <= int(bits) <= MAX_BITS:
        raise SMIError(
            f"{what} = {bits!r} is not supported; use an integer bit-width from {MIN_BITS} to {MAX_BITS} "
            "(for example 8, 6 or 4)."
        )
    return int(bits)


@dataclass(frozen=True)
class IntGrid:
    """An integer grid [qmin, qmax] that quantized values are clamped to."""

    qmin: int
    qmax: int

    @classmethod
    def symmetric(cls, bits: int) -> IntGrid:
        """Narrow signed grid [-(2^(b-1) - 1), 2^(b-1) - 1]: zero point 0, the same step both ways."""
        top = 2 ** (bits - 1) - 1
        return cls(-top, top)

    @classmethod
    def asymmetric(cls, bits: int) -> IntGrid:
        """Unsigned grid [0, 2^b - 1] for per-tensor activations with a zero point."""
        return cls(0, 2**bits - 1)

    @property
    def levels(self) -> int:
        """Number of steps between the ends of the grid."""
        return self.qmax - self.qmin


def fake_quantize(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, grid: IntGrid, inplace: bool = False
) -> torch.Tensor:
    """Quantize ``x`` onto ``grid`` and back, with a straight-through gradient.

    Args:
        x: Any tensor.
        scale: Step size, broadcastable to ``x`` (a scalar for per-tensor, shape (C, 1, ...)
            for per-channel along dim 0).
        zero_point: Integer-valued zero point, broadcastable like ``scale``.
        grid: The integer grid.
        inplace: Write the result into ``x`` (a temporary that nothing else reads) instead of a
            new tensor; ignored when a gradient is needed.

    Returns:
        The fake-quantized tensor (same dtype and shape as ``x``). Its gradient with respect
        to ``x`` is the straight-through estimator: the identity inside the range, zero where
        values are clipped, so the function can sit in a network that is trained as well as
        one evaluated under ``torch.no_grad``. When no gradient is needed (no grad mode, or
        ``x`` does not require one) the same operations run in place on one buffer and the
        clipping mask is never built: the result is bit-identical, only cheaper.
    """
    scale, zero_point = scale.to(x.dtype), zero_point.to(x.dtype)
    if torch.is_grad_enabled() and x.requires_grad:
        return _FakeQuantizeSTE.apply(x, scale, zero_point, grid.qmin, grid.qmax)
    # The autograd function's operations in the same order, on one buffer: no temporaries,
    # whose allocation (fresh pages) costs more on CPU than the arithmetic itself.
    q = x.mul_(1.0 / scale) if inplace else x * (1.0 / scale)
    return q.round_().add_(zero_point).clamp_(grid.qmin, grid.qmax).sub_(zero_point).mul_(scale)


class _FakeQuantizeSTE(torch.autograd.Function):
    """Fake quantization; the backward pass lets the gradient through where nothing was clipped."""

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax):  # type: ignore[override]
        inv_scale = 1.0 / scale  # torch's kernels multiply by the reciprocal; so do we, to round alike
        q = torch.round(x * inv_scale).add_(zero_point)
        ctx.save_for_backward((q >= qmin) & (q <= qmax))
        return q.clamp_(qmin, qmax).sub_(zero_point).mul_(scale)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


def symmetric_qparams(amax: torch.Tensor, grid: IntGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and (zero) zero point of a symmetric range [-amax, amax].

    Args:
        amax: Largest absolute value, any shape (one entry per channel for per-channel).
        grid: A symmetric grid.

    Returns:
        ``(scale, zero_point)`` with the shape of ``amax``.
    """
    scale = torch.clamp(amax.float() / grid.qmax, min=MIN_SCALE)
    return scale, torch.zeros_like(scale)


def asymmetric_qparams(lo: torch.Tensor, hi: torch.Tensor, grid: IntGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and integer zero point of an asymmetric range [lo, hi].

    The range is widened to contain 0 so that zero (padding, ReLU/GELU floors) is exactly
    representable, as in every affine quantizer.

    Args:
        lo: Lower end of the range.
        hi: Upper end of the range.
        grid: An unsigned grid.

    Returns:
        ``(scale, zero_point)`` as float tensors (the zero point holds an integer value).
    """
    lo = torch.clamp(lo.float(), max=0.0)
    hi = torch.clamp(hi.float(), min=0.0)
    scale = torch.clamp((hi - lo) / grid.levels, min=MIN_SCALE)
    zero_point = torch.clamp(grid.qmin - torch.round(lo / scale), grid.qmin, grid.qmax)
    return scale, zero_point


def quantize_weight_per_channel(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric min/max fake quantization of a weight, one scale per output channel (dim 0).

    Args:
        weight: Weight of a linear (out, in) or convolution (out, in, kh, kw) layer.
        bits: Weight bit-width.

    Returns:
        The fake-quantized weight (straight-through gradient).
    """
    grid = IntGrid.symmetric(bits)
    amax = weight.detach().abs().flatten(1).amax(dim=1)
    scale, zero_point = symmetric_qparams(amax, grid)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    return fake_quantize(weight, scale.view(shape), zero_point.view(shape), grid)
