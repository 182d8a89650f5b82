"""Inversion methods: the registry, the core methods, and turning a method into an image set.

- :mod:`~smi.methods.registry`: :class:`InversionMethod`, :func:`register_method`,
  :func:`create_method`; methods in ``baselines`` register into it too.
- :mod:`~smi.methods.core`: ``dense``, ``smi`` and ``smi-random``, all through
  :func:`smi.inversion.invert`.
- :mod:`~smi.methods.synthesize`: batching, targets, seeds and summed costs of an image set.
"""

from smi.methods.core import DenseInversion, RandomStoppingInversion, ScheduleParams, SparseModelInversion
from smi.methods.registry import (
    PLUGIN_PACKAGES,
    InversionMethod,
    InversionRequest,
    NoParams,
    available_methods,
    create_method,
    method_class,
    register_method,
)
from smi.methods.synthesize import (
    Synthesis,
    balanced_targets,
    official_targets,
    sample_targets,
    synthesize,
    teacher_description,
)

__all__ = [
    "PLUGIN_PACKAGES",
    "DenseInversion",
    "InversionMethod",
    "InversionRequest",
    "NoParams",
    "RandomStoppingInversion",
    "ScheduleParams",
    "SparseModelInversion",
    "available_methods",
    "balanced_targets",
    "create_method",
    "method_class",
    "official_targets",
    "register_method",
    "sample_targets",
    "Synthesis",
    "synthesize",
    "teacher_description",
]
