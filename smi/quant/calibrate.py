"""Calibration of activation ranges on an image set, sparse images on their kept patches only.

Sparse Model Inversion (Hu et al., ICML 2024) calibrates the quantized ViT on its sparse
synthetic images through the token-subset forward: a stopped (black) patch is never embedded,
so it never enters an activation range. Dense sets (real images, Gaussian noise, dense
inversion) have all-true keep masks and take the same path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm import tqdm

from smi.errors import SMIError
from smi.imageset import ImageSet
from smi.quant.model import QuantViT
from smi.quant.official import OfficialQuantViT
from smi.quant.preprocess import is_synthetic_source, official_calibration_inputs


def select_images(image_set: ImageSet, count: int, seed: int) -> ImageSet:
    """A seeded random subset of ``count`` images of ``image_set`` (order fixed by the seed).

    Raises:
        SMIError: If the set is empty or holds fewer than ``count`` images.
    """
    if len(image_set) == 0:
        raise SMIError("the calibration image set is empty; generate a non-empty set first.")
    if count > len(image_set):
        raise SMIError(
            f"{count} images requested but the set holds only {len(image_set)}; lower the size or "
            "generate a larger set."
        )
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(image_set), generator=generator)[:count]
    return ImageSet(
        image_set.images[index], image_set.keep_masks[index], image_set.targets[index], dict(image_set.metadata)
    )


@torch.no_grad()
def calibrate(
    qmodel: QuantViT | OfficialQuantViT,
    image_set: ImageSet,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    device: torch.device | str,
    progress: bool = True,
) -> None:
    """Observe activations on ``image_set`` and fix every activation quantizer's range.

    The ``suite`` model observes with its weights quantized and normalises the stored images.
    The ``official`` model (:class:`~smi.quant.official.OfficialQuantViT`) observes with
    full-precision weights and quantizes them afterwards, and sees inverted images the way the
    official scripts feed them (uint8 round-trip, ``keep_zero``; :mod:`smi.quant.preprocess`).

    Args:
        qmodel: A quantized model from :func:`smi.quant.model.quantize_vit`.
        image_set: Calibration images in pixel space with their keep masks.
        normalize: Pixel space -> the model's normalised input space.
        batch_size: Images per forward (min/max ranges do not depend on it).
        device: Device of ``qmodel``.
        progress: Show a progress bar on stderr.

    Raises:
        SMIError: If the set is empty.
    """
    if len(image_set) == 0:
        raise SMIError("the calibration image set is empty; generate a non-empty set first.")
    official = isinstance(qmodel, OfficialQuantViT)
    synthetic = is_synthetic_source(image_set.metadata) if official else False
    qmodel.eval()
    qmodel.set_mode("observe")
    try:
        starts = range(0, len(image_set), batch_size)
        for start in tqdm(starts, desc="calibrate", leave=False, disable=not progress):
            images = image_set.images[start : start + batch_size].to(device)
            masks = image_set.keep_masks[start : start + batch_size].to(device)
            if official:
                inputs = official_calibration_inputs(images, masks, normalize, qmodel.patch_size, synthetic)
            else:
                inputs = normalize(images)
            qmodel.forward_masked(inputs, masks)
    except BaseException:
        qmodel.set_mode("off")
        raise
    qmodel.finalize()
