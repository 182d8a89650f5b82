"""Patch stopping schedules (Sparse Model Inversion, Hu et al., ICML 2024).

A schedule is a sorted list of (iteration, ratio) pairs: at each listed iteration the
lowest-scoring fraction ``ratio`` of the *still active* patches is stopped. The paper uses
iterations 50/100/200/300 with ratio 0.3, which takes a 14x14 grid from 196 patches to
137 -> 95 -> 66 -> 46.

A step at or beyond the run's iteration count is an error, not a step silently dropped: a
run labelled SMI whose stopping never happens would be dense inversion under SMI's name (and
its costs would be reported as SMI's). Iterations must be integers; ``2.5`` is refused rather
than truncated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from smi.errors import SMIError

PAPER_ITERATIONS: tuple[int, ...] = (50, 100, 200, 300)
PAPER_RATIO = 0.3
# Rounding guard: 196 * 0.7 must give 137, not 137.19999 -> 137 or 0.7 * 100 -> 69.999.
_FLOOR_EPS = 1e-9


@dataclass(frozen=True)
class StoppingSchedule:
    """When to stop patches and which fraction of the active ones.

    Attributes:
        iterations: Strictly increasing iterations (0-based) at which patches are scored.
        ratios: Fraction in (0, 1) of the remaining patches stopped at each iteration.
    """

    iterations: tuple[int, ...] = PAPER_ITERATIONS
    ratios: tuple[float, ...] = (PAPER_RATIO,) * len(PAPER_ITERATIONS)

    def __post_init__(self) -> None:
        fractional = [
            i for i in self.iterations if isinstance(i, bool) or not isinstance(i, (int, float)) or i != int(i)
        ]
        if fractional:
            raise SMIError(
                f"stopping schedule iterations {fractional} are not whole numbers; iterations count optimisation "
                "steps, e.g. [50, 100, 200, 300]."
            )
        bad_ratios = [r for r in self.ratios if isinstance(r, bool) or not isinstance(r, (int, float))]
        if bad_ratios:
            raise SMIError(
                f"stopping ratios {bad_ratios} are not numbers; a ratio is a fraction in (0, 1) such as 0.3."
            )
        its, ratios = tuple(int(i) for i in self.iterations), tuple(float(r) for r in self.ratios)
        object.__setattr__(self, "iterations", its)
        object.__setattr__(self, "ratios", ratios)
        if len(its) != len(ratios):
            raise SMIError(
                f"stopping schedule has {len(its)} iterations but {len(ratios)} ratios; give one ratio per "
                "iteration (or a single ratio for all)."
            )
        if any(b <= a for a, b in zip(its, its[1:])) or (its and its[0] < 0):
            raise SMIError(
                f"stopping schedule iterations {list(its)} must be non-negative and strictly increasing, "
                "e.g. [50, 100, 200, 300]."
            )
        bad = [r for r in ratios if not 0.0 < r < 1.0]
        if bad:
            raise SMIError(
                f"stopping ratios {bad} are outside (0, 1); a ratio is the fraction of active patches stopped."
            )

    @classmethod
    def build(
        cls, iterations: list[int] | tuple[int, ...], ratio: float | list[float] | tuple[float, ...]
    ) -> StoppingSchedule:
        """Build from iterations and one ratio (applied at every step) or one ratio per step."""
        ratios = tuple(ratio) if isinstance(ratio, (list, tuple)) else (float(ratio),) * len(iterations)
        return cls(tuple(iterations), ratios)

    def kept_counts(self, num_patches: int) -> list[int]:
        """The number of active patches after each stopping step, starting with ``num_patches``.

        Example:
            >>> StoppingSchedule().kept_counts(196)
            [196, 137, 95, 66, 46]
        """
        counts = [num_patches]
        for ratio in self.ratios:
            counts.append(keep_count(counts[-1], ratio))
        return counts

    def within(self, total_iterations: int) -> StoppingSchedule:
        """This schedule, checked to fit a run of ``total_iterations`` (iterations 0 .. total - 1).

        Raises:
            SMIError: If a step is at or beyond the last iteration (it would never happen).
        """
        late = [i for i in self.iterations if i >= total_iterations]
        if late:
            raise SMIError(
                f"stopping schedule steps {late} are at or beyond the run's {total_iterations} iterations (0 .. "
                f"{total_iterations - 1}), so they would never happen; raise the iterations or give a schedule "
                f"below {total_iterations}."
            )
        return self

    def scaled(self, factor: float) -> StoppingSchedule:
        """The schedule with iterations multiplied by ``factor`` (a compressed run), kept distinct."""
        its: list[int] = []
        for it in self.iterations:
            value = max(int(round(it * factor)), its[-1] + 1 if its else 0)
            its.append(value)
        return StoppingSchedule(tuple(its), self.ratios)


def keep_count(active: int, ratio: float) -> int:
    """Patches kept when ``ratio`` of ``active`` are stopped (at least one is always kept)."""
    return max(1, int(math.floor(active * (1.0 - ratio) + _FLOOR_EPS)))


def active_tokens_per_iteration(schedule: StoppingSchedule, num_patches: int, total_iterations: int) -> list[int]:
    """Active patch count at every iteration of a run (stopping takes effect after the step).

    Scores come from the forward pass of the scoring iteration itself, so that iteration
    still runs on the previous count and the new count applies from the next one.
    """
    counts = schedule.kept_counts(num_patches)
    out, step = [], 0
    for t in range(total_iterations):
        out.append(counts[step])
        if step < len(schedule.iterations) and t == schedule.iterations[step]:
            step += 1
    return out
