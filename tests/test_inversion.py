"""The inversion loop: sparsity guarantees, schedule, determinism, FLOPs and memory."""

from __future__ import annotations

import pytest
import torch

from smi.errors import SMIError
from smi.inversion import InversionConfig, InversionRequest, InversionRun, invert
from smi.inversion.costs import count_flops
from smi.inversion.policies import AttentionStopping, NoStopping, PatchPolicy, PolicyStep, RandomStopping, check_step
from smi.inversion.priors import PriorWeights, image_priors
from smi.inversion.schedule import StoppingSchedule, active_tokens_per_iteration
from tests.tiny import make_teacher, make_tiny_vit

FAST = dict(batch_size=4, warmup_iterations=0)


def test_stopped_patches_get_no_gradient_including_priors(tiny_teacher) -> None:
    cfg = InversionConfig(iterations=1, tv_l2=1.0, tv_l1=1.0, l2=1.0, **FAST)
    run = InversionRun(InversionRequest(tiny_teacher, torch.arange(4), cfg))
    active = torch.zeros(4, 64, dtype=torch.bool)
    active[:, ::3] = True
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    from smi.inversion.jitter import PatchJitter

    loss, _, _ = run.image_loss(x, active, PatchJitter(1, 1, True), False)
    loss.backward()
    grad_per_patch = run.vit.patchify(x.grad).abs().flatten(2).sum(-1)
    assert bool((grad_per_patch[~active] == 0).all())
    assert bool((grad_per_patch[active] > 0).all())


def test_stopped_patches_are_never_updated_after_stopping(tiny_teacher) -> None:
    snapshots: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    cfg = InversionConfig(iterations=12, keep_best=False, **FAST)
    policy = RandomStopping(StoppingSchedule((2, 5), (0.5, 0.5)))
    run = InversionRun(
        InversionRequest(tiny_teacher, torch.arange(4), cfg),
        policy=policy,
        on_iteration=lambda t, x, a: snapshots.append((t, x.clone(), a.clone())),
    )
    result = run.run()[0]
    vit = run.vit
    final_active = snapshots[-1][2]
    stopped = ~final_active
    assert int(stopped[0].sum()) == 64 - 16
    after_last_stop = [vit.patchify(x) for t, x, _ in snapshots if t > 5]
    for later in after_last_stop[1:]:
        torch.testing.assert_close(later[stopped], after_last_stop[0][stopped], rtol=0, atol=0)
    # Active patches did keep changing.
    assert not torch.equal(after_last_stop[-1][final_active], after_last_stop[0][final_active])
    # Output: stopped patches are black, the mask is the final active set.
    assert torch.equal(result.keep_masks.view(4, -1), final_active)
    assert float(vit.patchify(result.images)[stopped].abs().max()) == 0.0


def test_paper_schedule_kept_counts_on_14x14_grid() -> None:
    assert StoppingSchedule().kept_counts(196) == [196, 137, 95, 66, 46]
    teacher = make_teacher(make_tiny_vit(img_size=56, patch_size=4, embed_dim=16, depth=1, num_heads=1), img_size=56)
    cfg = InversionConfig(iterations=8, **FAST)
    schedule = StoppingSchedule((1, 2, 3, 4), (0.3,) * 4)
    result = invert(
        InversionRequest(teacher, torch.arange(4), cfg, progress=False), policy=AttentionStopping(schedule)
    )[0]
    assert result.stats.active_tokens == [196, 196, 137, 95, 66, 46, 46, 46]
    assert result.stats.active_tokens == active_tokens_per_iteration(schedule, 196, 8)
    assert result.keep_masks.view(4, -1).sum(1).tolist() == [46] * 4


@pytest.mark.parametrize(
    "iterations,ratios,match",
    [
        ((50, 40), (0.3, 0.3), "strictly increasing"),
        ((10,), (1.0,), "outside"),
        ((10,), (0.0,), "outside"),
        ((1, 2), (0.3,), "ratios"),
    ],
)
def test_bad_schedules_are_clear_errors(iterations, ratios, match) -> None:
    with pytest.raises(SMIError, match=match):
        StoppingSchedule(iterations, ratios)


def test_same_seed_same_images_other_seed_differs(tiny_teacher) -> None:
    cfg = InversionConfig(iterations=6, **FAST)
    policy = AttentionStopping(StoppingSchedule((1, 3), (0.3, 0.3)))
    a = invert(InversionRequest(tiny_teacher, torch.arange(4), cfg, seed=3, progress=False), policy=policy)[0]
    b = invert(InversionRequest(tiny_teacher, torch.arange(4), cfg, seed=3, progress=False), policy=policy)[0]
    c = invert(InversionRequest(tiny_teacher, torch.arange(4), cfg, seed=4, progress=False), policy=policy)[0]
    assert torch.equal(a.images, b.images) and torch.equal(a.keep_masks, b.keep_masks)
    assert not torch.equal(a.images, c.images)


def test_images_are_in_pixel_range_and_loss_decreases(tiny_teacher) -> None:
    cfg = InversionConfig(iterations=40, **FAST)
    result = invert(InversionRequest(tiny_teacher, torch.arange(4), cfg, progress=False), policy=NoStopping())[0]
    assert float(result.images.min()) >= 0 and float(result.images.max()) <= 1
    curve = result.stats.loss_curve
    assert sum(curve[-5:]) / 5 < sum(curve[:5]) / 5


def vit_block_flops(tokens: int, dim: int, mlp_hidden: int) -> int:
    """Analytic FLOPs of one pre-norm ViT block's forward and input-gradient backward, one sample.

    Forward (matmuls only): qkv 6*T*D^2, attention scores and weighted sum 4*T^2*D, projection
    2*T*D^2, MLP 4*T*D*H. Backward with frozen weights (inversion: only the input gradient)
    costs the same as the forward for every linear layer, and twice the forward plus a
    recomputation of the scores for the attention (the fused kernel's backward): 2*T^2*D + 8*T^2*D.
    Multiply-add = 2.
    """
    linear = 2 * tokens * dim * (3 * dim + dim + 2 * mlp_hidden)
    attention = 4 * tokens * tokens * dim
    attention_backward = 10 * tokens * tokens * dim
    return 2 * linear + attention + attention_backward


def test_dense_iteration_flops_match_analytic_vit_formula() -> None:
    dim, depth, heads, mlp_ratio, classes, batch = 64, 3, 2, 4.0, 10, 2
    model = make_tiny_vit(embed_dim=dim, depth=depth, num_heads=heads, mlp_ratio=mlp_ratio, num_classes=classes)
    teacher = make_teacher(model)
    config = InversionConfig(iterations=1, batch_size=batch, tv_l2=0.0, warmup_iterations=0)
    run = InversionRun(InversionRequest(teacher, torch.arange(batch), config))
    active = torch.ones(batch, 64, dtype=torch.bool)
    x = torch.randn(batch, 3, 32, 32, requires_grad=True)
    from smi.inversion.jitter import PatchJitter

    measured = count_flops(lambda: run.image_loss(x, active, PatchJitter(), False)[0])
    tokens, patch_dim = 65, 3 * 4 * 4
    per_sample = depth * vit_block_flops(tokens, dim, int(dim * mlp_ratio))
    per_sample += 2 * (2 * 64 * patch_dim * dim)  # patch projection, forward and input gradient
    per_sample += 2 * (2 * dim * classes)  # head, forward and input gradient
    analytic = batch * per_sample
    assert abs(measured - analytic) / analytic < 0.02, (measured, analytic)


def test_sparse_iteration_flops_fall_with_token_count(tiny_teacher) -> None:
    cfg = InversionConfig(iterations=6, **FAST)
    policy = AttentionStopping(StoppingSchedule((1, 3), (0.5, 0.5)))
    result = invert(InversionRequest(tiny_teacher, torch.arange(4), cfg, progress=False), policy=policy)[0]
    by_tokens = result.stats.flops_by_tokens
    assert sorted(by_tokens) == [16, 32, 64]
    assert by_tokens[64] > by_tokens[32] > by_tokens[16] > 0
    dense_run = invert(InversionRequest(tiny_teacher, torch.arange(4), cfg, progress=False), policy=NoStopping())[0]
    assert result.stats.flops_total < dense_run.stats.flops_total
    assert result.stats.peak_memory_after_last_stop_bytes < dense_run.stats.peak_memory_after_last_stop_bytes
    assert result.stats.peak_memory_bytes == dense_run.stats.peak_memory_bytes  # same first phase


def test_priors_ignore_pairs_touching_stopped_pixels() -> None:
    x = torch.zeros(1, 3, 8, 8)
    x[..., 4:] = 5.0  # an edge between columns 3 and 4
    mask = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    weights = PriorWeights(tv_l2=1.0)
    assert float(image_priors(x, mask, weights)) > 0
    mask[..., 4:] = False
    assert float(image_priors(x, mask, weights)) == 0.0


def test_bad_targets_are_clear_errors(tiny_teacher) -> None:
    with pytest.raises(SMIError, match="class indices"):
        InversionRun(InversionRequest(tiny_teacher, torch.tensor([0, 10]), InversionConfig(iterations=1, **FAST)))


def test_bad_config_values_are_clear_errors() -> None:
    with pytest.raises(SMIError, match="iterations"):
        InversionConfig(iterations=0)
    with pytest.raises(SMIError, match="jitter"):
        InversionConfig(jitter=1.5)


@pytest.mark.parametrize("img_size,patch", [(32, 4), (48, 16), (12, 1)])
def test_patch_space_priors_equal_image_priors(img_size: int, patch: int) -> None:
    from smi.inversion.priors import PatchNeighbours, patch_priors
    from smi.sparse_vit import gather_patches, mask_to_positions

    torch.manual_seed(0)
    grid = img_size // patch
    x = torch.randn(3, 3, img_size, img_size, dtype=torch.float64, requires_grad=True)
    active = torch.zeros(3, grid * grid, dtype=torch.bool)
    for i in range(3):
        active[i, torch.randperm(grid * grid)[: grid * grid // 2]] = True
    active[0] = True  # one sample keeps everything: every boundary pair counts
    active[1] = False
    active[1, :2] = True  # two neighbours on the top edge
    active[2, torch.randperm(grid * grid)[: grid * grid // 2]] = True
    counts = active.sum(1)
    weights = PriorWeights(tv_l2=1.0, tv_l1=0.5, l2=0.3)
    pixel = active.view(3, 1, grid, grid).repeat_interleave(patch, 2).repeat_interleave(patch, 3)
    reference = image_priors(x, pixel, weights)
    (g_ref,) = torch.autograd.grad(reference.sum(), x)
    patches = (
        x.reshape(3, 3, grid, patch, grid, patch).permute(0, 2, 4, 1, 3, 5).reshape(3, grid * grid, 3, patch, patch)
    )
    # Samples keep different counts here; the loop has equal counts, so check one sample at a time.
    fast, g_fast = [], torch.zeros_like(x)
    for i in range(3):
        positions = mask_to_positions(active[i : i + 1])
        kept = gather_patches(patches[i : i + 1], positions)
        value = patch_priors(
            kept, PatchNeighbours.from_positions(positions, (grid, grid)), (3, img_size, img_size), weights
        )
        (g,) = torch.autograd.grad(value.sum(), x)
        fast.append(value)
        g_fast += g
    assert counts.tolist()[:2] == [grid * grid, 2]
    torch.testing.assert_close(torch.cat(fast), reference)
    torch.testing.assert_close(g_fast, g_ref)


def test_narrowed_adam_continues_the_kept_pixels_exactly() -> None:
    from smi.inversion.loop import _narrow_optimizer

    torch.manual_seed(0)
    full = torch.randn(2, 5, 3, 2, 2, requires_grad=True)
    sub = full.detach().clone().requires_grad_(True)
    opt_full = torch.optim.Adam([full], lr=0.1, betas=(0.5, 0.99))
    opt_sub = torch.optim.Adam([sub], lr=0.1, betas=(0.5, 0.99))
    target = torch.randn(2, 5, 3, 2, 2)
    keep = torch.tensor([[0, 2, 3], [1, 3, 4]])
    for step in range(6):
        for param, opt in ((full, opt_full), (sub, opt_sub)):
            opt.zero_grad()
            mask = torch.ones(2, param.shape[1], 1, 1, 1)
            if step >= 3 and param is full:  # the reference: stopped entries simply get no gradient
                mask = torch.zeros_like(mask).scatter_(1, keep[..., None, None, None], 1.0)
            t = target if param.shape[1] == 5 else target.gather(1, keep[..., None, None, None].expand(-1, -1, 3, 2, 2))
            ((param - t) ** 2 * mask).sum().backward()
            opt.step()
        if step == 2:
            sub, opt_sub = _narrow_optimizer(opt_sub, sub, keep)
            assert sub.shape == (2, 3, 3, 2, 2)
    kept = full.detach().gather(1, keep[..., None, None, None].expand(-1, -1, 3, 2, 2))
    torch.testing.assert_close(sub.detach(), kept, rtol=0, atol=1e-6)


def test_invert_takes_its_options_by_keyword_and_passes_the_iteration_hook(tiny_teacher) -> None:
    cfg = InversionConfig(iterations=3, batch_size=4, warmup_iterations=0, measure_costs=False)
    request = InversionRequest(tiny_teacher, torch.arange(4), cfg, progress=False)
    with pytest.raises(TypeError):
        invert(request, NoStopping())  # options are keyword-only
    seen: list[tuple[int, tuple[int, ...], int]] = []
    invert(request, policy=NoStopping(), on_iteration=lambda t, x, a: seen.append((t, tuple(x.shape), int(a.sum()))))
    assert seen == [(t, (4, 3, 32, 32), 4 * 64) for t in range(3)]


class _BadPolicy(PatchPolicy):
    """Stops patch 0 of the first sample only, or restarts it after stopping it (``restart``)."""

    def __init__(self, restart: bool) -> None:
        self.restart = restart

    def decision_iterations(self, total_iterations: int) -> tuple[int, ...]:
        return (1, 3)

    def decide(self, iteration, active, scores, generator) -> PolicyStep:
        new = active.clone()
        if self.restart:
            new[:, 0] = iteration == 3  # stop patch 0 everywhere, then bring it back
            new[:, 1] = iteration != 3
        else:
            new[0, 0] = False
        return PolicyStep(new)


@pytest.mark.parametrize("protocol", ["suite", "official"])
@pytest.mark.parametrize("restart, message", [(False, "same, non-zero number"), (True, "never restart")])
def test_both_loops_reject_a_policy_that_breaks_the_invariants(tiny_teacher, protocol, restart, message) -> None:
    cfg = InversionConfig(iterations=5, batch_size=4, warmup_iterations=0, measure_costs=False, protocol=protocol)
    with pytest.raises(SMIError, match=message):
        invert(InversionRequest(tiny_teacher, torch.arange(4), cfg, progress=False), policy=_BadPolicy(restart))


def test_check_step_accepts_equal_stops_and_rejects_empty_rows() -> None:
    active = torch.ones(2, 4, dtype=torch.bool)
    check_step(active, PolicyStep(torch.tensor([[True, False, True, True], [False, True, True, True]])))
    with pytest.raises(SMIError, match="non-zero"):
        check_step(active, PolicyStep(torch.zeros(2, 4, dtype=torch.bool)))
