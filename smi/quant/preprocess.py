"""How the official SMI code feeds images to its quantized ViT (the ``official`` PTQ protocol).

Sparse Model Inversion's ``test_quant.py`` does not calibrate on the tensors its inversion
produced. It saves them as PNG files and reads them back through its data transform:

1. stopped patches are zeroed in pixel space (the saved images are ``image * keep_mask``);
2. ``(clamp(x, 0, 1) * 255).astype('uint8')``: the pixels are **truncated** (not rounded) to
   8 bits, then read back as ``uint8 / 255``;
3. ``keep_zero`` normalisation: ``(x - mean) / std`` element-wise, except that every element
   that is exactly 0 in pixel space is set to 0 instead of ``-mean / std``. Stopped patches
   thus enter the model as zeros in the normalised space, but so does every black channel
   value of a kept patch (a quirk);
4. the kept patches are re-derived from the content (``find_non_zero_patches``); the suite
   uses the stored keep mask, which is the same unless a kept patch is entirely black.

The evaluation split goes through the same ``keep_zero`` normalisation in that script (its
validation transform is built with ``keep_zero=True``): :func:`keep_zero_inputs` applies it to
normalised test images. Gaussian noise (``torch.randn`` in the normalised space, unclipped) and
real images (PSAQ-ViT's plain ``Normalize``) are fed as they are: :func:`official_calibration_inputs`
leaves reference sources untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from smi.errors import SMIError
from smi.sparse_vit import mask_to_pixels

#: Largest 8-bit pixel value: the official pipeline stores images as uint8 PNGs.
UINT8_MAX = 255
Normalize = Callable[[torch.Tensor], torch.Tensor]


def uint8_round_trip(pixels: torch.Tensor) -> torch.Tensor:
    """``clamp(x, 0, 1) * 255`` truncated to uint8, read back as ``uint8 / 255`` (float32)."""
    as_uint8 = (pixels.float().clamp(0, 1) * UINT8_MAX).to(torch.uint8)  # a C cast truncates, like numpy
    return as_uint8.float().div(UINT8_MAX)


def keep_zero_normalize(pixels: torch.Tensor, normalize: Normalize) -> torch.Tensor:
    """``normalize(x)``, with every element that is exactly 0 in ``pixels`` left at 0.

    Args:
        pixels: (B, C, H, W) pixel-space images.
        normalize: Pixel space -> normalised space, ``(x - mean) / std``.
    """
    return normalize(pixels).masked_fill(pixels == 0, 0.0)


def keep_zero_inputs(normalized: torch.Tensor, normalize: Normalize) -> torch.Tensor:
    """Apply ``keep_zero`` to images that were normalised already (the test split).

    An element that was exactly 0 in pixel space holds exactly ``normalize(0)`` of its channel
    (the suite's datasets normalise with the same arithmetic as ``normalize``), so it is found
    by equality and set to 0.

    Args:
        normalized: (B, C, H, W) normalised images.
        normalize: Pixel space -> normalised space of the model.
    """
    zeros = torch.zeros(1, normalized.shape[1], 1, 1, dtype=normalized.dtype, device=normalized.device)
    return normalized.masked_fill(normalized == normalize(zeros), 0.0)


def is_synthetic_source(metadata: dict[str, Any]) -> bool:
    """Whether an image set came from an inversion (PNG round-trip) rather than noise or real data.

    A set made by a registered method that synthesises nothing (``noise``, ``real``) is a
    reference source; any other set, including externally produced ones, is synthetic.
    """
    from smi.methods.registry import available_methods, method_class

    name = metadata.get("method_name") or metadata.get("method")
    if not name or name not in available_methods():
        return True
    return bool(method_class(str(name)).synthesizes)


def official_calibration_inputs(
    images: torch.Tensor,
    keep_masks: torch.Tensor,
    normalize: Normalize,
    patch_size: tuple[int, int],
    synthetic: bool,
) -> torch.Tensor:
    """Normalised calibration inputs as the official scripts build them (see the module docstring).

    Args:
        images: (B, C, H, W) pixel-space images of the image set.
        keep_masks: (B, gh, gw) keep masks.
        normalize: Pixel space -> the model's normalised space.
        patch_size: (ph, pw) of the model.
        synthetic: Inverted images (PNG round-trip and ``keep_zero``); otherwise plain normalisation.

    Raises:
        SMIError: If the masks do not match the images.
    """
    if not synthetic:
        return normalize(images)
    pixel_mask = mask_to_pixels(keep_masks, patch_size)
    if pixel_mask.shape[-2:] != images.shape[-2:]:
        raise SMIError(
            f"keep masks cover {tuple(pixel_mask.shape[-2:])} pixels but the images are {tuple(images.shape[-2:])}."
        )
    return keep_zero_normalize(uint8_round_trip(images * pixel_mask), normalize)
