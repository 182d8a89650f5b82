"""Token-subset forward of an unmodified timm Vision Transformer.

Sparse Model Inversion (Hu et al., ICML 2024) runs the teacher on the prefix tokens (CLS,
registers, distillation token) plus a per-sample subset of patch tokens: stopped patches take
no part in the forward or the backward pass. This module does that by *composing* the timm
model's own parts - the patch projection weights, ``_pos_embed``, ``norm_pre``, ``blocks``,
``norm`` and ``forward_head`` - without rebinding any of its methods.

With every patch kept and positions in grid order, the logits and input gradients equal
``model(x)``. On request, the forward also returns the last block's CLS-token attention over
the kept patches, averaged over heads; it is recomputed from that block's own ``qkv`` (and
``q_norm``/``k_norm``) only then, so every other call keeps timm's fused attention kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from smi.errors import SMIError


@dataclass
class TokenForward:
    """Output of a token-subset forward.

    Attributes:
        logits: Class logits, shape (B, num_classes).
        cls_attention: Last-block CLS attention over the kept patch tokens, averaged over
            heads, shape (B, K); ``None`` unless requested.
    """

    logits: torch.Tensor
    cls_attention: torch.Tensor | None = None


class TokenSubsetViT(nn.Module):
    """Runs a timm ``VisionTransformer`` on a subset of its patch tokens.

    Args:
        model: A timm ``VisionTransformer`` (DeiT, ViT, with or without register tokens).

    Raises:
        SMIError: If ``model`` is not a timm ViT with a non-overlapping patch projection.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        check_vit(model)
        self.model = model
        embed = model.patch_embed
        self.patch_size: tuple[int, int] = tuple(embed.patch_size)  # type: ignore[assignment]
        self.grid_size: tuple[int, int] = tuple(embed.grid_size)  # type: ignore[assignment]
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.num_prefix_tokens = int(model.num_prefix_tokens)
        self.has_class_token = model.cls_token is not None

    # ------------------------------------------------------------------ patches
    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """Split images into patches in row-major grid order.

        Args:
            images: Tensor of shape (B, C, H, W) with H, W equal to the model's input size.

        Returns:
            Tensor of shape (B, N, C, ph, pw).
        """
        b, c, h, w = images.shape
        (ph, pw), (gh, gw) = self.patch_size, self.grid_size
        if (h, w) != (gh * ph, gw * pw):
            raise SMIError(
                f"image size {h}x{w} does not match the model's input size {gh * ph}x{gw * pw}; "
                "resize the images or build the model with img_size matching the data."
            )
        x = images.reshape(b, c, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, gh * gw, c, ph, pw)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`patchify`: (B, N, C, ph, pw) -> (B, C, H, W)."""
        b, _, c, ph, pw = patches.shape
        gh, gw = self.grid_size
        x = patches.reshape(b, gh, gw, c, ph, pw).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(b, c, gh * ph, gw * pw)

    def embed(self, patch_pixels: torch.Tensor) -> torch.Tensor:
        """Project patches to tokens with the model's own patch-embedding weights.

        A stride-equal-kernel convolution is a linear map on each flattened patch, so
        projecting only the kept patches costs nothing for the stopped ones.

        Args:
            patch_pixels: Tensor (B, K, C, ph, pw).

        Returns:
            Tokens (B, K, D) after the patch embedding's own norm layer.
        """
        proj = self.model.patch_embed.proj
        weight = proj.weight.flatten(1)
        tokens = F.linear(patch_pixels.flatten(2), weight, proj.bias)
        return self.model.patch_embed.norm(tokens)

    def _prefix_and_positions(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefix tokens (with their position embedding) and the patch position embeddings.

        ``_pos_embed`` is linear in its input, so calling it on zero patch tokens returns exactly
        the prefix tokens and the per-position embeddings, computed by timm's own logic
        (class-token embedding or not, register tokens, dynamic image size).
        """
        model = self.model
        gh, gw = self.grid_size
        dim = model.embed_dim
        if model.dynamic_img_size:
            zeros = torch.zeros(1, gh, gw, dim, dtype=dtype, device=device)
        else:
            zeros = torch.zeros(1, gh * gw, dim, dtype=dtype, device=device)
        out = model._pos_embed(zeros)
        return out[:, : self.num_prefix_tokens], out[:, self.num_prefix_tokens :]

    # ------------------------------------------------------------------ forward
    def forward_patches(
        self,
        patch_pixels: torch.Tensor,
        positions: torch.Tensor,
        return_cls_attention: bool = False,
    ) -> TokenForward:
        """Forward the given patches, placed at the given grid positions.

        Args:
            patch_pixels: Patch contents (B, K, C, ph, pw), normalised like the model's input.
            positions: Grid positions (B, K) (row-major indices) whose position embedding each
                patch receives.
            return_cls_attention: Also return the last block's CLS attention over the K patches.

        Returns:
            The logits and, if requested, the CLS attention.
        """
        model = self.model
        tokens = self.embed(patch_pixels)
        prefix, pos = self._prefix_and_positions(tokens.dtype, tokens.device)
        tokens = tokens + pos[0][positions]
        x = torch.cat([prefix.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        x = model.norm_pre(x)
        cls_attention = None
        if return_cls_attention:
            x, cls_attention = self._blocks_with_cls_attention(x)
        else:
            x = model.blocks(x)
        x = model.norm(x)
        return TokenForward(model.forward_head(x), cls_attention)

    def forward(
        self,
        images: torch.Tensor,
        keep_positions: torch.Tensor | None = None,
        return_cls_attention: bool = False,
    ) -> TokenForward:
        """Forward whole images on a subset of their patches (kept in place).

        Args:
            images: Normalised images (B, C, H, W).
            keep_positions: Row-major grid indices (B, K) of the patches to keep; all if None.
            return_cls_attention: Also return the last block's CLS attention.

        Returns:
            The logits and, if requested, the CLS attention over the kept patches.
        """
        patches = self.patchify(images)
        if keep_positions is None:
            keep_positions = torch.arange(self.num_patches, device=images.device).expand(images.shape[0], -1)
        kept = gather_patches(patches, keep_positions)
        return self.forward_patches(kept, keep_positions, return_cls_attention)

    def forward_masked(self, images: torch.Tensor, keep_mask: torch.Tensor) -> torch.Tensor:
        """Logits of images on the patches their boolean keep mask selects.

        Samples with different kept counts are run in groups of equal count, so no padding or
        attention mask is needed.

        Args:
            images: Normalised images (B, C, H, W).
            keep_mask: Boolean mask (B, gh, gw) or (B, N); every sample keeps at least one patch.

        Returns:
            Logits (B, num_classes) in the input order.
        """
        mask = keep_mask.reshape(keep_mask.shape[0], -1).bool()
        counts = mask.sum(dim=1)
        if int(counts.min()) < 1:
            raise SMIError("an image in the set keeps no patch at all; it cannot be forwarded.")
        logits: torch.Tensor | None = None
        for count in torch.unique(counts).tolist():
            rows = (counts == count).nonzero(as_tuple=True)[0]
            positions = mask_to_positions(mask[rows])
            out = self.forward(images[rows], positions).logits
            if logits is None:
                logits = out.new_empty(images.shape[0], out.shape[1])
            logits[rows] = out
        assert logits is not None
        return logits

    def _blocks_with_cls_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the blocks, capturing the last block's attention input to score the patches."""
        if not self.has_class_token:
            raise SMIError(
                "attention-based patch scoring needs a class token, but this model has none "
                "(class_token=False); use a model with a CLS token or a random-scoring policy."
            )
        last = self.model.blocks[-1]
        captured: list[torch.Tensor] = []
        handle = last.attn.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            x = self.model.blocks(x)
        finally:
            handle.remove()
        with torch.no_grad():
            attn = cls_attention_from_qkv(last.attn, captured[0].detach())
        return x, attn[:, self.num_prefix_tokens :]


def cls_attention_from_qkv(attn_module: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """Softmax attention of the CLS query (token 0) over all tokens, averaged over heads.

    Args:
        attn_module: A timm ``Attention`` module (with ``qkv``, ``num_heads``, ``head_dim``,
            ``scale``, ``q_norm`` and ``k_norm``).
        h: The module's input (B, T, D), i.e. the output of the block's ``norm1``.

    Returns:
        Attention weights (B, T) of the CLS row.
    """
    for attr in ("qkv", "num_heads", "head_dim", "scale", "q_norm", "k_norm"):
        if not hasattr(attn_module, attr):
            raise SMIError(
                f"the last block's attention ({type(attn_module).__name__}) has no '{attr}'; "
                "CLS-attention scoring supports timm's standard Attention module only."
            )
    b, t, _ = h.shape
    heads, head_dim = attn_module.num_heads, attn_module.head_dim
    qkv = attn_module.qkv(h).reshape(b, t, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn_module.q_norm(qkv[0]), attn_module.k_norm(qkv[1])
    logits = (q[:, :, :1] * attn_module.scale) @ k.transpose(-2, -1)  # (B, H, 1, T)
    return logits.softmax(dim=-1).mean(dim=1)[:, 0]


def _patch_index(positions: torch.Tensor, tail: torch.Size) -> torch.Tensor:
    """Expand (B, K) positions to index (B, K, *tail) tensors along dim 1."""
    b, k = positions.shape
    return positions.reshape(b, k, *[1] * len(tail)).expand(b, k, *tail)


def gather_patches(patches: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Select patches per sample: (B, N, ...) x (B, K) -> (B, K, ...), any per-patch shape."""
    return patches.gather(1, _patch_index(positions, patches.shape[2:]))


def scatter_patches(store: torch.Tensor, positions: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """A copy of ``store`` (B, N, ...) with ``patches`` (B, K, ...) put at ``positions`` (B, K)."""
    return store.scatter(1, _patch_index(positions, store.shape[2:]), patches)


def mask_to_pixels(mask: torch.Tensor, patch_size: tuple[int, int]) -> torch.Tensor:
    """Boolean patch-grid masks (B, gh, gw) -> pixel masks (B, 1, gh * ph, gw * pw)."""
    ph, pw = patch_size
    return mask.bool().repeat_interleave(ph, dim=1).repeat_interleave(pw, dim=2).unsqueeze(1)


def mask_to_positions(mask: torch.Tensor) -> torch.Tensor:
    """Row-major indices of the True entries of a (B, N) mask with equal counts per row."""
    counts = mask.sum(dim=1)
    if not bool((counts == counts[0]).all()):
        raise ValueError("mask_to_positions needs the same number of kept patches per row")
    return mask.nonzero(as_tuple=True)[1].reshape(mask.shape[0], int(counts[0]))


def check_vit(model: nn.Module) -> None:
    """Raise :class:`SMIError` unless ``model`` is a timm ViT the token-subset forward supports."""
    if not isinstance(model, VisionTransformer):
        raise SMIError(
            f"model of type {type(model).__name__} is not a timm VisionTransformer; sparse "
            "inversion needs a ViT with patch tokens (for example deit_tiny_patch16_224)."
        )
    proj = getattr(model.patch_embed, "proj", None)
    if not isinstance(proj, nn.Conv2d) or proj.kernel_size != proj.stride or proj.padding != (0, 0):
        raise SMIError("the ViT's patch embedding is not a non-overlapping convolution; not supported.")
    img_size, patch_size = getattr(model.patch_embed, "img_size", None), model.patch_embed.patch_size
    if img_size is not None and any(i % p for i, p in zip(img_size, patch_size)):
        raise SMIError(
            f"image size {tuple(img_size)} is not divisible by the patch size {tuple(patch_size)}; "
            "choose an img_size that is a multiple of the patch size."
        )
    if getattr(model.patch_embed, "dynamic_img_pad", False):
        raise SMIError("ViTs built with dynamic_img_pad=True are not supported; build with a fixed img_size.")
