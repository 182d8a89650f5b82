"""Shared fixtures: tiny timm ViTs that run in milliseconds on a CPU."""

from __future__ import annotations

import pytest
import torch

from smi.types import Teacher
from tests.tiny import make_teacher, make_tiny_vit


@pytest.fixture
def tiny_vit() -> torch.nn.Module:
    return make_tiny_vit()


@pytest.fixture
def tiny_teacher(tiny_vit) -> Teacher:
    return make_teacher(tiny_vit)
