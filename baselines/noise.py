"""``noise``: Gaussian-noise images, the lower reference of data-free calibration.

Post-training quantization papers on ViTs (e.g. PSAQ-ViT, Li et al., ECCV 2022) report
calibration on Gaussian noise as the floor a synthetic-data method must beat. Here "Gaussian
noise" means exactly the inversion loop's starting point: every pixel drawn from N(0, 1) (or
N(0, ``std``^2)) **in the teacher's normalised input space**, clipped to the valid range
``[(0 - mean) / std, (1 - mean) / std]`` per channel, then mapped to pixel space
``x * std + mean`` in [0, 1]. With ImageNet statistics most of the mass is clipped at 0 or 1
in pixel space; that is intended, it is what dense inversion starts from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from baselines._reference import reference_result
from smi.errors import SMIError
from smi.inversion import InversionResult
from smi.registry import InversionMethod, InversionRequest, register_method


@dataclass(frozen=True)
class NoiseParams:
    """Parameters of the noise source.

    Attributes:
        std: Standard deviation of the noise in the teacher's normalised space (default 1,
            the inversion initialisation).
    """

    std: float = 1.0

    def __post_init__(self) -> None:
        if not self.std > 0:
            raise SMIError(f"noise std must be > 0, got {self.std}.")


@register_method("noise")
class GaussianNoise(InversionMethod):
    """Gaussian noise N(0, std^2) in the teacher's normalised space, clipped, returned in pixel space."""

    Params = NoiseParams
    synthesizes = False

    def invert(self, request: InversionRequest) -> list[InversionResult]:
        start = time.perf_counter()
        teacher = request.teacher
        generator = torch.Generator().manual_seed(request.seed)
        b = int(request.targets.shape[0])
        noise = torch.randn((b, *teacher.input_size), generator=generator) * self.params.std
        mean, std = teacher.mean_std("cpu")
        lower, upper = (0 - mean) / std, (1 - mean) / std
        images = teacher.denormalize(torch.maximum(torch.minimum(noise, upper), lower)).clamp(0, 1)
        return [reference_result(images, request.targets, teacher, time.perf_counter() - start)]
