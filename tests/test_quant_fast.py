"""The cheap paths of the quantization evaluator give the reference arithmetic's bits.

Without a gradient, fake quantization runs in place and skips the clipping mask, and the MSE
range search converts all its candidate ranges in one call. Both must reproduce the reference
arithmetic bit for bit (ties at .5, clipped values, signed zeros, inf and NaN included), or
quantization results would change with the speed-up.
"""

from __future__ import annotations

import pytest
import torch

from smi.quant.fake_quant import IntGrid, asymmetric_qparams, fake_quantize, symmetric_qparams
from smi.quant.observers import MSE_MIN_FRACTION, MSE_STEPS, RangeQuantizer, mse_range
from smi.quant.official_grid import official_act_qparams, official_fake_quantize


def reference(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, grid: IntGrid) -> torch.Tensor:
    """The documented map, one out-of-place operation at a time."""
    return (torch.clamp(torch.round(x * (1.0 / scale)) + zero_point, grid.qmin, grid.qmax) - zero_point) * scale


def official_reference(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bits: int) -> torch.Tensor:
    return (torch.round(x / scale + zero_point).clamp(0, 2**bits - 1) - zero_point) * scale


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality (tells -0.0 from 0.0); NaNs must sit at the same places."""
    nan = torch.isnan(a)
    if not torch.equal(nan, torch.isnan(b)):
        return False
    return torch.equal(a.masked_fill(nan, 0).view(torch.int32), b.masked_fill(nan, 0).view(torch.int32))


def hard_values(scale: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random values at several magnitudes, exact ties (k + 0.5) * s, clipped extremes and specials."""
    k = torch.randint(-70000, 70000, (2000,), generator=generator).float()
    magnitude = 10.0 ** torch.empty(4000).uniform_(-4, 4, generator=generator)
    return torch.cat(
        [
            torch.randn(4000, generator=generator) * magnitude,
            (k + 0.5) * scale,
            k * scale,
            (k + 0.5) / (1.0 / scale),
            -torch.rand(500, generator=generator) * scale * 0.49,  # rounds to -0.0
            torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 3e38, -3e38]),
        ]
    )


@pytest.mark.parametrize("bits", range(2, 17))
def test_fast_fake_quantize_matches_reference_bit_for_bit(bits: int) -> None:
    gen = torch.Generator().manual_seed(bits)
    for grid in (IntGrid.asymmetric(bits), IntGrid.symmetric(bits)):
        for _ in range(4):
            spread = 10.0 ** float(torch.empty(()).uniform_(-3, 3, generator=gen))
            lo, hi = -torch.rand((), generator=gen) * spread, torch.rand((), generator=gen) * spread
            if grid.qmin < 0:
                scale, zero_point = symmetric_qparams(torch.maximum(-lo, hi), grid)
            else:
                scale, zero_point = asymmetric_qparams(lo, hi, grid)
            x = hard_values(scale, gen)
            expected = reference(x, scale, zero_point, grid)
            with torch.no_grad():
                fast = fake_quantize(x, scale, zero_point, grid)
                buffer = x.clone()
                inplace = fake_quantize(buffer, scale, zero_point, grid, inplace=True)
            graded = fake_quantize(x.clone().requires_grad_(), scale, zero_point, grid).detach()
            assert same_bits(fast, expected) and same_bits(graded, expected)
            assert same_bits(inplace, expected) and inplace.data_ptr() == buffer.data_ptr()


def test_fast_fake_quantize_per_channel_and_inputs_untouched() -> None:
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(24, 3, 4, 4, generator=gen) * torch.rand(24, 1, 1, 1, generator=gen) * 5
    grid = IntGrid.symmetric(4)
    scale, zero_point = symmetric_qparams(weight.abs().flatten(1).amax(1) * 0.7, grid)  # some weights clip
    scale, zero_point = scale.view(-1, 1, 1, 1), zero_point.view(-1, 1, 1, 1)
    before = weight.clone()
    with torch.no_grad():
        fast = fake_quantize(weight, scale, zero_point, grid)
    assert same_bits(weight, before)  # not in place unless asked
    assert same_bits(fast, reference(weight, scale, zero_point, grid))
    ref = torch.fake_quantize_per_channel_affine(
        weight, scale.flatten(), zero_point.flatten().int(), 0, grid.qmin, grid.qmax
    )
    assert same_bits(fast, ref)


def test_inplace_is_ignored_when_a_gradient_is_needed() -> None:
    x = torch.linspace(-2, 2, 101, requires_grad=True)
    grid = IntGrid.asymmetric(4)
    scale, zero_point = asymmetric_qparams(torch.tensor(-1.0), torch.tensor(1.0), grid)
    out = fake_quantize(x * 1.0, scale, zero_point, grid, inplace=True)
    out.sum().backward()
    assert x.grad is not None and 0 < int(x.grad.sum()) < len(x)  # straight-through, clipped values get none


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
def test_fast_official_fake_quantize_matches_reference(bits: int) -> None:
    gen = torch.Generator().manual_seed(bits)
    for _ in range(8):
        lo, hi = torch.randn((), generator=gen), torch.randn((), generator=gen).abs() * 4
        scale, zero_point = official_act_qparams(lo, hi, bits)
        x = hard_values(scale, gen)
        expected = official_reference(x, scale, zero_point, bits)
        with torch.no_grad():
            fast = official_fake_quantize(x, scale, zero_point, bits)
        graded = official_fake_quantize(x.clone().requires_grad_(), scale, zero_point, bits)
        assert graded.requires_grad
        assert same_bits(fast, expected) and same_bits(graded.detach(), expected)


def reference_mse_range(sample, lo, hi, qparams, quantize):
    """The search one candidate at a time, each range converted on its own."""
    best, best_err = (lo, hi), float("inf")
    for a in torch.linspace(1.0, MSE_MIN_FRACTION, MSE_STEPS).tolist():
        scale, zero_point = qparams(lo * a, hi * a)
        err = float((quantize(sample, scale, zero_point) - sample).pow(2).mean())
        if err < best_err:
            best, best_err = (lo * a, hi * a), err
    return best


@pytest.mark.parametrize("official", [False, True])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_vectorised_mse_search_matches_one_candidate_at_a_time(official: bool, bits: int) -> None:
    gen = torch.Generator().manual_seed(bits + 100 * official)
    grid = IntGrid.asymmetric(bits)
    if official:
        arithmetic = RangeQuantizer(
            lambda lo, hi: official_act_qparams(lo, hi, bits), lambda v, s, z: official_fake_quantize(v, s, z, bits)
        )
    else:
        arithmetic = RangeQuantizer(
            lambda lo, hi: asymmetric_qparams(lo, hi, grid), lambda v, s, z: fake_quantize(v, s, z, grid)
        )
    # Sizes that are not multiples of the vector width put candidate rows at unaligned addresses.
    for shape, size in (("gauss", 20000), ("heavy", 20011), ("positive", 4099)):
        sample = torch.randn(size, generator=gen)
        if shape == "heavy":
            sample = sample**3
        elif shape == "positive":
            sample = sample.abs() + 0.5
        lo, hi = sample.min(), sample.max()
        fast = mse_range(sample, lo, hi, arithmetic)
        slow = reference_mse_range(sample, lo, hi, arithmetic.qparams, arithmetic.quantize)
        assert all(same_bits(f.reshape(1), s.reshape(1)) for f, s in zip(fast, slow)), shape


def test_heap_setting_takes_effect_on_glibc() -> None:
    import platform

    from smi.heap import retain_freed_memory

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert retain_freed_memory()
