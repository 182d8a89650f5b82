"""Tiny timm ViTs and teachers for tests (run in milliseconds on a CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch

from smi.teachers import save_teacher
from smi.types import Teacher


def make_tiny_vit(num_classes: int = 10, img_size: int = 32, patch_size: int = 4, **kwargs) -> torch.nn.Module:
    """A small timm VisionTransformer (random weights, eval mode)."""
    torch.manual_seed(0)
    options = dict(embed_dim=48, depth=2, num_heads=3, mlp_ratio=2.0)
    options.update(kwargs)
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=img_size,
        patch_size=patch_size,
        num_classes=num_classes,
        **options,
    ).eval()


def make_teacher(model: torch.nn.Module, num_classes: int = 10, img_size: int = 32) -> Teacher:
    """Wrap a model as a Teacher with 0.5/0.5 normalisation."""
    return Teacher(
        model,
        "vit_tiny_patch16_224",
        num_classes,
        {"input_size": (3, img_size, img_size), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
        "toy",
    )


def save_digits_teacher(path: Path, model_kwargs: dict[str, Any]) -> Path:
    """Save a tiny random teacher for the digits dataset as a teacher file the CLIs load."""
    teacher = make_teacher(make_tiny_vit(**model_kwargs))
    teacher.dataset = "digits"
    teacher.metadata["model_kwargs"] = dict(model_kwargs)
    save_teacher(teacher, path, {"source": "test"})
    return path
