"""The ``inversion`` record: what producing one image set cost (``smi invert``, ``smi run-external``).

:class:`InversionCosts` and :func:`inversion_record` are the one builder of ``inversion`` records,
used by ``smi invert`` (suite methods, through :func:`smi.methods.synthesize`) and by
``smi run-external`` (external methods), so both write the same keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from smi.records.common import JOB_TIME_PROTOCOL, combine, teacher_keys


def mean_kept_patches(keep_masks: torch.Tensor) -> float:
    """Mean number of kept patches per image of (M, gh, gw) keep masks."""
    return float(keep_masks.flatten(1).sum(1).float().mean())


@dataclass
class InversionCosts:
    """What producing an image set cost, as an ``inversion`` record reports it.

    ``None`` marks a figure the producer did not measure (an external command's FLOPs, memory).

    Attributes:
        num_images: Images produced (a method may overshoot the request; costs are per produced image).
        num_patches: Patches per image of the teacher.
        final_kept_patches: :func:`mean_kept_patches` of the set.
        wall_time_s: Wall time of the job's own run (not isolated from other jobs).
        flops_total: FLOPs of the whole run.
        peak_memory_bytes: Peak memory of the run.
        peak_memory_after_last_stop_bytes: Peak memory after the last stopping step.
        memory_kind: What the memory figures count (see :mod:`smi.inversion.costs`).
        batch_size: Trajectories optimised at once.
        iterations: Iterations of the run.
        active_tokens: Active patch tokens per sample at each iteration.
        loss_curve: The loss at each iteration.
        decision_iterations: Iterations at which the stopping policy decided.
    """

    num_images: int
    num_patches: int
    final_kept_patches: float
    wall_time_s: float
    flops_total: float | None
    peak_memory_bytes: int | None
    peak_memory_after_last_stop_bytes: int | None
    memory_kind: str | None
    batch_size: int | None = None
    iterations: int | None = None
    active_tokens: list[float] = field(default_factory=list)
    loss_curve: list[float] = field(default_factory=list)
    decision_iterations: list[int] = field(default_factory=list)

    def as_keys(self) -> dict[str, Any]:
        """The record's cost keys, with the per-image figures derived once here."""
        keys = asdict(self)
        keys["time_per_image_s"] = self.wall_time_s / self.num_images
        keys["gflops_per_image"] = None if self.flops_total is None else self.flops_total / self.num_images / 1e9
        return keys


def inversion_record(
    *,
    teacher: Any,
    teacher_id: str,
    seed: int,
    image_set: str,
    method: dict[str, Any],
    costs: InversionCosts,
    config_hash: str,
    provenance: dict[str, Any],
    inversion_config: dict[str, Any] | None,
    **extra: Any,
) -> dict[str, Any]:
    """The ``inversion`` record of one image set, for suite and external methods alike.

    Args:
        teacher: The inverted :class:`smi.types.Teacher`.
        teacher_id: The teacher's id in the run.
        seed: The job's seed.
        image_set: Path of the image-set file.
        method: The method's description (``method``, ``method_params``, and for a suite method
            ``method_name`` and ``protocol``).
        costs: What the run cost.
        config_hash: Hash of everything that determines the images.
        provenance: :func:`smi.io.provenance` of the job.
        inversion_config: The inversion config (``None`` for an external command).
        **extra: Kind-specific keys of the producer (``external``, ``set_teacher``, ...).

    Returns:
        The record, keys in a stable order.

    Raises:
        ValueError: For a key of ``method`` or ``extra`` that another part of the record gives.
    """
    return combine(
        teacher_keys("inversion", teacher, teacher_id, seed),
        {"image_set": image_set, "inversion_config": inversion_config},
        method,
        costs.as_keys(),
        extra,
        {
            # The job's own wall time: other jobs may share the machine, so it is not isolated and the
            # tables take speed-ups from `smi time-inversions` (time_protocol "interleaved") instead.
            "time_protocol": JOB_TIME_PROTOCOL,
            "config_hash": config_hash,
            "provenance": provenance,
        },
    )
