"""Activation range estimators for post-training quantization.

An observer watches the floating-point activations of one quantization point while the
calibration images pass through the model, then turns what it saw into a per-tensor range:

- ``minmax`` (PSAQ-ViT, Li et al., ECCV 2022, and the paper's default): the exact minimum and
  maximum over all calibration activations;
- ``percentile``: the lower/upper percentile of the activations, clipping rare outliers;
- ``mse``: the clipped min/max range ``[a * min, a * max]`` whose fake quantization has the
  smallest mean squared error on the activations, searched over a grid of ``a``.

min/max is tracked exactly over every value. The percentile and MSE estimators work on a
bounded, deterministic subsample of the values (every value until the buffer is full, then
every other value, and so on), so the memory stays bounded on large models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from smi.errors import SMIError
from smi.quant.fake_quant import IntGrid, asymmetric_qparams, fake_quantize

RANGE_ESTIMATORS: tuple[str, ...] = ("minmax", "percentile", "mse")
# Values kept per quantization point for the percentile / MSE estimators (2^18 floats = 1 MiB).
SAMPLE_CAPACITY = 2**18
# Clipping factors searched by the MSE estimator: a in (MSE_MIN_FRACTION, 1], MSE_STEPS points.
MSE_MIN_FRACTION = 0.3
MSE_STEPS = 50


@dataclass(frozen=True)
class RangeQuantizer:
    """The arithmetic the MSE search scores a candidate range with.

    Attributes:
        qparams: ``(lo, hi) -> (scale, zero_point)``, elementwise, so that every candidate range
            of the search is converted in one call (vectors in, vectors out).
        quantize: ``(values, scale, zero_point) -> values`` fake-quantized with one scale and
            zero point.
    """

    qparams: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    quantize: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class RangeObserver:
    """Collects activation statistics of one quantization point and estimates its range.

    Args:
        estimator: One of :data:`RANGE_ESTIMATORS`.
        percentile: Upper percentile (in (50, 100]) for the ``percentile`` estimator; the lower
            end uses ``100 - percentile``.
    """

    def __init__(self, estimator: str = "minmax", percentile: float = 99.99) -> None:
        if estimator not in RANGE_ESTIMATORS:
            raise SMIError(f"unknown range estimator {estimator!r}; choose one of {list(RANGE_ESTIMATORS)}.")
        self.estimator = estimator
        self.percentile = float(percentile)
        self.lo: torch.Tensor | None = None
        self.hi: torch.Tensor | None = None
        self.count = 0
        self._sample: torch.Tensor | None = None
        self._stride = 1

    def observe(self, x: torch.Tensor) -> None:
        """Record a batch of activations (any shape)."""
        flat = x.detach().float().reshape(-1)
        if flat.numel() == 0:
            return
        self._update_min_max(flat.min(), flat.max())
        self.count += flat.numel()
        if self.estimator != "minmax":
            self._keep(flat)

    def _update_min_max(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        self.lo = lo if self.lo is None else torch.minimum(self.lo, lo)
        self.hi = hi if self.hi is None else torch.maximum(self.hi, hi)

    def _keep(self, flat: torch.Tensor) -> None:
        """Append a strided subsample of ``flat``; halve the buffer whenever it overflows."""
        part = flat[:: self._stride].cpu()
        self._sample = part if self._sample is None else torch.cat([self._sample, part])
        while self._sample.numel() > SAMPLE_CAPACITY:
            self._sample = self._sample[::2]
            self._stride *= 2

    def range(self, grid: IntGrid, quantizer: RangeQuantizer | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The estimated range ``(lo, hi)`` for quantization onto ``grid``.

        Args:
            grid: The activation grid (the suite's asymmetric arithmetic).
            quantizer: Replaces the suite's arithmetic in the MSE search (the official protocol
                passes its own map); ``grid`` is then unused.

        Raises:
            SMIError: If no activation was observed.
        """
        if self.lo is None or self.hi is None:
            raise SMIError(
                "a quantization point saw no calibration data; the calibration set did not reach every "
                "layer (check that it is not empty and matches the model)."
            )
        if self.estimator == "minmax":
            return self.lo, self.hi
        assert self._sample is not None
        sample = self._sample.to(self.lo.device)
        if self.estimator == "percentile":
            q = torch.tensor([100.0 - self.percentile, self.percentile], device=sample.device) / 100.0
            lo, hi = torch.quantile(sample, q)
            return lo, hi
        if quantizer is None:
            quantizer = _suite_quantizer(grid)
        return mse_range(sample, self.lo, self.hi, quantizer)


class OfficialRangeObserver(RangeObserver):
    """The official code's running min/max, quirk included.

    PSAQ-ViT's ``QuantAct`` starts from ``x_min = x_max = 0`` and, whenever ``x_max == 0``,
    *replaces* the running range by the current batch's instead of merging them. A range whose
    maximum is exactly zero (an all-non-positive activation) is therefore forgotten at the next
    batch; with one calibration batch, as the official scripts use, this never matters.
    """

    def _update_min_max(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        if self.hi is None or float(self.hi) == 0.0:
            self.lo, self.hi = lo, hi
        else:
            self.lo, self.hi = torch.minimum(self.lo, lo), torch.maximum(self.hi, hi)


def _suite_quantizer(grid: IntGrid) -> RangeQuantizer:
    return RangeQuantizer(
        qparams=lambda lo, hi: asymmetric_qparams(lo, hi, grid),
        quantize=lambda values, scale, zero_point: fake_quantize(values, scale, zero_point, grid),
    )


def mse_range(
    sample: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, quantizer: RangeQuantizer
) -> tuple[torch.Tensor, torch.Tensor]:
    """The clipped range [a * lo, a * hi], a in [0.3, 1], with the least fake-quantization MSE on ``sample``.

    The OMSE-style search (Choukroun et al., ICCVW 2019) over :data:`MSE_STEPS` clipping
    factors; ties keep the widest range. The candidates' scales and zero points are computed
    in one elementwise call, which gives each the same bits as computing it alone.
    """
    factors = torch.linspace(1.0, MSE_MIN_FRACTION, MSE_STEPS).to(lo.device)
    los, his = lo * factors, hi * factors
    scales, zero_points = quantizer.qparams(los, his)
    best, best_err = (los[0], his[0]), float("inf")
    for i in range(MSE_STEPS):
        # Each error stays its own reduction over the whole sample, as the search defines it.
        err = float(quantizer.quantize(sample, scales[i], zero_points[i]).sub_(sample).pow_(2).mean())
        if err < best_err:
            best, best_err = (los[i], his[i]), err
    return best
