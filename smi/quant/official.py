"""The quantized DeiT of the official PSAQ-ViT / SMI code, built from a timm ViT's own parts.

PSAQ-ViT (Li et al., ECCV 2022; ``models/vit_quant.py`` and ``models/layers_quant.py``), whose
quantizer Sparse Model Inversion (Hu et al., ICML 2024) reuses, quantizes a DeiT at these
activation points (per-tensor ``QuantAct``; the names are the official module names):

- ``qact_input`` (the normalised image), ``patch_embed.QuantAct`` (the patch tokens),
  ``qact_embed`` (after the class token is concatenated), ``qact_pos`` (the position embedding
  *parameter* itself), ``qact1`` (the sum of the two);
- per block ``blocks.i``: ``qact1`` (after norm1), ``attn.qact1`` (qkv output),
  ``attn.qact_attn1`` (scores ``(q @ kᵀ) * scale`` before the softmax), ``attn.qact2``
  (``attn @ v``), ``attn.qact3`` (proj output), ``qact2`` (first residual sum), ``qact3``
  (after norm2), ``mlp.QuantAct1`` (after GELU), ``mlp.QuantAct2`` (fc2 output), ``qact4``
  (second residual sum);
- ``qact2`` (the final norm, class token only) and ``act_out`` (the logits).

That is 5 + 10 · depth + 2 points: 127 for DeiT-T/S/B. Every linear layer and the patch
projection have per-output-channel weights on the official grid (:mod:`smi.quant.official_grid`).

:class:`OfficialQuantViT` runs that forward by composing the timm model's own modules
(``patch_embed.proj``, ``cls_token``, ``pos_embed``, each block's ``norm1``, ``attn.qkv``,
``attn.proj``, ``norm2``, ``mlp.fc1``/``act``/``fc2``, ``norm``, ``head``); timm is not
modified. Like SMI's quantized model on sparse images, it embeds the whole image (stopped
patches hold zeros) through the five embedding quantizers, then keeps only the kept tokens
for the blocks. Calibration observes with full-precision weights and activations; weights are
quantized only when :meth:`OfficialQuantViT.finalize` switches to quantized mode.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from smi.errors import SMIError
from smi.quant.base import QuantizedViT
from smi.quant.config import QuantConfig
from smi.quant.modules import ActQuantizer, Mode, OfficialActQuantizer
from smi.quant.official_grid import official_quantize_weight
from smi.sparse_vit import TokenForward, check_vit, gather_patches


class _AttnPoints(nn.Module):
    def __init__(self, act) -> None:
        super().__init__()
        self.qact1, self.qact_attn1, self.qact2, self.qact3 = act(), act(), act(), act()


class _MlpPoints(nn.Module):
    def __init__(self, act) -> None:
        super().__init__()
        self.QuantAct1, self.QuantAct2 = act(), act()


class _BlockPoints(nn.Module):
    def __init__(self, act) -> None:
        super().__init__()
        self.qact1 = act()
        self.attn = _AttnPoints(act)
        self.qact2, self.qact3 = act(), act()
        self.mlp = _MlpPoints(act)
        self.qact4 = act()


class _PatchPoints(nn.Module):
    def __init__(self, act) -> None:
        super().__init__()
        self.QuantAct = act()


class OfficialPoints(nn.Module):
    """The official activation quantizers, laid out so that module names match the official ones."""

    def __init__(self, depth: int, act) -> None:
        super().__init__()
        self.qact_input = act()
        self.patch_embed = _PatchPoints(act)
        self.qact_embed, self.qact_pos, self.qact1 = act(), act(), act()
        self.blocks = nn.ModuleList(_BlockPoints(act) for _ in range(depth))
        self.qact2, self.act_out = act(), act()


class OfficialQuantViT(QuantizedViT):
    """Token-subset forward of a timm DeiT/ViT with the official PSAQ-ViT quantization points.

    Args:
        model: A timm ``VisionTransformer`` of the DeiT layout (checked by :func:`check_official_layout`).
        config: Bit-widths and range estimator (``config.protocol`` is not consulted here).
    """

    def __init__(self, model: nn.Module, config: QuantConfig) -> None:
        super().__init__(model)
        check_official_layout(model)
        self.w_bits = config.w_bits

        def act() -> OfficialActQuantizer:
            return OfficialActQuantizer(config.a_bits, config.range_estimator, config.percentile)

        self.points = OfficialPoints(len(model.blocks), act)
        self.weights_quantized = False

    # ------------------------------------------------------------------ quantizers
    def act_quantizers(self) -> Iterator[tuple[str, ActQuantizer]]:
        """All activation quantizers with their official module names, in forward order."""
        for name, module in self.points.named_modules():
            if isinstance(module, ActQuantizer):
                yield name, module

    def set_mode(self, mode: Mode) -> None:
        """``observe`` or ``off``: full-precision weights; ``quantize``: quantized weights and activations."""
        for _, quantizer in self.act_quantizers():
            quantizer.mode = mode
        self.weights_quantized = mode == "quantize"

    def finalize(self) -> None:
        """Fix every activation range from what was observed, then quantize the weights too."""
        for _, quantizer in self.act_quantizers():
            quantizer.finalize()
        self.set_mode("quantize")

    # ------------------------------------------------------------------ forward
    def _linear(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        weight = official_quantize_weight(layer.weight, self.w_bits) if self.weights_quantized else layer.weight
        return F.linear(x, weight, layer.bias)

    def forward_patches(  # type: ignore[override]
        self, patch_pixels: torch.Tensor, positions: torch.Tensor, return_cls_attention: bool = False
    ) -> TokenForward:
        """Not available: the official embedding quantizers see whole images (use :meth:`forward`)."""
        raise SMIError(
            "the official quantized model embeds whole images (its embedding quantizers see every patch); "
            "call it with images and keep positions."
        )

    def forward(
        self, images: torch.Tensor, keep_positions: torch.Tensor | None = None, return_cls_attention: bool = False
    ) -> TokenForward:
        """The official quantized forward; the blocks run on the kept patch tokens only.

        Args:
            images: Normalised images (B, C, H, W); stopped patches hold zeros.
            keep_positions: Row-major grid indices (B, K) of the kept patches; all if None.
            return_cls_attention: Not supported (the quantized model is never used for scoring).
        """
        if return_cls_attention:
            raise SMIError("the official quantized model does not return CLS attention.")
        model, points = self.model, self.points
        x = points.qact_input(images)
        proj = model.patch_embed.proj
        weight = official_quantize_weight(proj.weight, self.w_bits) if self.weights_quantized else proj.weight
        tokens = F.linear(self.patchify(x).flatten(2), weight.flatten(1), proj.bias)
        tokens = points.patch_embed.QuantAct(tokens)
        x = torch.cat([model.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        x = points.qact_embed(x)
        x = points.qact1(x + points.qact_pos(model.pos_embed))
        if keep_positions is not None:
            # SMI gathers the class token and the kept patch tokens after the position sum.
            prefix = torch.zeros(x.shape[0], 1, dtype=keep_positions.dtype, device=keep_positions.device)
            x = gather_patches(x, torch.cat([prefix, keep_positions + 1], dim=1))
        x = model.pos_drop(x)
        for block, block_points in zip(model.blocks, points.blocks):
            x = self._block(block, block_points, x)
        x = points.qact2(model.norm(x)[:, 0])
        return TokenForward(points.act_out(self._linear(model.head, model.head_drop(x))))

    def _block(self, block: nn.Module, points: _BlockPoints, x: torch.Tensor) -> torch.Tensor:
        attn, mlp = block.attn, block.mlp
        b, n, c = x.shape
        h = points.qact1(block.norm1(x))
        qkv = points.attn.qact1(self._linear(attn.qkv, h))
        q, k, v = qkv.reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
        scores = points.attn.qact_attn1((q @ k.transpose(-2, -1)) * attn.scale)  # scaled after the matmul
        probs = attn.attn_drop(scores.softmax(dim=-1))
        out = points.attn.qact2((probs @ v).transpose(1, 2).reshape(b, n, c))
        out = attn.proj_drop(points.attn.qact3(self._linear(attn.proj, out)))
        x = points.qact2(x + block.drop_path1(out))
        h = points.qact3(block.norm2(x))
        h = points.mlp.QuantAct1(mlp.act(self._linear(mlp.fc1, h)))
        h = mlp.drop2(points.mlp.QuantAct2(self._linear(mlp.fc2, mlp.drop1(h))))
        return points.qact4(x + block.drop_path2(h))


def check_official_layout(model: nn.Module) -> None:
    """Raise :class:`SMIError` unless ``model`` has the DeiT layout the official quantizer assumes.

    That is: a class token with its position embedding in ``pos_embed``, no register tokens,
    no pre-norm, class-token pooling without ``fc_norm``, standard attention without q/k norms
    or layer scale, and an MLP without an inner norm.
    """
    check_vit(model)
    problems = []
    if model.cls_token is None or getattr(model, "num_reg_tokens", 0) or getattr(model, "no_embed_class", False):
        problems.append("it needs one class token embedded with the position embedding and no register tokens")
    if getattr(model, "dynamic_img_size", False) or model.pos_embed is None:
        problems.append("it needs a fixed learned position embedding")
    if getattr(model, "global_pool", "token") != "token" or getattr(model, "attn_pool", None) is not None:
        problems.append("it needs class-token pooling")
    identity = {
        "patch_embed.norm": model.patch_embed.norm,
        "norm_pre": model.norm_pre,
        "fc_norm": model.fc_norm,
    }
    for i, block in enumerate(model.blocks):
        attn, mlp = getattr(block, "attn", None), getattr(block, "mlp", None)
        standard = all(hasattr(attn, a) for a in ("qkv", "proj", "num_heads", "scale"))
        if not standard or getattr(attn, "gate", None) is not None:
            problems.append(f"block {i} needs timm's standard attention")
            continue
        if not all(hasattr(mlp, a) for a in ("fc1", "act", "fc2")):
            problems.append(f"block {i} needs timm's Mlp (fc1, act, fc2)")
            continue
        identity.update(
            {
                f"blocks.{i}.attn.q_norm": attn.q_norm,
                f"blocks.{i}.attn.k_norm": attn.k_norm,
                f"blocks.{i}.attn.norm": getattr(attn, "norm", nn.Identity()),
                f"blocks.{i}.ls1": block.ls1,
                f"blocks.{i}.ls2": block.ls2,
                f"blocks.{i}.mlp.norm": getattr(mlp, "norm", nn.Identity()),
            }
        )
    problems += [f"{name} must be absent (Identity)" for name, m in identity.items() if not isinstance(m, nn.Identity)]
    if not isinstance(model.head, nn.Linear):
        problems.append("it needs a linear classifier head")
    if problems:
        raise SMIError(
            "the official PTQ protocol reproduces the official quantized DeiT; this model differs: "
            + "; ".join(problems[:4])
            + ". Use quantization protocol 'suite' for it."
        )


def quantize_vit_official(model: nn.Module, config: QuantConfig) -> OfficialQuantViT:
    """A copy of ``model`` wrapped as the official quantized DeiT; weights stay full precision until calibrated.

    Raises:
        SMIError: If the model does not have the DeiT layout.
    """
    check_official_layout(model)
    return OfficialQuantViT(copy.deepcopy(model).eval(), config).eval()
