"""Quantizing replacements of timm ViT modules (the ``suite`` protocol, after PSAQ-ViT, Li et al., ECCV 2022).

- :class:`ActQuantizer`: a per-tensor asymmetric activation quantizer with three modes:
  ``off`` (identity), ``observe`` (identity while a :class:`RangeObserver` records the values)
  and ``quantize`` (fake quantization with the calibrated scale and zero point).
- :class:`QuantLinear`: an ``nn.Linear`` with per-output-channel symmetric min/max weight
  quantization and activation quantizers on its input and output.
- :class:`QuantAttention`: timm's ``Attention`` with the two matmuls written out, so their
  inputs (q, k, softmax probabilities, v) and the attention scores are quantized. LayerNorm,
  softmax and GELU stay in floating point, as in PSAQ-ViT's fake-quantized evaluation;
- :class:`OfficialActQuantizer`: PSAQ-ViT's own ``QuantAct`` arithmetic, for :mod:`smi.quant.official`.

These modules are swapped into a deep copy of the model (see :mod:`smi.quant.model`); timm's
classes and methods are never modified.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import Attention
from torch import nn

from smi.errors import SMIError
from smi.quant.fake_quant import IntGrid, asymmetric_qparams, fake_quantize, quantize_weight_per_channel
from smi.quant.observers import OfficialRangeObserver, RangeObserver, RangeQuantizer
from smi.quant.official_grid import official_act_qparams, official_fake_quantize

Mode = Literal["off", "observe", "quantize"]


class ActQuantizer(nn.Module):
    """Per-tensor asymmetric fake quantization of an activation, calibrated by observation.

    Args:
        bits: Activation bit-width.
        estimator: Range estimator name (see :mod:`smi.quant.observers`).
        percentile: Percentile of the ``percentile`` estimator.
    """

    def __init__(self, bits: int, estimator: str = "minmax", percentile: float = 99.99) -> None:
        super().__init__()
        self.grid = IntGrid.asymmetric(bits)
        self.bits = bits
        self.observer = RangeObserver(estimator, percentile)
        self.mode: Mode = "off"
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("zero_point", torch.zeros(()))

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """Observe, fake-quantize or pass ``x`` depending on the mode.

        Args:
            x: The activation.
            inplace: ``x`` is a temporary that nothing else reads: quantize it in place (without
                a gradient only; the values are the same either way).
        """
        if self.mode == "observe":
            self.observer.observe(x)
            return x
        if self.mode == "quantize":
            return fake_quantize(x, self.scale, self.zero_point, self.grid, inplace)
        return x

    def finalize(self) -> None:
        """Turn the observed statistics into the scale and zero point."""
        lo, hi = self.observer.range(self.grid)
        scale, zero_point = asymmetric_qparams(lo, hi, self.grid)
        self.scale.copy_(scale)
        self.zero_point.copy_(zero_point)

    def quantization_range(self) -> tuple[float, float]:
        """The calibrated range [lo, hi] the quantizer represents; values outside are clipped."""
        scale, zero_point = float(self.scale), float(self.zero_point)
        return (self.grid.qmin - zero_point) * scale, (self.grid.qmax - zero_point) * scale

    def extra_repr(self) -> str:
        return f"bits={self.bits}, estimator={self.observer.estimator}, mode={self.mode}"


class OfficialActQuantizer(ActQuantizer):
    """PSAQ-ViT's ``QuantAct``: per-tensor asymmetric, with the official arithmetic and running range.

    See :mod:`smi.quant.official_grid` for how it differs from :class:`ActQuantizer` (no widening
    of the range to contain zero, zero point added before rounding, true division).
    """

    def __init__(self, bits: int, estimator: str = "minmax", percentile: float = 99.99) -> None:
        super().__init__(bits, estimator, percentile)
        self.observer = OfficialRangeObserver(estimator, percentile)

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """As :meth:`ActQuantizer.forward`; the official map always writes a new tensor."""
        if self.mode == "observe":
            self.observer.observe(x)
            return x
        if self.mode == "quantize":
            return official_fake_quantize(x, self.scale, self.zero_point, self.bits)
        return x

    def finalize(self) -> None:
        """Turn the observed statistics into the official scale and zero point."""
        arithmetic = RangeQuantizer(
            qparams=lambda lo, hi: official_act_qparams(lo, hi, self.bits),
            quantize=lambda values, scale, zero_point: official_fake_quantize(values, scale, zero_point, self.bits),
        )
        lo, hi = self.observer.range(self.grid, arithmetic)
        scale, zero_point = official_act_qparams(lo, hi, self.bits)
        self.scale.copy_(scale)
        self.zero_point.copy_(zero_point)

    def quantization_range(self) -> tuple[float, float]:
        """The interval the quantizer represents (may exclude zero; see the module docstring)."""
        scale, zero_point = float(self.scale), float(self.zero_point)
        return (0 - zero_point) * scale, (self.grid.qmax - zero_point) * scale


class QuantLinear(nn.Module):
    """A linear layer with quantized weights, input and output.

    The floating-point weight and bias are kept (shared with the wrapped layer); the weight is
    fake-quantized on each call, so the layer stays straight-through differentiable.

    Args:
        linear: The layer to wrap.
        w_bits: Weight bit-width.
        act: A factory returning a fresh :class:`ActQuantizer`.
    """

    def __init__(self, linear: nn.Linear, w_bits: int, act: ActFactory) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.w_bits = w_bits
        self.input_quant = act()
        self.output_quant = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = quantize_weight_per_channel(self.weight, self.w_bits)
        return self.output_quant(F.linear(self.input_quant(x), weight, self.bias), inplace=True)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, w_bits={self.w_bits}"


class QuantAttention(nn.Module):
    """timm ``Attention`` with explicit, quantized matmuls.

    Keeps the attribute names of timm's module (``qkv``, ``num_heads``, ``head_dim``, ``scale``,
    ``q_norm``, ``k_norm``, ``proj``) so code that reads them - such as the CLS-attention
    scoring of :mod:`smi.sparse_vit` - works on the quantized copy too.

    Args:
        attn: The timm ``Attention`` module to replace (its parameters are shared).
        w_bits: Weight bit-width of ``qkv``, ``proj`` (and ``gate``).
        act: A factory returning a fresh :class:`ActQuantizer`.
    """

    def __init__(self, attn: Attention, w_bits: int, act: ActFactory) -> None:
        super().__init__()
        if type(attn) is not Attention:
            raise SMIError(
                f"attention module {type(attn).__name__} is not timm's standard Attention; quantization "
                "supports ViT/DeiT blocks with the standard attention only."
            )
        self.num_heads, self.head_dim = attn.num_heads, attn.head_dim
        # attn_dim, norm and gate arrived in later timm 1.0.x releases; older ones lack them.
        self.attn_dim = getattr(attn, "attn_dim", attn.num_heads * attn.head_dim)
        self.scale = attn.scale
        self.qkv = QuantLinear(attn.qkv, w_bits, act)
        self.q_norm, self.k_norm = attn.q_norm, attn.k_norm
        self.norm = getattr(attn, "norm", None) or nn.Identity()
        gate = getattr(attn, "gate", None)
        self.gate = QuantLinear(gate, w_bits, act) if gate is not None else None
        self.attn_drop, self.proj_drop = attn.attn_drop, attn.proj_drop
        self.proj = QuantLinear(attn.proj, w_bits, act)
        # Inputs of q @ k^T and of attn @ v, and the attention scores before the softmax.
        self.q_quant, self.k_quant, self.v_quant = act(), act(), act()
        self.score_quant, self.prob_quant = act(), act()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise SMIError("quantized attention does not support attention masks (ViT classifiers use none).")
        b, n, _ = x.shape
        gate = self.gate(x).sigmoid() if self.gate is not None else None
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        # Fresh temporaries are quantized in place; k and v are views into the qkv output.
        q, k, v = self.q_quant(q * self.scale, inplace=True), self.k_quant(k), self.v_quant(v)
        scores = self.score_quant(q @ k.transpose(-2, -1), inplace=True)
        probs = self.prob_quant(self.attn_drop(scores.softmax(dim=-1)), inplace=True)
        out = (probs @ v).transpose(1, 2).reshape(b, n, self.attn_dim)
        out = self.norm(out)
        if gate is not None:
            out = out * gate
        return self.proj_drop(self.proj(out))


class ActFactory:
    """Builds activation quantizers with one bit-width and range estimator."""

    def __init__(self, bits: int, estimator: str, percentile: float) -> None:
        self.bits, self.estimator, self.percentile = bits, estimator, percentile

    def __call__(self) -> ActQuantizer:
        return ActQuantizer(self.bits, self.estimator, self.percentile)
