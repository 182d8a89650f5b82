"""The metrics records the workflow's jobs write: their kinds, keys and builders.

Every job writes one JSON record; :mod:`smi.report.aggregate` flattens them into
``summary.csv``, which the tables and figures read. This package is the contract between the
two sides, one builder per kind, each starting from :func:`teacher_keys`:

- :mod:`~smi.records.common`: :data:`KINDS` (each with the command that writes it),
  :data:`COMMON_KEYS` (the keys every record about a teacher carries, :func:`teacher_keys`) and
  :func:`combine`, which refuses a key given twice;
- :mod:`~smi.records.inversion`: :class:`InversionCosts` and :func:`inversion_record`, used by
  ``smi invert`` (through :func:`smi.methods.synthesize`) and ``smi run-external`` alike;
- :mod:`~smi.records.teacher`: :func:`teacher_record` (``smi train-teacher``) and
  :func:`teacher_eval_record` (``smi eval-teacher``);
- :mod:`~smi.records.evaluators`: :func:`quantization_record`, :func:`distillation_record`
  (both protocols) and :func:`foreground_record`.

Each builder takes the kind's figures as a dataclass whose attributes document its keys.
"""

from smi.records.common import COMMON_KEYS, JOB_TIME_PROTOCOL, KIND_COMMANDS, KINDS, combine, teacher_keys
from smi.records.evaluators import (
    FOREGROUND_KEYS,
    PTQ_KEYS,
    SALIENCY_KEYS,
    Distillation,
    Foreground,
    OfficialDistillation,
    Quantization,
    SuiteDistillation,
    distillation_record,
    foreground_record,
    quantization_record,
)
from smi.records.inversion import InversionCosts, inversion_record, mean_kept_patches
from smi.records.teacher import (
    TEACHER_EVAL_OMITS,
    TRAINING_KEYS,
    TeacherBuild,
    TeacherEvaluation,
    teacher_eval_record,
    teacher_record,
)

__all__ = [
    "COMMON_KEYS",
    "FOREGROUND_KEYS",
    "JOB_TIME_PROTOCOL",
    "KINDS",
    "KIND_COMMANDS",
    "PTQ_KEYS",
    "SALIENCY_KEYS",
    "TEACHER_EVAL_OMITS",
    "TRAINING_KEYS",
    "Distillation",
    "Foreground",
    "InversionCosts",
    "OfficialDistillation",
    "Quantization",
    "SuiteDistillation",
    "TeacherBuild",
    "TeacherEvaluation",
    "combine",
    "distillation_record",
    "foreground_record",
    "inversion_record",
    "mean_kept_patches",
    "quantization_record",
    "teacher_eval_record",
    "teacher_keys",
    "teacher_record",
]
