"""The metrics records the workflow's jobs write: their kinds, shared keys and builders.

Every job writes one JSON record; :mod:`smi.report.aggregate` flattens them into
``summary.csv``, which the tables and figures read. This module is the contract between the
two sides:

- :data:`KINDS`, the record kinds, each with the command that writes it;
- :data:`COMMON_KEYS`, the keys every record about a teacher carries (:func:`teacher_keys`);
- :class:`InversionCosts` and :func:`inversion_record`, the one builder of ``inversion``
  records, used by ``smi invert`` (suite methods, through :func:`smi.methods.synthesize`) and by
  ``smi run-external`` (external methods), so both write the same keys;
- :func:`mean_kept_patches`, the ``final_kept_patches`` figure of an image set.

Kind-specific keys beyond these are listed in the command that writes the record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

#: Record kind -> the ``smi`` command that writes it.
KIND_COMMANDS: dict[str, str] = {
    "teacher": "train-teacher",
    "teacher_eval": "eval-teacher",
    "inversion": "invert, run-external",
    "quantization": "quantize",
    "distillation": "distill",
    "foreground": "foreground",
    "timing": "time-inversions",
    "testbed": "testbed",
    "pretrain": "pretrain-student",
}
KINDS: tuple[str, ...] = tuple(KIND_COMMANDS)
#: Keys every record about one teacher carries (see :func:`teacher_keys`), plus ``provenance``.
COMMON_KEYS: tuple[str, ...] = ("kind", "dataset", "teacher", "teacher_seed", "model_name", "seed", "provenance")
#: ``time_protocol`` of a job that timed itself beside other jobs (not used for speed-ups).
JOB_TIME_PROTOCOL = "job"


def teacher_keys(kind: str, teacher: Any, teacher_id: str, seed: int | None) -> dict[str, Any]:
    """The keys a record shares with every other record about ``teacher`` (all but provenance).

    Args:
        kind: One of :data:`KINDS`.
        teacher: A :class:`smi.types.Teacher`.
        teacher_id: The teacher's id in the run (``--teacher-id``).
        seed: The job's seed (``None`` where the job has none).
    """
    if kind not in KIND_COMMANDS:
        raise ValueError(f"unknown record kind {kind!r}; add it to smi.records.KIND_COMMANDS")
    return {
        "kind": kind,
        "dataset": teacher.dataset,
        "teacher": teacher_id,
        "teacher_seed": teacher.metadata.get("seed"),
        "model_name": teacher.model_name,
        "seed": seed,
    }


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
    """
    return {
        **teacher_keys("inversion", teacher, teacher_id, seed),
        "image_set": image_set,
        "inversion_config": inversion_config,
        **method,
        **costs.as_keys(),
        **extra,
        # The job's own wall time: other jobs may share the machine, so it is not isolated and the
        # tables take speed-ups from `smi time-inversions` (time_protocol "interleaved") instead.
        "time_protocol": JOB_TIME_PROTOCOL,
        "config_hash": config_hash,
        "provenance": provenance,
    }
