"""What one run of the inversion loop takes and returns.

- :class:`InversionRequest`: one batch to invert (teacher, targets, budget, seed, device); the
  same object a registered method gets (:mod:`smi.methods.registry`) and hands to
  :func:`smi.inversion.invert`.
- :class:`LossTerm`: an extra per-sample loss observed through forward hooks (PSAQ-ViT's).
- :class:`InversionStats`, :class:`InversionResult`: the images of one emission and the run's costs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from smi.inversion.config import InversionConfig
from smi.sparse_vit import TokenSubsetViT
from smi.types import SparseImages, Teacher


@dataclass
class InversionRequest:
    """Everything a method gets for one batch.

    Attributes:
        teacher: The model to invert.
        targets: (B,) labels of the batch (one per optimised sample / trajectory).
        config: Budget and optimiser settings.
        seed: Seed of this batch.
        device: Compute device.
        dataset_spec: The teacher's dataset, for sources that need real data (else ``None``).
        progress: Show a progress bar.
    """

    teacher: Teacher
    targets: torch.Tensor
    config: InversionConfig
    seed: int = 0
    device: torch.device | str = "cpu"
    dataset_spec: Any = None
    progress: bool = True


class LossTerm(Protocol):
    """An extra per-sample loss computed from what the model does in a forward pass.

    Methods like PSAQ-ViT add a loss on intermediate features; they observe the model through
    forward hooks while ``watch`` is active and return the per-sample loss afterwards.
    """

    def watch(self, vit: TokenSubsetViT) -> contextlib.AbstractContextManager[None]:
        """Context in which the term records what it needs from the forward pass."""

    def loss(self) -> torch.Tensor:
        """Per-sample loss (B,) from the last watched forward pass."""


@dataclass
class InversionStats:
    """Measured cost of a run (protocol: :mod:`smi.inversion.costs`)."""

    wall_time_s: float
    iterations: int
    batch_size: int
    num_patches: int
    active_tokens: list[int]
    flops_total: int
    flops_by_tokens: dict[int, int]
    peak_memory_bytes: int
    peak_memory_after_last_stop_bytes: int
    memory_kind: str
    loss_curve: list[float]
    decision_iterations: list[int]


@dataclass
class InversionResult(SparseImages):
    """Output images, keep masks and targets of one batch, with the run's costs.

    Attributes:
        stats: Costs of the run.
    """

    stats: InversionStats
