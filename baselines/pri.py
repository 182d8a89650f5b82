"""``pri``: Patch Rebirth Inversion (Heo & Choi, arXiv 2509.23235).

Implemented from the paper's description (no public code exists). With division factor ``v``
and ``T`` iterations, after iterations ``k * floor(T / v)`` (k = 1 .. v-1) the most important
still-active patches - ranked by the last block's CLS attention, averaged over heads, as in
SMI - are *detached*: they are saved as one sparse output image of the trajectory, with the
trajectory's label, and leave the forward and backward pass for good, while the remaining
patches keep being optimised. The loop itself emits the last remaining set after iteration
``T`` (k = v), so one trajectory yields ``v`` non-overlapping sparse images that together
cover the patch grid (v = 2, 4, 7 give 50 / 75 / 86 % sparsity per image).

When ``T`` is not a multiple of ``v`` the last segment runs ``T - (v-1) * floor(T / v)``
iterations (the remainder goes to the last image). When the grid's ``N`` patches are not a
multiple of ``v``, image k gets ``floor(k N / v) - floor((k-1) N / v)`` patches: sizes differ
by at most one, the later images get the extra patches, and the sizes sum to exactly ``N``.
Speed is compared per output image (``outputs_per_trajectory() == v``).
"""

from __future__ import annotations

from dataclasses import dataclass

from smi.errors import SMIError
from smi.inversion import InversionResult, invert
from smi.inversion.policies import PatchPolicy, PolicyStep, keep_top
from smi.methods.registry import InversionMethod, InversionRequest, register_method
from smi.sparse_vit import TokenSubsetViT

#: The paper's default division factor (75 % sparsity per image).
DEFAULT_DIVISION = 4


def emission_sizes(num_patches: int, division: int) -> list[int]:
    """Patches in each of the ``division`` images of a trajectory (balanced, summing to N).

    Example:
        >>> emission_sizes(64, 7)
        [9, 9, 9, 9, 9, 9, 10]
    """
    bounds = [k * num_patches // division for k in range(division + 1)]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def emission_iterations(total_iterations: int, division: int) -> tuple[int, ...]:
    """0-based iterations after which images 1 .. v-1 are detached (image v is the final set).

    Raises:
        SMIError: If the run is too short to give every image at least one iteration.
    """
    segment = total_iterations // division
    if segment < 1:
        raise SMIError(
            f"PRI with division {division} needs at least {division} iterations, got {total_iterations}; "
            "raise the iteration budget or lower 'division'."
        )
    return tuple(k * segment - 1 for k in range(1, division))


class PatchRebirth(PatchPolicy):
    """Detach the top-attention active patches as an output image every ``floor(T / v)`` iterations.

    Args:
        division: ``v``, the number of sparse images per trajectory.
    """

    needs_attention = True

    def __init__(self, division: int) -> None:
        self.division = division
        self._steps: tuple[int, ...] = ()

    def decision_iterations(self, total_iterations: int) -> tuple[int, ...]:
        self._steps = emission_iterations(total_iterations, self.division)
        return self._steps

    def decide(self, iteration, active, scores, generator) -> PolicyStep:
        assert scores is not None, "PatchRebirth needs attention scores"
        k = self._steps.index(iteration)  # 0-based index of the image being detached
        size = emission_sizes(active.shape[1], self.division)[k]
        emit = keep_top(active, scores, size)
        return PolicyStep(active & ~emit, emit)


@dataclass(frozen=True)
class PRIParams:
    """Parameters of PRI.

    Attributes:
        division: ``v``: sparse images per trajectory (paper: 2, 4 or 7).
    """

    division: int = DEFAULT_DIVISION

    def __post_init__(self) -> None:
        if int(self.division) != self.division or self.division < 2:
            raise SMIError(f"PRI division must be an integer >= 2 (paper: 2, 4, 7), got {self.division}.")


@register_method("pri")
class PatchRebirthInversion(InversionMethod):
    """PRI: each trajectory yields `division` disjoint sparse images, most-attended patches first."""

    Params = PRIParams

    def outputs_per_trajectory(self) -> int:
        return self.params.division

    def invert(self, request: InversionRequest) -> list[InversionResult]:
        n = TokenSubsetViT(request.teacher.model).num_patches
        if self.params.division > n:
            raise SMIError(f"PRI division {self.params.division} exceeds the teacher's {n} patches; lower 'division'.")
        return invert(request, policy=PatchRebirth(self.params.division))
