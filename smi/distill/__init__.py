"""Data-free knowledge transfer from synthetic images (Sparse Model Inversion, Hu et al., ICML 2024).

Public API:

- :class:`StudentSpec`, :class:`DistillRecipe`: the student and the training recipe;
- :func:`distill`: train a student on an image set (kept tokens only), evaluating each epoch
  (protocol ``suite``);
- :func:`distill_official`: the official SMI code's protocol (growing pool, one step per epoch,
  linear probe), resumable; :class:`OfficialRecipe` its recipe, :func:`parse_recipe` either recipe;
- :func:`images_for_budget`: image counts for equal inversion-compute comparisons;
- :class:`PatchAugment`: whole-patch roll / flip that keeps sparse images sparse;
- :class:`PatchErase`: whole-patch random erasing of kept patches to black.
"""

from smi.distill.augment import PatchAugment, PatchErase
from smi.distill.budget import images_for_budget
from smi.distill.config import PROTOCOLS, DistillRecipe, OfficialRecipe, StudentSpec, parse_recipe
from smi.distill.official import OfficialResult, distill_official
from smi.distill.student import build_student
from smi.distill.train import DistillResult, distill, kd_loss

__all__ = [
    "DistillRecipe",
    "DistillResult",
    "OfficialRecipe",
    "OfficialResult",
    "PROTOCOLS",
    "PatchAugment",
    "PatchErase",
    "StudentSpec",
    "build_student",
    "distill",
    "distill_official",
    "images_for_budget",
    "kd_loss",
    "parse_recipe",
]
