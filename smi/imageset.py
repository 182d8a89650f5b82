"""The image-set file: what every inversion method (and external baseline) produces.

One ``torch.save`` file holding tensors, not PNGs:

- ``images``: float32 (M, C, H, W) in pixel space [0, 1]; stopped patches are black (0);
- ``keep_masks``: bool (M, gh, gw), True where a patch is part of the image;
- ``targets``: int64 (M,) class labels the images were synthesised for;
- ``metadata``: dict with at least ``method``, ``teacher`` (model name, num_classes,
  input_size, patch_size, ``fingerprint``), ``seed`` and ``config_hash``.

The teacher's ``fingerprint`` (:func:`teacher_fingerprint`) identifies its weights, so that a
set made from one teacher is refused by another of the same shape (:func:`check_teacher_identity`).

An external method's output (:func:`load_external`) may leave out ``keep_masks`` (a dense
method need not know the patch grid); :func:`validate_external` checks it against the teacher
and the request before the suite re-saves it.

Evaluators feed the kept patches only to the models (the token-subset forward), so the black
pixels never enter a calibration range or a distillation loss.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from smi.errors import SMIError
from smi.io import torch_save
from smi.types import SparseImages

FORMAT_VERSION = 1
#: Hex digits of the teacher fingerprint shown in messages (the full digest is stored).
SHOWN_DIGITS = 12
#: The command-line flag that accepts a set made from another teacher.
ALLOW_FOREIGN_FLAG = "--allow-foreign-set"


@dataclass
class ImageSet(SparseImages):
    """Synthetic (or real, or noise) images, keep masks and targets, as the image-set file holds them.

    Attributes:
        metadata: Provenance and teacher description.
    """

    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = self.images.shape[0]
        if self.images.ndim != 4:
            raise SMIError(f"image set images must be (M, C, H, W), got shape {tuple(self.images.shape)}")
        if self.keep_masks.ndim != 3 or self.keep_masks.shape[0] != m:
            raise SMIError(f"image set keep_masks must be (M, gh, gw) with M={m}, got {tuple(self.keep_masks.shape)}")
        if self.targets.shape != (m,):
            raise SMIError(f"image set targets must be (M,) with M={m}, got {tuple(self.targets.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def sparsity(self) -> float:
        """Fraction of patches that are stopped (0 for dense images)."""
        return 1.0 - float(self.keep_masks.float().mean())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the set atomically."""
        torch_save(
            {
                "format_version": FORMAT_VERSION,
                "images": self.images.detach().cpu().float().contiguous(),
                "keep_masks": self.keep_masks.detach().cpu().bool().contiguous(),
                "targets": self.targets.detach().cpu().long().contiguous(),
                "metadata": self.metadata,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ImageSet:
        """Read a set written by :meth:`save` (or by an external baseline in this format)."""
        path = Path(path)
        if not path.is_file():
            raise SMIError(f"image set file {path} does not exist; run the inversion step that writes it first.")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt files
            raise SMIError(f"image set file {path} is not a readable torch file ({exc}); regenerate it.") from exc
        if not isinstance(blob, dict) or not {"images", "keep_masks", "targets"} <= set(blob):
            raise SMIError(
                f"image set file {path} lacks the keys images/keep_masks/targets; see smi/imageset.py "
                "for the format an external method must write."
            )
        return cls(blob["images"].float(), blob["keep_masks"].bool(), blob["targets"].long(), blob.get("metadata", {}))

    def check_compatible(self, num_classes: int, input_size: tuple[int, int, int], grid_size: tuple[int, int]) -> None:
        """Raise if this set cannot be fed to a model with the given classes and input size.

        Args:
            num_classes: The evaluated model's class count.
            input_size: The model's (C, H, W).
            grid_size: The model's patch grid (gh, gw).
        """
        if len(self) == 0:
            raise SMIError("the image set is empty; an evaluation needs at least one image.")
        if tuple(self.images.shape[1:]) != tuple(input_size):
            raise SMIError(
                f"image set has images of size {tuple(self.images.shape[1:])} but the model expects "
                f"{tuple(input_size)}; the set was made for another teacher."
            )
        if tuple(self.keep_masks.shape[1:]) != tuple(grid_size):
            raise SMIError(
                f"image set keep masks are {tuple(self.keep_masks.shape[1:])} but the model's patch grid is "
                f"{tuple(grid_size)}; the set was made for another teacher."
            )
        top = int(self.targets.max())
        if top >= num_classes or int(self.targets.min()) < 0:
            raise SMIError(
                f"image set has target label {top} but the model has {num_classes} classes; the set was made "
                "for another teacher."
            )
        meta_classes = self.metadata.get("teacher", {}).get("num_classes")
        if meta_classes is not None and int(meta_classes) != num_classes:
            raise SMIError(
                f"image set was made for a teacher with {meta_classes} classes, but the model has {num_classes}."
            )


def teacher_fingerprint(model: torch.nn.Module, model_name: str, model_kwargs: dict[str, Any] | None) -> str:
    """A SHA-256 of a teacher's weights, timm model name and model kwargs.

    Tensors are hashed in sorted key order with their dtype and shape, from CPU copies, so the
    digest does not depend on the device, the dict order or the thread count.

    Args:
        model: The teacher's model.
        model_name: Its timm model name.
        model_kwargs: Its ``timm.create_model`` keyword arguments.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([model_name, model_kwargs or {}], sort_keys=True, default=str).encode())
    state = model.state_dict()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # Bytes via uint8 view: numpy has no bfloat16, and a view copies nothing.
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_teacher_identity(
    image_set: ImageSet, teacher: Any, set_path: str | os.PathLike[str], teacher_name: str, allow_foreign: bool
) -> str:
    """Refuse an image set made from another teacher than ``teacher``.

    Shapes alone cannot tell two teachers apart (a digits and a shapes teacher of one size
    accept each other's images); the fingerprint of the weights the set records can.

    Args:
        image_set: The loaded set.
        teacher: The :class:`smi.types.Teacher` about to use it.
        set_path: The set's file, for the message.
        teacher_name: The teacher's id in this run, for the message.
        allow_foreign: Accept a foreign set (a deliberate transfer experiment).

    Returns:
        ``"same"`` (the set's teacher), ``"foreign"`` (another teacher, allowed) or
        ``"unrecorded"`` (a set that records no fingerprint: hand-made or from an older version).

    Raises:
        SMIError: For a set of another teacher without ``allow_foreign``.
    """
    recorded = image_set.metadata.get("teacher") or {}
    theirs = recorded.get("fingerprint") if isinstance(recorded, dict) else None
    if not theirs:
        return "unrecorded"
    ours = teacher_fingerprint(teacher.model, teacher.model_name, teacher.metadata.get("model_kwargs"))
    if theirs == ours:
        return "same"
    if allow_foreign:
        return "foreign"
    set_teacher = image_set.metadata.get("teacher_id") or recorded.get("model_name")
    raise SMIError(
        f"image set {set_path} was made from teacher '{set_teacher}' ({recorded.get('model_name')} on "
        f"{recorded.get('dataset')}, weights {theirs[:SHOWN_DIGITS]}) but is used with teacher '{teacher_name}' "
        f"({teacher.model_name} on {teacher.dataset}, weights {ours[:SHOWN_DIGITS]}); use a set inverted from this "
        f"teacher, or pass {ALLOW_FOREIGN_FLAG} for a deliberate transfer experiment."
    )


def load_external(path: str | os.PathLike[str], grid_size: tuple[int, int]) -> ImageSet:
    """Read an external command's output: the image-set format, where ``keep_masks`` may be omitted.

    A dense external method need not know the teacher's patch grid: without ``keep_masks``
    every patch of every image counts as kept.

    Raises:
        SMIError: If the file is unreadable or lacks ``images`` / ``targets``.
    """
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise SMIError(f"the external command's output is not a readable torch file ({exc}).") from exc
    if not isinstance(blob, dict) or not {"images", "targets"} <= set(blob):
        raise SMIError(
            "the external command's output lacks the keys images/targets; it must be a dict in the image-set "
            "format of smi/imageset.py (keep_masks optional for dense images)."
        )
    images, targets = blob["images"], blob["targets"]
    if not isinstance(images, torch.Tensor) or not isinstance(targets, torch.Tensor) or images.ndim != 4:
        raise SMIError("the external command's images must be a (M, C, H, W) tensor and its targets a (M,) tensor.")
    masks = blob.get("keep_masks")
    if masks is None:
        masks = torch.ones(images.shape[0], *grid_size, dtype=torch.bool)
    metadata = blob.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise SMIError(f"the external command's metadata must be a dict, got {type(metadata).__name__}.")
    return ImageSet(images.float(), masks.bool(), targets.long(), dict(metadata))


def validate_external(image_set: ImageSet, teacher: Any, grid_size: tuple[int, int], num_images: int) -> ImageSet:
    """Check a produced set against the teacher and the request; returns the first ``num_images``.

    Pixels outside the keep masks are set to 0 (the format's "stopped patches are black"); the
    evaluators never read them.

    Raises:
        SMIError: Wrong sizes or labels, too few images, values outside [0, 1], empty masks.
    """
    from smi.sparse_vit import mask_to_pixels  # imports timm: only where a set is validated

    image_set.check_compatible(teacher.num_classes, teacher.input_size, grid_size)
    if len(image_set) < num_images:
        raise SMIError(f"the external command produced {len(image_set)} images but {num_images} were requested.")
    images = image_set.images
    if not bool(torch.isfinite(images).all()) or float(images.min()) < 0 or float(images.max()) > 1:
        raise SMIError(
            "the external command's images are not all finite values in [0, 1]; the image-set format stores "
            "pixel-space images (denormalise and clip before saving)."
        )
    masks = image_set.keep_masks
    if not bool(masks.flatten(1).any(1).all()):
        raise SMIError("an image of the external set keeps no patch at all; every image needs at least one kept patch.")
    patch_size = (teacher.input_size[1] // grid_size[0], teacher.input_size[2] // grid_size[1])
    images = images * mask_to_pixels(masks, patch_size).to(images.dtype)
    return ImageSet(images[:num_images], masks[:num_images], image_set.targets[:num_images], dict(image_set.metadata))
