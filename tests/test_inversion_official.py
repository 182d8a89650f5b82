"""``protocol: official``: each formula of the official SMI code, pinned by hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from smi.config import from_dict
from smi.errors import SMIError
from smi.inversion import InversionConfig, InversionRequest, InversionRun, invert
from smi.inversion.jitter import PatchJitter, PixelJitter, PixelJitterSampler, official_patch_shift
from smi.inversion.official import OfficialInversionRun, official_denormalize, official_scoring_iterations
from smi.inversion.policies import (
    AttentionStopping,
    RandomStopping,
    keep_top,
    official_keep_count,
    official_output_keep_count,
)
from smi.inversion.priors import PriorWeights, batch_priors, batch_total_variation, image_priors
from smi.inversion.schedule import StoppingSchedule, keep_count
from smi.methods.synthesize import official_targets, sample_targets

OFFICIAL = dict(batch_size=4, warmup_iterations=0, measure_costs=False, protocol="official")


# ---------------------------------------------------------------- the TV prior
def test_batch_tv_equals_hand_computed_value() -> None:
    # Two 1-channel 2x2 images: a = [[0, 1], [2, 3]], b = [[1, 1], [1, 1]] (b has no variation).
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    # a: right diffs (0-1, 2-3) = (-1, -1); down (0-2, 1-3) = (-2, -2);
    #    x[1:, :-1] - x[:-1, 1:] = 2 - 1 = 1; x[:-1, :-1] - x[1:, 1:] = 0 - 3 = -3.
    expected = math.sqrt(2) + math.sqrt(8) + 1 + 3
    assert float(batch_total_variation(x)) == pytest.approx(expected, rel=1e-6)
    weights = PriorWeights(tv_l2=1e-4, tv_l1=0.5, l2=0.25)
    # L1: sum over directions of the mean |d| (a's diffs, b's zeros): 2/4 + 4/4 + 1/2 + 3/2; L2: ||x|| = sqrt(14 + 4).
    l1 = 2 / 4 + 4 / 4 + 1 / 2 + 3 / 2
    assert float(batch_priors(x, weights)) == pytest.approx(1e-4 * expected + 0.5 * l1 + 0.25 * math.sqrt(18), rel=1e-6)


def test_batch_tv_is_sqrt_batch_times_stronger_per_image_than_the_suite_prior() -> None:
    image = torch.randn(1, 3, 8, 8)
    for b in (1, 4, 32):
        batch = image.expand(b, -1, -1, -1)
        official = float(batch_total_variation(batch))
        per_image_mean = float(image_priors(batch, None, PriorWeights(tv_l2=1.0)).mean())
        assert official / b == pytest.approx(per_image_mean / math.sqrt(b), rel=1e-5)


def test_official_step_is_batch_mean_ce_plus_batch_tv(tiny_teacher) -> None:
    run = OfficialInversionRun(
        InversionRequest(tiny_teacher, torch.arange(4), InversionConfig(iterations=1, **OFFICIAL))
    )
    x = torch.randn(4, 3, 32, 32)
    positions = torch.arange(64).expand(4, 64)
    loss, _ = run.image_step(x, positions, None, False)
    with torch.no_grad():
        expected = F.cross_entropy(tiny_teacher.model(x), torch.arange(4)) + 1e-4 * batch_total_variation(x)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- jitter and the token remap
@pytest.mark.parametrize(
    "offset,patch,shift",
    [
        (0, 16, 0),
        (7, 16, 0),
        (8, 16, 1),
        (-5, 16, 0),
        (-8, 16, 0),
        (-9, 16, -1),
        (24, 16, 2),
        (28, 16, 2),
        (-28, 16, -2),
        (2, 4, 1),
    ],
)
def test_official_patch_shift_rounds_to_the_nearest_patch_ties_up(offset: int, patch: int, shift: int) -> None:
    assert official_patch_shift(offset, patch) == shift


def _reference_remap(source: torch.Tensor, off1: int, off2: int, flip: bool, patch: int, side: int) -> torch.Tensor:
    """The official remap restated on a grid of source indices: where is each source patch shown?"""
    grid = torch.arange(side * side).reshape(side, side)
    shown = torch.roll(grid, shifts=(official_patch_shift(off1, patch), official_patch_shift(off2, patch)), dims=(0, 1))
    if flip:
        shown = shown.flip(1)
    where = torch.empty(side * side, dtype=torch.long)
    where[shown.flatten()] = torch.arange(side * side)
    return where[source]


def test_token_remap_matches_the_official_lookup() -> None:
    generator = torch.Generator().manual_seed(0)
    source = torch.stack([torch.randperm(196, generator=generator)[:47].sort().values for _ in range(3)])
    for off1, off2, flip in [(0, 0, False), (28, -28, True), (-8, 8, False), (13, -3, True)]:
        got = PixelJitter(off1, off2, flip).token_jitter((16, 16)).positions(source, (14, 14))
        assert torch.equal(got, _reference_remap(source, off1, off2, flip, 16, 14))


def test_whole_patch_pixel_roll_feeds_the_tokens_the_suite_loop_feeds(tiny_teacher) -> None:
    # A roll by whole patches moves every token's content exactly with its remapped position.
    config = InversionConfig(iterations=1, tv_l2=0.0, **OFFICIAL)
    official = OfficialInversionRun(InversionRequest(tiny_teacher, torch.arange(4), config))
    suite = InversionRun(
        InversionRequest(tiny_teacher, torch.arange(4), InversionConfig(iterations=1, tv_l2=0.0, batch_size=4))
    )
    x = torch.randn(4, 3, 32, 32)
    active = torch.zeros(4, 64, dtype=torch.bool)
    active[:, 5:40] = True
    positions = active.nonzero()[:, 1].view(4, -1)
    a, _ = official.image_step(x, positions, PixelJitter(4, -8, True), False)
    b, _, _ = suite.image_loss(x, active, PatchJitter(1, -2, True))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_pixel_jitter_limits_and_diagonal_draws() -> None:
    sampler = PixelJitterSampler.official(224, 224, 0.125, True)
    assert (sampler.max_dy, sampler.max_dx) == (28, 28)
    generator = torch.Generator().manual_seed(0)
    draws = [sampler.sample(generator) for _ in range(400)]
    assert max(abs(d.dy) for d in draws) == 28 and max(abs(d.dx) for d in draws) == 28
    assert any(d.dy != d.dx for d in draws) and 120 < sum(d.flip for d in draws) < 280
    diagonal = PixelJitterSampler(15, 15, True, diagonal=True)
    assert all(d.dy == d.dx and abs(d.dy) <= 15 for d in (diagonal.sample(generator) for _ in range(50)))


# ---------------------------------------------------------------- labels
def test_official_targets_are_uniform_and_sorted_per_batch() -> None:
    labels = official_targets(64, 1000, seed=3, batch_size=32)
    assert labels.shape == (64,) and int(labels.min()) >= 0 and int(labels.max()) < 1000
    for chunk in labels.split(32):
        assert torch.equal(chunk, chunk.sort().values)
    assert not torch.equal(labels[:32], torch.arange(32))
    assert not torch.equal(official_targets(64, 1000, seed=4, batch_size=32), labels)
    many = official_targets(20000, 10, seed=0, batch_size=32)
    counts = torch.bincount(many, minlength=10).float()
    assert float(counts.min()) > 1800 and float(counts.max()) < 2200  # uniform: 2000 +- 4.5 sigma
    assert torch.equal(sample_targets("official", 64, 1000, 3, 32), labels)
    assert sorted(sample_targets("suite", 10, 10, 0, 32).tolist()) == list(range(10))


# ---------------------------------------------------------------- schedule timing and counts
def test_official_keep_counts_truncate_without_rounding_guard() -> None:
    counts = [196]
    for _ in range(4):
        counts.append(official_keep_count(counts[-1], 0.3))
    assert counts == [196, 137, 95, 66, 46]
    assert official_output_keep_count(196, (0.3,) * 4) == 47 == int(197 * 0.7**4)
    assert official_output_keep_count(64, (0.3,) * 4) == 15
    assert official_output_keep_count(64, ()) == 64
    # Where floating point lands just below an integer the two rules differ.
    assert (official_keep_count(90, 0.3), keep_count(90, 0.3)) == (62, 63)  # 90 * 0.7 = 62.99999999999999


def test_scores_come_from_unjittered_forwards_one_iteration_before_each_stop(tiny_teacher) -> None:
    config = InversionConfig(iterations=9, **OFFICIAL)
    policy = AttentionStopping(StoppingSchedule((3, 6), (0.3, 0.3)))
    run = OfficialInversionRun(InversionRequest(tiny_teacher, torch.arange(4), config, progress=False), policy=policy)
    calls: list[tuple[bool, bool, int]] = []
    step = run.image_step

    def spy(images, positions, jitter, scoring):
        calls.append((jitter is None, scoring, positions.shape[1]))
        return step(images, positions, jitter, scoring)

    run.image_step = spy  # type: ignore[method-assign]
    result = run.run()[0]
    calls = calls[:9]  # then the untimed cost replay
    assert result.stats.active_tokens == [64, 64, 64, 44, 44, 44, 30, 30, 30]
    assert result.stats.decision_iterations == [2, 5]
    unjittered = [t for t, (still, _, _) in enumerate(calls) if still]
    assert unjittered == [2, 3, 5, 6]
    assert [t for t, (_, scoring, _) in enumerate(calls) if scoring] == [2, 5]


@pytest.mark.parametrize("iterations,match", [((0, 5), "iteration 0"), ((3, 4), "consecutive")])
def test_official_schedules_the_official_code_cannot_run_are_errors(iterations, match) -> None:
    with pytest.raises(SMIError, match=match):
        official_scoring_iterations(iterations)


def test_bad_protocol_and_precision_are_clear_errors() -> None:
    with pytest.raises(SMIError, match="protocol"):
        from_dict(InversionConfig, {"protocol": "paper"}, "the inversion config")
    with pytest.raises(SMIError, match="precision"):
        InversionConfig(precision="fp16")
    assert from_dict(InversionConfig, {"protocol": "official"}, "x").protocol == "official"


# ---------------------------------------------------------------- output
def test_output_is_the_final_iterate_with_the_rederived_mask(tiny_teacher) -> None:
    config = InversionConfig(iterations=8, **OFFICIAL)
    seen: dict[int, torch.Tensor] = {}
    run = OfficialInversionRun(
        InversionRequest(tiny_teacher, torch.arange(4), config, progress=False),
        policy=AttentionStopping(StoppingSchedule((2, 5), (0.3, 0.3))),
        on_iteration=lambda t, x, a: seen.__setitem__(t, x.clone()),
    )
    result = run.run()[0]
    mean, std = tiny_teacher.mean_std("cpu")
    pixels = official_denormalize(seen[7], mean, std)
    # K = int(65 * 0.7 * 0.7) = 31 by CLS attention of a dense forward fed the [0, 1] pixels.
    scores = run.vit(pixels, return_cls_attention=True).cls_attention
    expected = keep_top(torch.ones(4, 64, dtype=torch.bool), scores, 31)
    assert torch.equal(result.keep_masks.view(4, -1), expected)
    assert result.keep_masks.view(4, -1).sum(1).tolist() == [31] * 4
    pixel_mask = expected.view(4, 8, 8).repeat_interleave(4, 1).repeat_interleave(4, 2).unsqueeze(1)
    torch.testing.assert_close(result.images, pixels.clamp(0, 1) * pixel_mask, rtol=0, atol=0)
    # The mask is not the tracked set: a kept patch may have been stopped (30 were optimised).
    assert result.stats.active_tokens[-1] == 30


def test_dense_official_output_keeps_every_patch_and_stopped_patches_keep_moving(tiny_teacher) -> None:
    dense = invert(
        InversionRequest(tiny_teacher, torch.arange(4), InversionConfig(iterations=4, **OFFICIAL), progress=False)
    )[0]
    assert bool(dense.keep_masks.all())
    seen: list[torch.Tensor] = []
    config = InversionConfig(iterations=8, **OFFICIAL)
    policy = RandomStopping(StoppingSchedule((2,), (0.5,)))
    run = OfficialInversionRun(
        InversionRequest(tiny_teacher, torch.arange(4), config, progress=False),
        policy=policy,
        on_iteration=lambda t, x, a: seen.append(x.clone()),
    )
    result = run.run()[0]
    stopped = ~result.keep_masks.view(4, -1)  # random stopping keeps its tracked set
    assert int(stopped[0].sum()) == 32
    patches = [run.vit.patchify(x) for x in seen]
    # The official loop keeps updating stopped patches (TV prior, Adam momentum).
    assert not torch.equal(patches[-1][stopped], patches[3][stopped])


def test_official_runs_are_deterministic_and_record_the_protocol(tiny_teacher) -> None:
    from smi.methods import ScheduleParams, SparseModelInversion
    from smi.methods.synthesize import synthesize

    method = SparseModelInversion(ScheduleParams(iterations=(2, 4), ratio=0.3))
    config = InversionConfig(iterations=6, **OFFICIAL)
    a, description, costs, _ = synthesize(method, tiny_teacher, 4, config, seed=1, progress=False)
    b = synthesize(method, tiny_teacher, 4, config, seed=1, progress=False).image_set
    assert torch.equal(a.images, b.images) and torch.equal(a.keep_masks, b.keep_masks)
    assert a.metadata["protocol"] == description["protocol"] == "official"
    assert a.metadata["inversion_config"]["protocol"] == "official"
    assert torch.equal(a.targets, a.targets.sort().values)
    assert costs.decision_iterations == [1, 3]


def test_bf16_autocast_keeps_the_flop_count(tiny_teacher) -> None:
    policy = AttentionStopping(StoppingSchedule((1,), (0.3,)))
    for protocol in ("suite", "official"):
        base = dict(iterations=3, batch_size=4, warmup_iterations=0, protocol=protocol)
        fp32 = invert(
            InversionRequest(tiny_teacher, torch.arange(4), InversionConfig(**base), progress=False), policy=policy
        )[0]
        bf16_config = InversionConfig(precision="bf16", **base)
        bf16 = invert(InversionRequest(tiny_teacher, torch.arange(4), bf16_config, progress=False), policy=policy)[0]
        assert bf16.stats.flops_total == fp32.stats.flops_total > 0
        assert bf16.images.dtype == torch.float32 and not torch.equal(bf16.images, fp32.images)
