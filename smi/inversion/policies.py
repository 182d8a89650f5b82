"""Patch policies: which patches stay active during inversion.

A policy is consulted by the inversion loop on its *decision iterations*. It sees the current
active mask and, if it asked for them, the last-block CLS attention scores of the active
patches from that iteration's own forward pass, and returns the new active mask (effective from
the next iteration) plus, optionally, patches to emit as a finished output image now.

- :class:`NoStopping`: dense inversion (DeepInversion-style, "DMI").
- :class:`AttentionStopping`: Sparse Model Inversion (Hu et al., ICML 2024): stop the
  lowest-attention fraction of the active patches at each scheduled iteration.
- :class:`RandomStopping`: the same schedule with random scores (the selection ablation).

Under ``protocol: official`` (docs/protocols.md) the loop asks a policy for :meth:`PatchPolicy.official`,
the variant the official SMI code runs: kept counts truncated without the suite's rounding
guard, and the output keep mask re-derived after the run (:meth:`PatchPolicy.official_output_keep`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from smi.errors import SMIError
from smi.inversion.schedule import StoppingSchedule, keep_count


def official_keep_count(active: int, ratio: float) -> int:
    """Patches the official SMI code keeps: ``int(active * (1.0 - ratio))``, no rounding guard."""
    return int(active * (1.0 - ratio))


def official_output_keep_count(num_patches: int, ratios: tuple[float, ...]) -> int:
    """K of the official output keep mask: ``int((N + 1) * prod(1 - r))``, at most N.

    The official code passes the token count *with* the class token (197 for a 14x14 grid)
    and multiplies every listed ratio, so the paper schedule keeps ``int(197 * 0.7^4) = 47``
    patches in the saved images, one more than the 46 it optimised.
    """
    fraction = 1.0
    for ratio in ratios:
        fraction = fraction * (1.0 - ratio)
    return min(num_patches, int((num_patches + 1) * fraction))


@dataclass
class PolicyStep:
    """A policy's decision.

    Attributes:
        active: Bool (B, N): patches optimised from the next iteration on.
        emit: Bool (B, N) patches to save now as one output image per sample, or ``None``.
    """

    active: torch.Tensor
    emit: torch.Tensor | None = None


class PatchPolicy(ABC):
    """Decides when patches stop being optimised."""

    #: Whether decisions need the CLS attention scores (computed only on decision iterations).
    needs_attention: bool = False

    @abstractmethod
    def decision_iterations(self, total_iterations: int) -> tuple[int, ...]:
        """Iterations (0-based) after whose forward pass :meth:`decide` is called."""

    @abstractmethod
    def decide(
        self, iteration: int, active: torch.Tensor, scores: torch.Tensor | None, generator: torch.Generator
    ) -> PolicyStep:
        """Return the new active mask (and any emission).

        Args:
            iteration: The current iteration.
            active: Bool (B, N) mask of active patches; equal count per row.
            scores: Float (B, N) importance of active patches (-inf elsewhere) or ``None``.
            generator: Seeded CPU generator for random decisions.
        """

    def official(self) -> PatchPolicy:
        """The policy as the official SMI code runs it (``protocol: official``); default: itself."""
        return self

    def official_output_keep(self, num_patches: int) -> int | None:
        """K of the output mask the official code re-derives by CLS attention after the run.

        ``None`` keeps the tracked active set as the output mask: policies the official code
        has no counterpart of (random stopping, PRI) keep their own selection.
        """
        return None


def check_step(active: torch.Tensor, step: PolicyStep) -> None:
    """The invariants of a policy's decision that changes the active set (the loops rely on them).

    Args:
        active: Bool (B, N) mask before the decision.
        step: The decision; ``step.active`` differs from ``active``.

    Raises:
        SMIError: If rows keep different or zero counts, or a stopped patch would restart.
    """
    if not bool(step.active.sum(1).eq(step.active[0].sum()).all()) or not bool(step.active[0].any()):
        raise SMIError("a patch policy must keep the same, non-zero number of patches per sample")
    if bool((step.active & ~active).any()):
        raise SMIError("a patch policy may only stop patches, never restart a stopped one")


class NoStopping(PatchPolicy):
    """Dense inversion: every patch is optimised for the whole run."""

    def decision_iterations(self, total_iterations: int) -> tuple[int, ...]:
        return ()

    def decide(self, iteration, active, scores, generator) -> PolicyStep:  # pragma: no cover - never called
        return PolicyStep(active)

    def official_output_keep(self, num_patches: int) -> int | None:
        # The official code keeps min(197, 196) patches: every one, without a scoring forward.
        return num_patches


def keep_top(active: torch.Tensor, scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Mask of the ``keep`` highest-scoring active patches per row.

    Args:
        active: Bool (B, N).
        scores: Float (B, N); inactive entries are ignored.
        keep: Patches to keep per row.

    Returns:
        Bool (B, N) subset of ``active``.
    """
    masked = scores.masked_fill(~active, float("-inf"))
    top = masked.topk(keep, dim=1).indices
    return torch.zeros_like(active).scatter_(1, top, True)


class ScheduledStopping(PatchPolicy):
    """Stop the lowest-scoring fraction of the active patches at scheduled iterations."""

    def __init__(self, schedule: StoppingSchedule, official_rounding: bool = False) -> None:
        self.schedule = schedule
        self.official_rounding = official_rounding
        self._ratios = dict(zip(schedule.iterations, schedule.ratios))

    def decision_iterations(self, total_iterations: int) -> tuple[int, ...]:
        return self.schedule.within(total_iterations).iterations

    def decide(self, iteration, active, scores, generator) -> PolicyStep:
        count = int(active[0].sum())
        rule = official_keep_count if self.official_rounding else keep_count
        keep = max(1, rule(count, self._ratios[iteration]))
        return PolicyStep(keep_top(active, self.score(active, scores, generator), keep))

    def official(self) -> ScheduledStopping:
        return type(self)(self.schedule, official_rounding=True)

    @abstractmethod
    def score(self, active: torch.Tensor, scores: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        """Importance of every patch (B, N)."""


class AttentionStopping(ScheduledStopping):
    """SMI: rank active patches by the last block's CLS attention (averaged over heads)."""

    needs_attention = True

    def score(self, active, scores, generator) -> torch.Tensor:
        assert scores is not None, "AttentionStopping needs attention scores"
        return scores

    def official_output_keep(self, num_patches: int) -> int | None:
        # Every listed ratio counts, also those past the run's end (as the official code).
        return official_output_keep_count(num_patches, self.schedule.ratios)


class RandomStopping(ScheduledStopping):
    """Ablation: the same schedule as SMI with uniformly random scores."""

    def score(self, active, scores, generator) -> torch.Tensor:
        return torch.rand(active.shape, generator=generator).to(active.device)
