"""Image transforms driven by a timm data config.

Real datasets go through timm's own eval transform (``timm.data.create_transform``) built from
the teacher's data config, so a pretrained teacher sees exactly the preprocessing it was
trained with. The embedded datasets are tensors in memory; they are resized and normalised
here in tensor space with the same config keys (``input_size``, ``mean``, ``std``,
``interpolation``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from smi.errors import SMIError

#: Normalisation of the suite-trained teachers: maps [0, 1] pixels to [-1, 1].
SUITE_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
SUITE_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)
REQUIRED_KEYS: tuple[str, ...] = ("input_size", "mean", "std")
# Keys of a timm data config that create_transform understands.
_TRANSFORM_KEYS: tuple[str, ...] = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
_TENSOR_MODES: dict[str, str] = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"}


def suite_data_config(image_size: int, in_chans: int = 3) -> dict[str, Any]:
    """The data config of a teacher trained by the suite at ``image_size`` pixels."""
    return {
        "input_size": (in_chans, image_size, image_size),
        "interpolation": "bilinear",
        "mean": SUITE_MEAN[:in_chans],
        "std": SUITE_STD[:in_chans],
        "crop_pct": 1.0,
        "crop_mode": "center",
    }


def check_data_config(data_config: Mapping[str, Any]) -> tuple[int, int, int]:
    """Validate the keys a dataset needs; returns ``input_size`` as (C, H, W).

    Raises:
        SMIError: If a key is missing or the sizes are inconsistent.
    """
    missing = [k for k in REQUIRED_KEYS if k not in data_config]
    if missing:
        raise SMIError(
            f"data config lacks {missing}; it needs input_size (C, H, W), mean and std, as given by "
            "timm.data.resolve_data_config(model=...) or the teacher file."
        )
    size = tuple(int(v) for v in data_config["input_size"])
    if len(size) != 3 or min(size) < 1:
        raise SMIError(f"data config input_size {size} must be (C, H, W) with positive entries.")
    for key in ("mean", "std"):
        if len(data_config[key]) != size[0]:
            raise SMIError(f"data config {key} {data_config[key]} has not one value per channel ({size[0]}).")
    return size  # type: ignore[return-value]


def normalise(images: torch.Tensor, data_config: Mapping[str, Any]) -> torch.Tensor:
    """Pixels in [0, 1], (N, C, H, W) -> the model's normalised input space."""
    mean = torch.tensor(data_config["mean"], dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(data_config["std"], dtype=images.dtype).view(1, -1, 1, 1)
    return (images - mean) / std


def resize_images(images: torch.Tensor, data_config: Mapping[str, Any]) -> torch.Tensor:
    """Resize (N, C, h, w) pixels in [0, 1] to the config's input size and channel count.

    Single-channel images are replicated to the config's channels (grayscale digits fed to an
    RGB ViT). Interpolation follows the config; the result is clipped to [0, 1] because bicubic
    interpolation overshoots.
    """
    c, h, w = check_data_config(data_config)
    if images.shape[1] == 1 and c != 1:
        images = images.expand(-1, c, -1, -1)
    elif images.shape[1] != c:
        raise SMIError(f"images have {images.shape[1]} channels but the data config asks for {c}.")
    if tuple(images.shape[-2:]) != (h, w):
        mode = _TENSOR_MODES.get(str(data_config.get("interpolation", "bilinear")), "bilinear")
        kwargs = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
        images = F.interpolate(images, size=(h, w), mode=mode, **kwargs)
    return images.clamp(0.0, 1.0).contiguous()


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize boolean masks (N, h, w) to ``size`` by nearest neighbour."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.bool()
    out = F.interpolate(masks[:, None].float(), size=size, mode="nearest")
    return out[:, 0] > 0.5


def eval_transform(data_config: Mapping[str, Any]) -> Callable[[Any], torch.Tensor]:
    """timm's eval transform (resize, centre crop, to tensor, normalise) for PIL images."""
    from timm.data import create_transform  # local: only real datasets need it

    check_data_config(data_config)
    kwargs = {k: data_config[k] for k in _TRANSFORM_KEYS if k in data_config}
    kwargs["input_size"] = tuple(kwargs["input_size"])
    return create_transform(is_training=False, **kwargs)
