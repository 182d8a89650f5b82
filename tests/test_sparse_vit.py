"""Token-subset forward: equivalence with timm's own forward, CLS attention, errors."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from smi.errors import SMIError
from smi.inversion.jitter import JitterSampler, PatchJitter
from smi.sparse_vit import TokenSubsetViT, cls_attention_from_qkv, gather_patches
from tests.tiny import make_tiny_vit

VARIANTS = {
    "plain": {},
    "registers": {"reg_tokens": 2},
    "no_embed_class": {"no_embed_class": True},
    "avg_pool_no_cls": {"class_token": False, "global_pool": "avg"},
    "qk_norm": {"qk_norm": True},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_keep_all_matches_plain_forward_and_input_gradient(variant: str) -> None:
    model = make_tiny_vit(**VARIANTS[variant]).double()
    vit = TokenSubsetViT(model)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    ref = model(x)
    (ref_grad,) = torch.autograd.grad(ref.square().sum(), x)
    y = x.detach().clone().requires_grad_(True)
    out = vit(y).logits
    (grad,) = torch.autograd.grad(out.square().sum(), y)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad, ref_grad)


def test_distilled_deit_with_dist_token_matches() -> None:
    torch.manual_seed(0)
    model = timm.create_model(
        "deit_tiny_distilled_patch16_224", img_size=32, patch_size=4, embed_dim=48, depth=2, num_heads=3, num_classes=5
    ).eval()
    vit = TokenSubsetViT(model)
    assert vit.num_prefix_tokens == 2
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(vit(x).logits, model(x), atol=1e-5, rtol=1e-5)


def test_whole_patch_jitter_equals_rolled_and_flipped_image(tiny_vit) -> None:
    vit = TokenSubsetViT(tiny_vit)
    x = torch.randn(2, 3, 32, 32)
    all_positions = torch.arange(vit.num_patches).expand(2, -1)
    for jitter in [PatchJitter(1, -2, False), PatchJitter(-1, 1, True), PatchJitter(0, 0, True)]:
        patches = jitter.patch_content(gather_patches(vit.patchify(x), all_positions))
        out = vit.forward_patches(patches, jitter.positions(all_positions, vit.grid_size)).logits
        ref = tiny_vit(jitter.apply_to_image(x, vit.patch_size))
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_subset_forward_is_invariant_to_token_order(tiny_vit) -> None:
    vit = TokenSubsetViT(tiny_vit)
    x = torch.randn(2, 3, 32, 32)
    keep = torch.tensor([[0, 5, 9, 33, 62], [1, 2, 3, 40, 50]])
    shuffled = keep[:, [4, 2, 0, 3, 1]]
    torch.testing.assert_close(vit(x, keep).logits, vit(x, shuffled).logits, atol=1e-5, rtol=1e-5)
    # ...and differs from another subset, so the test would catch ignored positions.
    assert not torch.allclose(vit(x, keep).logits, vit(x, keep + 1).logits, atol=1e-4)


def test_cls_attention_equals_unfused_block_attention(tiny_vit) -> None:
    vit = TokenSubsetViT(tiny_vit)
    last = tiny_vit.blocks[-1].attn
    x = torch.randn(2, 3, 32, 32)
    keep = torch.stack([torch.randperm(64)[:20] for _ in range(2)])
    fused = vit(x, keep, return_cls_attention=True)
    captured = []
    last.fused_attn = False  # timm's explicit softmax path; its attn_drop sees the attention matrix
    handle = last.attn_drop.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        unfused = vit(x, keep)
    finally:
        handle.remove()
        last.fused_attn = True
    explicit = captured[0].mean(dim=1)[:, 0, vit.num_prefix_tokens :]
    torch.testing.assert_close(fused.cls_attention, explicit, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fused.logits, unfused.logits, atol=1e-5, rtol=1e-5)
    assert fused.cls_attention.shape == (2, 20)


def test_forward_masked_groups_different_counts(tiny_vit) -> None:
    vit = TokenSubsetViT(tiny_vit)
    x = torch.randn(3, 3, 32, 32)
    mask = torch.zeros(3, 8, 8, dtype=torch.bool)
    mask[0, :2] = True
    mask[1] = True
    mask[2, 3:7, 2:5] = True
    out = vit.forward_masked(x, mask)
    for i in range(3):
        positions = mask[i].flatten().nonzero().T
        torch.testing.assert_close(out[i : i + 1], vit(x[i : i + 1], positions).logits, atol=1e-5, rtol=1e-5)


def test_cls_scoring_without_class_token_is_a_clear_error() -> None:
    vit = TokenSubsetViT(make_tiny_vit(class_token=False, global_pool="avg"))
    with pytest.raises(SMIError, match="class token"):
        vit(torch.randn(1, 3, 32, 32), return_cls_attention=True)


def test_non_vit_model_is_rejected() -> None:
    with pytest.raises(SMIError, match="not a timm VisionTransformer"):
        TokenSubsetViT(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten()))


def test_wrong_image_size_is_rejected(tiny_vit) -> None:
    with pytest.raises(SMIError, match="does not match"):
        TokenSubsetViT(tiny_vit)(torch.randn(1, 3, 48, 48))


def test_image_size_not_divisible_by_patch_is_rejected() -> None:
    model = timm.create_model("vit_tiny_patch16_224", img_size=30, patch_size=4, embed_dim=48, depth=1, num_heads=3)
    with pytest.raises(SMIError, match="not divisible"):
        TokenSubsetViT(model)


def test_jitter_sampler_amplitude_in_whole_patches() -> None:
    assert JitterSampler.for_image(224, 16, 0.125, True).max_shift == 2
    assert JitterSampler.for_image(32, 4, 0.125, True).max_shift == 1
    assert JitterSampler.for_image(32, 4, 0.0, True).max_shift == 0
    gen = torch.Generator().manual_seed(0)
    draws = [JitterSampler(2, True).sample(gen) for _ in range(200)]
    assert {d.dy for d in draws} == {-2, -1, 0, 1, 2}
    assert any(d.flip for d in draws) and not all(d.flip for d in draws)


def test_cls_attention_helper_rejects_unknown_attention() -> None:
    with pytest.raises(SMIError, match="standard Attention"):
        cls_attention_from_qkv(nn.Identity(), torch.randn(1, 3, 8))
