"""The core methods: dense inversion and Sparse Model Inversion.

- ``dense``: DeepInversion-style dense model inversion ("DMI", Yin et al., CVPR 2020, without
  the BatchNorm prior), every patch optimised for every iteration.
- ``smi``: Sparse Model Inversion (Hu et al., ICML 2024): the same loop with the patch stopping
  schedule scored by the last block's CLS attention.
- ``smi-random``: the selection ablation, the same schedule with random scores.
"""

from __future__ import annotations

from dataclasses import dataclass

from smi.inversion import InversionResult, invert
from smi.inversion.policies import AttentionStopping, RandomStopping
from smi.inversion.schedule import PAPER_ITERATIONS, PAPER_RATIO, StoppingSchedule
from smi.methods.registry import InversionMethod, InversionRequest, register_method


@register_method("dense")
class DenseInversion(InversionMethod):
    """Dense inversion: no patch is ever stopped."""

    def invert(self, request: InversionRequest) -> list[InversionResult]:
        return invert(request)


@dataclass(frozen=True)
class ScheduleParams:
    """Stopping schedule: iterations and one ratio (or one per iteration).

    Attributes:
        iterations: Iterations at which patches are stopped (paper: 50, 100, 200, 300).
        ratio: Fraction of the active patches stopped at each (paper: 0.3).
    """

    iterations: tuple[int, ...] = PAPER_ITERATIONS
    ratio: float | tuple[float, ...] = PAPER_RATIO

    def schedule(self) -> StoppingSchedule:
        return StoppingSchedule.build(self.iterations, self.ratio)

    def __post_init__(self) -> None:
        self.schedule()  # validate early, with the schedule's own error messages


@register_method("smi")
class SparseModelInversion(InversionMethod):
    """SMI: stop the lowest CLS-attention patches on the schedule."""

    Params = ScheduleParams

    def invert(self, request: InversionRequest) -> list[InversionResult]:
        return invert(request, policy=AttentionStopping(self.params.schedule()))


@register_method("smi-random")
class RandomStoppingInversion(InversionMethod):
    """Ablation: SMI's schedule with random patch scores."""

    Params = ScheduleParams

    def invert(self, request: InversionRequest) -> list[InversionResult]:
        return invert(request, policy=RandomStopping(self.params.schedule()))
