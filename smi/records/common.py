"""What every metrics record shares: its kind, the keys about its teacher, and how it is built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

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


def teacher_keys(
    kind: str, teacher: Any, teacher_id: str, seed: int | None, *, dataset: str | None = None
) -> dict[str, Any]:
    """The keys a record shares with every other record about ``teacher`` (all but provenance).

    Args:
        kind: One of :data:`KINDS`.
        teacher: A :class:`smi.types.Teacher`.
        teacher_id: The teacher's id in the run (``--teacher-id``).
        seed: The job's seed (``None`` where the job has none).
        dataset: The dataset the job evaluates on, where it names one (an evaluator's
            ``--dataset-spec``); by default the teacher's own.

    Raises:
        ValueError: For a kind not in :data:`KINDS`.
    """
    if kind not in KIND_COMMANDS:
        raise ValueError(f"unknown record kind {kind!r}; add it to smi.records.KIND_COMMANDS")
    return {
        "kind": kind,
        "dataset": teacher.dataset if dataset is None else dataset,
        "teacher": teacher_id,
        "teacher_seed": teacher.metadata.get("seed"),
        "model_name": teacher.model_name,
        "seed": seed,
    }


def combine(*parts: Mapping[str, Any]) -> dict[str, Any]:
    """One record from its parts (teacher keys, the kind's figures, an evaluator's result, ...).

    Raises:
        ValueError: For a key given by two parts: the later would silently hide the earlier.
    """
    record: dict[str, Any] = {}
    for part in parts:
        clash = sorted(record.keys() & part.keys())
        if clash:
            raise ValueError(f"record key(s) {clash} given twice; each key of a record has one producer")
        record.update(part)
    return record


@dataclass
class Figures:
    """The kind-specific part of a record: a subclass per kind, whose attributes are its keys.

    :meth:`record` is the kind's one builder: the teacher keys, these figures, provenance.
    """

    #: The record kind (one of :data:`KINDS`).
    KIND: ClassVar[str]
    #: Teacher keys the kind's records leave out.
    OMITS: ClassVar[tuple[str, ...]] = ()
    #: Mapping attributes (another package's figures) whose keys the record takes at top level.
    SPREAD: ClassVar[tuple[str, ...]] = ()

    def as_keys(self) -> dict[str, Any]:
        """The record's keys of this part: one per attribute, the :attr:`SPREAD` mappings' keys at top level.

        Raises:
            ValueError: For a key given twice (see :func:`combine`).
        """
        own = {name: value for name, value in asdict(self).items() if name not in self.SPREAD}
        return combine(own, *(getattr(self, name) for name in self.SPREAD))

    def record(
        self, teacher: Any, teacher_id: str, seed: int | None, provenance: dict[str, Any], dataset: str | None = None
    ) -> dict[str, Any]:
        """The whole record.

        Args:
            teacher: The :class:`smi.types.Teacher` the record is about.
            teacher_id: The teacher's id in the run.
            seed: The job's seed (``None`` where the job has none).
            provenance: :func:`smi.io.provenance` of the job.
            dataset: The dataset the job evaluates on, where it names one (default: the teacher's).

        Raises:
            ValueError: For a key given twice (see :func:`combine`).
        """
        keys = teacher_keys(self.KIND, teacher, teacher_id, seed, dataset=dataset)
        for key in self.OMITS:
            del keys[key]
        return combine(keys, self.as_keys(), {"provenance": provenance})
