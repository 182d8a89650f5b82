"""The metrics records the workflow's jobs write: their kinds, keys and builders.

Every job writes one JSON record; :mod:`smi.report.aggregate` flattens them into
``summary.csv``, which the tables and figures read. This package is the contract between the
two sides:

- :mod:`~smi.records.common`: :data:`KINDS` (each with the command that writes it),
  :data:`COMMON_KEYS` (the keys every record about a teacher carries, :func:`teacher_keys`),
  :func:`combine`, which refuses a key given twice, and :class:`Figures`, the kind-specific
  part of a record, whose :meth:`~Figures.record` builds the whole record;
- :mod:`~smi.records.inversion`: :class:`InversionCosts` and :func:`inversion_record`, used by
  ``smi invert`` (through :func:`smi.methods.synthesize`) and ``smi run-external`` alike;
- :mod:`~smi.records.teacher`: :class:`TeacherBuild` (``teacher``, ``smi train-teacher``) and
  :class:`TeacherEvaluation` (``teacher_eval``, ``smi eval-teacher``);
- :mod:`~smi.records.evaluators`: :class:`Quantization`, :class:`SuiteDistillation` and
  :class:`OfficialDistillation` (``distillation``), :class:`Foreground`.
"""

from smi.records.common import COMMON_KEYS, JOB_TIME_PROTOCOL, KIND_COMMANDS, KINDS, Figures, combine, teacher_keys
from smi.records.evaluators import (
    FOREGROUND_KEYS,
    PTQ_KEYS,
    SALIENCY_KEYS,
    Distillation,
    Foreground,
    OfficialDistillation,
    Quantization,
    SuiteDistillation,
)
from smi.records.inversion import InversionCosts, inversion_record, mean_kept_patches
from smi.records.teacher import TRAINING_KEYS, TeacherBuild, TeacherEvaluation

__all__ = [
    "COMMON_KEYS",
    "FOREGROUND_KEYS",
    "JOB_TIME_PROTOCOL",
    "KINDS",
    "KIND_COMMANDS",
    "PTQ_KEYS",
    "SALIENCY_KEYS",
    "TRAINING_KEYS",
    "Distillation",
    "Figures",
    "Foreground",
    "InversionCosts",
    "OfficialDistillation",
    "Quantization",
    "SuiteDistillation",
    "TeacherBuild",
    "TeacherEvaluation",
    "combine",
    "inversion_record",
    "mean_kept_patches",
    "teacher_keys",
]
