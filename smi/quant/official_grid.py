"""The quantization arithmetic of the official PSAQ-ViT code, reproduced operation for operation.

PSAQ-ViT (Li et al., ECCV 2022; its ``quant_utils.py``, reused unchanged by Sparse Model
Inversion's PTQ) differs from the suite's own arithmetic (:mod:`smi.quant.fake_quant`) in
small ways that change results at 4 bits:

- weights: per output channel, **full** signed grid ``[-2^(b-1), 2^(b-1) - 1]`` with
  ``scale = max|w| / ((2^b - 1) / 2)`` (``max|w| / 7.5`` at 4 bits). The positive extreme
  ``max|w|`` maps to ``7.5``, rounds (half to even) to 8 and is clipped to 7: a quirk that
  costs the largest positive weight of each channel half a step;
- activations: per tensor, unsigned grid ``[0, 2^b - 1]``, ``scale = (max - min) / (2^b - 1)``,
  ``zero_point = clamp(-round(min / scale), 0, 2^b - 1)``. The range is **not** widened to
  contain zero: a range that lies above zero (for example [2, 3]) gets zero point 0 and
  represents [0, max - min], so values above ``max - min`` are clipped (a quirk);
- the map is ``(clamp(round(x / scale + zero_point), qmin, qmax) - zero_point) * scale``, with a
  true division and the zero point added **before** rounding (half-to-even ties then depend on
  the zero point's parity); scales are clamped to float32's machine epsilon.

Gradients pass straight through, unclipped, as in the copy of these functions that SMI ships.
"""

from __future__ import annotations

import torch

#: The official code clamps every scale to float32's machine epsilon.
OFFICIAL_MIN_SCALE = float(torch.finfo(torch.float32).eps)


def official_weight_grid(bits: int) -> tuple[int, int]:
    """The official weight grid ``(qmin, qmax) = (-2^(b-1), 2^(b-1) - 1)``."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def official_weight_scale(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel scale ``max(-min, max) / ((qmax - qmin) / 2)`` of a weight, shape (out,)."""
    qmin, qmax = official_weight_grid(bits)
    rows = weight.detach().reshape(weight.shape[0], -1)
    amax = torch.max(-rows.min(dim=1).values, rows.max(dim=1).values)
    return (amax / (float(qmax - qmin) / 2)).clamp(min=OFFICIAL_MIN_SCALE)


def official_quantize_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Fake-quantize a linear (out, in) or convolution (out, in, kh, kw) weight the official way."""
    qmin, qmax = official_weight_grid(bits)
    scale = official_weight_scale(weight, bits).view((-1,) + (1,) * (weight.ndim - 1))
    return _StraightThrough.apply(weight, torch.round(weight.detach() / scale).clamp(qmin, qmax) * scale)


def official_act_qparams(lo: torch.Tensor, hi: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point of an observed range ``[lo, hi]`` (not widened to contain zero).

    Returns:
        ``(scale, zero_point)`` as float tensors; the zero point holds an integer in [0, 2^b - 1].
    """
    qmax = 2**bits - 1
    scale = ((hi.float() - lo.float()) / float(qmax)).clamp(min=OFFICIAL_MIN_SCALE)
    zero_point = (0 - torch.round(lo.float() / scale)).clamp(0, qmax)
    return scale, zero_point


def official_fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bits: int) -> torch.Tensor:
    """The official asymmetric activation map (see the module docstring), straight-through gradient."""
    scale, zero_point = scale.to(x.dtype), zero_point.to(x.dtype)
    # One fresh buffer, each step in place: the same operations as the formula, without temporaries.
    value = (x.detach() / scale).add_(zero_point).round_().clamp_(0, 2**bits - 1).sub_(zero_point).mul_(scale)
    if torch.is_grad_enabled() and x.requires_grad:
        return _StraightThrough.apply(x, value)
    return value


class _StraightThrough(torch.autograd.Function):
    """Returns ``value`` (computed without gradient) and passes the gradient to ``x`` unchanged."""

    @staticmethod
    def forward(ctx, x, value):  # type: ignore[override]
        return value

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad, None
