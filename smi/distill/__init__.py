"""Data-free knowledge transfer from synthetic images (Sparse Model Inversion, Hu et al., ICML 2024).

Public API:

- :class:`StudentSpec`, :class:`DistillRecipe`: the student and the training recipe;
- :func:`distill`: train a student on an image set (kept tokens only), evaluating each epoch;
- :func:`images_for_budget`: image counts for equal inversion-compute comparisons;
- :class:`PatchAugment`: whole-patch roll / flip that keeps sparse images sparse;
- :class:`PatchErase`: whole-patch random erasing of kept patches to black.
"""

from smi.distill.augment import PatchAugment, PatchErase
from smi.distill.budget import images_for_budget
from smi.distill.config import DistillRecipe, StudentSpec
from smi.distill.student import build_student
from smi.distill.train import DistillResult, distill, kd_loss

__all__ = [
    "DistillRecipe",
    "DistillResult",
    "PatchAugment",
    "PatchErase",
    "StudentSpec",
    "build_student",
    "distill",
    "images_for_budget",
    "kd_loss",
]
