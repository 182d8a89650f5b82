"""``noise``: Gaussian-noise images, the lower reference of data-free calibration.

Post-training quantization papers on ViTs (e.g. PSAQ-ViT, Li et al., ECCV 2022) report
calibration on Gaussian noise as the floor a synthetic-data method must beat. Every pixel is
drawn from N(0, 1) (or N(0, ``std``^2)) **in the teacher's normalised input space** and mapped
to pixel space ``x * std + mean``. Two protocols:

- ``suite`` (default): the noise is clipped to the valid range ``[(0 - mean) / std,
  (1 - mean) / std]`` per channel first, so the images lie in [0, 1]: exactly the inversion
  loop's starting point. With ImageNet statistics most of the mass is clipped at 0 or 1 in
  pixel space;
- ``official``: unclipped, as the official PSAQ-ViT and SMI scripts calibrate on
  ``torch.randn`` fed straight to the model. The stored pixels then leave [0, 1]; the
  ``official`` quantization protocol normalises them back without clipping (docs/protocols.md).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from baselines._reference import reference_result
from smi.errors import SMIError
from smi.inversion import InversionResult
from smi.methods.registry import InversionMethod, InversionRequest, register_method

NOISE_PROTOCOLS: tuple[str, ...] = ("official", "suite")


@dataclass(frozen=True)
class NoiseParams:
    """Parameters of the noise source.

    Attributes:
        std: Standard deviation of the noise in the teacher's normalised space (default 1,
            the inversion initialisation).
        protocol: ``suite`` (clipped to valid pixels) or ``official`` (unclipped N(0, std^2)).
    """

    std: float = 1.0
    protocol: str = "suite"

    def __post_init__(self) -> None:
        if not self.std > 0:
            raise SMIError(f"noise std must be > 0, got {self.std}.")
        if self.protocol not in NOISE_PROTOCOLS:
            raise SMIError(f"noise protocol must be one of {list(NOISE_PROTOCOLS)}, got {self.protocol!r}.")


@register_method("noise")
class GaussianNoise(InversionMethod):
    """Gaussian noise N(0, std^2) in the teacher's normalised space, returned in pixel space."""

    Params = NoiseParams
    synthesizes = False

    def invert(self, request: InversionRequest) -> list[InversionResult]:
        start = time.perf_counter()
        teacher = request.teacher
        generator = torch.Generator().manual_seed(request.seed)
        b = int(request.targets.shape[0])
        noise = torch.randn((b, *teacher.input_size), generator=generator) * self.params.std
        if self.params.protocol == "official":
            images = teacher.denormalize(noise).float()
            result = reference_result(images, request.targets, teacher, time.perf_counter() - start)
            # reference_result clips to [0, 1]; the official noise must stay unclipped.
            return [dataclasses.replace(result, images=images)]
        mean, std = teacher.mean_std("cpu")
        lower, upper = (0 - mean) / std, (1 - mean) / std
        images = teacher.denormalize(torch.maximum(torch.minimum(noise, upper), lower)).clamp(0, 1)
        return [reference_result(images, request.targets, teacher, time.perf_counter() - start)]
