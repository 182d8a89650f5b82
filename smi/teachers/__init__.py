"""Teachers: timm ViTs from pretrained weights, a checkpoint, training or fine-tuning.

Public API: :class:`TeacherSpec`, :class:`Recipe`, :func:`build_teacher`, :func:`save_teacher`,
:func:`load_teacher`, :func:`evaluate`, :data:`SOURCES`.
"""

from smi.teachers.build import build_teacher
from smi.teachers.spec import SOURCES, Recipe, TeacherSpec
from smi.teachers.store import load_teacher, read_metadata, save_teacher
from smi.teachers.training import evaluate, fit

__all__ = [
    "SOURCES",
    "Recipe",
    "TeacherSpec",
    "build_teacher",
    "evaluate",
    "fit",
    "load_teacher",
    "read_metadata",
    "save_teacher",
]
