"""Student networks for knowledge transfer from a teacher's synthetic images.

Two kinds: a timm ViT trained from scratch, or a pretrained ViT whose classifier is replaced for
the teacher's classes and then fine-tuned fully or linearly (head only). The official SMI code
(Hu et al., ICML 2024) uses the second, linearly, with the teacher's architecture
(:mod:`smi.distill.official`). Either student runs on the teacher's patch
grid, so the synthetic images' keep masks apply to it unchanged.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn

from smi.distill.config import StudentSpec
from smi.errors import SMIError
from smi.sparse_vit import TokenSubsetViT, check_vit
from smi.types import Teacher


def student_kwargs(spec: StudentSpec, teacher: Teacher) -> dict[str, Any]:
    """The student's timm kwargs, with ``img_size`` / ``patch_size`` defaulting to the teacher's."""
    kwargs = dict(spec.model_kwargs)
    kwargs.setdefault("img_size", tuple(teacher.input_size[1:]))
    kwargs.setdefault("patch_size", tuple(teacher.model.patch_embed.patch_size))
    return kwargs


def build_student(spec: StudentSpec, teacher: Teacher, seed: int, device: torch.device | str) -> nn.Module:
    """Create the student for ``teacher``'s classes, seeded, in train mode on ``device``.

    With ``spec.train == 'linear'`` only the classifier head requires gradients.

    Raises:
        SMIError: Unknown model, missing or unreadable checkpoint, offline without cached pretrained
            weights, or a patch grid other than the teacher's.
    """
    kwargs = student_kwargs(spec, teacher)
    torch.manual_seed(seed)
    if spec.init == "scratch":
        try:
            model = timm.create_model(spec.model, pretrained=False, num_classes=teacher.num_classes, **kwargs)
        except (RuntimeError, TypeError, ValueError) as exc:  # timm: unknown name or bad kwargs
            raise SMIError(f"cannot create student {spec.model!r} with {kwargs}: {exc}") from exc
    else:
        model = _pretrained_student(spec, teacher.num_classes, kwargs)
    check_vit(model)
    student_grid = TokenSubsetViT(model).grid_size
    teacher_grid = TokenSubsetViT(teacher.model).grid_size
    if student_grid != teacher_grid:
        raise SMIError(
            f"the student's patch grid {student_grid} differs from the teacher's {teacher_grid}; the keep masks of "
            "sparse images are defined on the teacher's grid: give the student the teacher's img_size and patch_size."
        )
    if spec.train == "linear":
        head = model.get_classifier()
        for p in model.parameters():
            p.requires_grad_(False)
        for p in head.parameters():
            p.requires_grad_(True)
    return model.to(device).train()


def _pretrained_student(spec: StudentSpec, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    """A pretrained student with a new head: from its checkpoint file, else timm's cache or hub."""
    import os

    from smi.teachers import hub
    from smi.teachers.models import create_from_checkpoint, create_pretrained

    if spec.checkpoint is None:  # init 'pretrained' without a local file (validated by StudentSpec)
        return create_pretrained(spec.model, num_classes, kwargs, None)
    if not os.path.isfile(spec.checkpoint):
        if spec.init == "pretrained":
            raise hub.missing_file_error(spec.checkpoint, spec.model)
        raise SMIError(
            f"student checkpoint {spec.checkpoint} does not exist; give in 'checkpoint' the path of a "
            "teacher file of this suite or of a timm checkpoint, or use init 'pretrained'."
        )
    return create_from_checkpoint(spec.model, num_classes, kwargs, spec.checkpoint, replace_head=True)
