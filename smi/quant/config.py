"""Configuration of post-training quantization (bit-widths, range estimator, calibration)."""

from __future__ import annotations

from dataclasses import dataclass

from smi.errors import SMIError
from smi.quant.fake_quant import check_bits
from smi.quant.observers import RANGE_ESTIMATORS

# PSAQ-ViT and SMI calibrate on 32 images.
PAPER_CALIB_SIZE = 32
#: ``official``: the quantizer of the official PSAQ-ViT / SMI code; ``suite``: the suite's own
#: (docs/protocols.md lists every difference).
PROTOCOLS: tuple[str, ...] = ("official", "suite")
DEFAULT_PROTOCOL = "suite"


@dataclass(frozen=True)
class QuantConfig:
    """How a ViT is fake-quantized and calibrated.

    Attributes:
        w_bits: Weight bit-width (per-output-channel symmetric min/max), 2..16.
        a_bits: Activation bit-width (per-tensor asymmetric, calibrated), 2..16.
        range_estimator: Activation range estimator: ``minmax`` (paper), ``percentile`` or ``mse``.
        percentile: Upper percentile of the ``percentile`` estimator (lower = 100 - it).
        calib_size: Number of calibration images drawn (seeded) from the calibration set.
        calib_batch_size: Images per calibration forward (ranges do not depend on it).
        eval_batch_size: Images per forward when evaluating on the test split.
        protocol: ``suite`` (default) or ``official`` (the official code's quantization points,
            grids, calibration order and image preprocessing; see :mod:`smi.quant.official`).
    """

    w_bits: int = 8
    a_bits: int = 8
    range_estimator: str = "minmax"
    percentile: float = 99.99
    calib_size: int = PAPER_CALIB_SIZE
    calib_batch_size: int = 32
    eval_batch_size: int = 256
    protocol: str = DEFAULT_PROTOCOL

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise SMIError(f"unknown quantization protocol {self.protocol!r}; choose one of {list(PROTOCOLS)}.")
        object.__setattr__(self, "w_bits", check_bits(self.w_bits, "w_bits"))
        object.__setattr__(self, "a_bits", check_bits(self.a_bits, "a_bits"))
        if self.range_estimator not in RANGE_ESTIMATORS:
            raise SMIError(f"unknown range_estimator {self.range_estimator!r}; choose one of {list(RANGE_ESTIMATORS)}.")
        if not 50.0 < float(self.percentile) <= 100.0:
            raise SMIError(f"percentile = {self.percentile} must lie in (50, 100], for example 99.99.")
        for name in ("calib_size", "calib_batch_size", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise SMIError(f"{name} = {getattr(self, name)} must be at least 1.")
