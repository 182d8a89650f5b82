"""Checks of the teachers and students: the timm model builds a supported ViT, weights files exist.

Models are built on the meta device: no memory, no weights.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smi.errors import SMIError
from smi.validate.schema import at_key


def check_teacher(
    teacher_id: str, entry: Mapping[str, Any], recipe_override: Mapping[str, Any] | None, check_machine: bool
) -> dict[str, Any]:
    """Check a teacher spec; returns the ``img_size``/``patch_size`` a student inherits."""
    from smi.teachers import TeacherSpec

    key = f"teachers.{teacher_id}"
    values = {k: v for k, v in entry.items() if v is not None and v != {}}
    if recipe_override:
        values["recipe"] = {**(values.get("recipe") or {}), **recipe_override}
    try:
        spec = TeacherSpec.from_config(values)
    except SMIError as exc:
        raise at_key(key, exc) from None
    for name in ("checkpoint", "pretrained_file"):
        path = getattr(spec, name)
        if check_machine and path and not Path(os.path.expanduser(path)).is_file():
            raise SMIError(f"{key}.{name}: file {path} does not exist; give the path of the weights file.")
    try:
        model = _build(spec.model, spec.model_kwargs)
    except SMIError as exc:
        raise at_key(f"{key}.model", exc) from None
    embed = model.patch_embed
    return {"img_size": tuple(embed.img_size), "patch_size": tuple(embed.patch_size)}


def check_distillation(section: Mapping[str, Any], teacher_kwargs: Mapping[str, Any], check_machine: bool) -> None:
    """Check the distillation recipe and each student, built on the teacher's ``teacher_kwargs`` grid."""
    from smi.config import from_dict
    from smi.distill.config import DEFAULT_PROTOCOL, StudentSpec, parse_recipe

    try:
        parse_recipe(section.get("protocol", DEFAULT_PROTOCOL), section.get("recipe", {}))
    except SMIError as exc:
        raise at_key("distillation.recipe", exc) from None
    for student_id, values in section.get("students", {}).items():
        key = f"distillation.students.{student_id}"
        try:
            # `pretrain` is the workflow's (pretrain.smk): the job gets the spec without it.
            spec = from_dict(StudentSpec, {k: v for k, v in values.items() if k != "pretrain"}, "the student spec")
            _build(spec.model, {**teacher_kwargs, **spec.model_kwargs})
        except SMIError as exc:
            raise at_key(key, exc) from None
        if check_machine and spec.checkpoint and not Path(os.path.expanduser(spec.checkpoint)).is_file():
            raise SMIError(
                f"{key}.checkpoint: file {spec.checkpoint} does not exist; give the path of the weights file."
            )


def _build(name: str, kwargs: Mapping[str, Any]) -> Any:
    """Build timm model ``name`` on the meta device (no memory, no weights) and check it is a supported ViT."""
    import torch

    from smi.teachers.models import create

    try:
        with torch.device("meta"):
            return create(name, 1, kwargs)
    except SMIError:
        raise
    except Exception as exc:  # timm asserts on inconsistent sizes (e.g. embed_dim vs num_heads)
        raise SMIError(
            f"timm cannot build '{name}' with model_kwargs {dict(kwargs)}: {type(exc).__name__}: {str(exc)[:160]}."
        ) from None
