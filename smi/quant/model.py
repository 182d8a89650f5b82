"""A fake-quantized copy of a timm ViT that runs on token subsets (the ``suite`` PTQ protocol).

The scheme follows PSAQ-ViT (Li et al., ECCV 2022) but not its exact quantizer; the
``official`` protocol is :mod:`smi.quant.official` (docs/protocols.md lists the differences).

:func:`quantize_vit` deep-copies the model and swaps module instances in the copy - every
timm ``Attention`` becomes a :class:`~smi.quant.modules.QuantAttention`, every other
``nn.Linear`` (MLP layers, classifier head) a :class:`~smi.quant.modules.QuantLinear` - and
wraps the copy in :class:`QuantViT`, a :class:`~smi.sparse_vit.TokenSubsetViT`, so that sparse
calibration images run on their kept patches only (Sparse Model Inversion, Hu et al., ICML
2024) and the test split runs through the very same code path with every patch kept.

Patch embedding: the token-subset forward projects patches with ``patch_embed.proj.weight``
directly, so the copy's projection weight is replaced in place by its per-output-channel
symmetric fake-quantized value, and :class:`QuantViT` quantizes the embedding's input (the
normalised pixels of the *kept* patches) and output (the patch tokens, before the position
embedding) in its :meth:`QuantViT.embed`. Stopped (black) patches are never embedded, so
they never enter an activation range.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from timm.layers import Attention
from torch import nn

from smi.errors import SMIError
from smi.quant.base import QuantizedViT
from smi.quant.config import QuantConfig
from smi.quant.fake_quant import quantize_weight_per_channel
from smi.quant.modules import ActFactory, ActQuantizer, Mode, QuantAttention, QuantLinear
from smi.quant.official import OfficialQuantViT, quantize_vit_official
from smi.sparse_vit import check_vit


class QuantViT(QuantizedViT):
    """Token-subset forward of a fake-quantized ViT copy.

    Args:
        model: The quantized copy (built by :func:`quantize_vit`).
        act: Factory of activation quantizers for the patch-embedding input and output.
    """

    def __init__(self, model: nn.Module, act: ActFactory) -> None:
        super().__init__(model)
        self.input_quant = act()
        self.embed_quant = act()

    def embed(self, patch_pixels: torch.Tensor) -> torch.Tensor:
        """Quantized patch embedding of the kept patches (see the module docstring)."""
        return self.embed_quant(super().embed(self.input_quant(patch_pixels)))

    def act_quantizers(self) -> Iterator[tuple[str, ActQuantizer]]:
        """All activation quantizers with their module names."""
        for name, module in self.named_modules():
            if isinstance(module, ActQuantizer):
                yield name, module

    def set_mode(self, mode: Mode) -> None:
        """Switch every activation quantizer to ``off``, ``observe`` or ``quantize``."""
        for _, quantizer in self.act_quantizers():
            quantizer.mode = mode

    def finalize(self) -> None:
        """Fix every activation range from the observed calibration data and start quantizing."""
        for _, quantizer in self.act_quantizers():
            quantizer.finalize()
        self.set_mode("quantize")


def quantize_vit(model: nn.Module, config: QuantConfig) -> QuantViT | OfficialQuantViT:
    """Build a fake-quantized copy of a timm ViT; the original model is left untouched.

    With ``config.protocol == "official"`` this is the official quantized DeiT
    (:func:`smi.quant.official.quantize_vit_official`); the rest of this docstring describes
    the ``suite`` model.

    Weights are quantized at once (per output channel, symmetric min/max, ``config.w_bits``);
    activation quantizers (``config.a_bits``) start ``off`` and are calibrated with
    :func:`smi.quant.calibrate.calibrate`.

    Args:
        model: A timm ``VisionTransformer`` with standard attention blocks.
        config: Bit-widths and range estimator.

    Returns:
        The quantized model, in eval mode, on the device of ``model``.

    Raises:
        SMIError: If the model is not a supported timm ViT.
    """
    if config.protocol == "official":
        return quantize_vit_official(model, config)
    check_vit(model)
    qmodel = copy.deepcopy(model).eval()
    act = ActFactory(config.a_bits, config.range_estimator, config.percentile)
    # Attention first: its qkv / proj linears are wrapped inside QuantAttention.
    _replace(qmodel, lambda m: type(m) is Attention, lambda m: QuantAttention(m, config.w_bits, act))
    _replace(qmodel, lambda m: type(m) is nn.Linear, lambda m: QuantLinear(m, config.w_bits, act))
    for i, block in enumerate(getattr(qmodel, "blocks", [])):
        if not isinstance(getattr(block, "attn", None), QuantAttention):
            raise SMIError(
                f"block {i} has attention {type(getattr(block, 'attn', None)).__name__}, not timm's standard "
                "Attention; quantization supports ViT/DeiT models with standard attention blocks only."
            )
    proj = qmodel.patch_embed.proj
    with torch.no_grad():
        proj.weight.copy_(quantize_weight_per_channel(proj.weight, config.w_bits))
    return QuantViT(qmodel, act).eval()


def _replace(root: nn.Module, match, build) -> None:
    """Replace every sub-module of ``root`` for which ``match`` holds by ``build(module)``.

    Replaced modules are not searched further, so the linears inside a new
    :class:`QuantAttention` stay as they are.
    """
    for name, child in list(root.named_children()):
        if isinstance(child, (QuantAttention, QuantLinear, ActQuantizer)):
            continue
        if match(child):
            setattr(root, name, build(child))
        else:
            _replace(child, match, build)
