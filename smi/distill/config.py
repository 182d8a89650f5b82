"""Configuration of knowledge transfer: the student and the distillation recipe."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from smi.config import from_dict
from smi.errors import SMIError

STUDENT_INITS: tuple[str, ...] = ("scratch", "checkpoint", "pretrained")
STUDENT_TRAINING: tuple[str, ...] = ("full", "linear")
AUGMENTATIONS: tuple[str, ...] = ("patch_shift_flip", "flip", "none")
# Knowledge-transfer temperature of the SMI paper (Hu et al., ICML 2024).
PAPER_TEMPERATURE = 20.0
#: ``official``: the official SMI code's knowledge transfer (test_kt.py); ``suite``: the suite's own.
PROTOCOLS: tuple[str, ...] = ("suite", "official")
DEFAULT_PROTOCOL = "suite"


@dataclass(frozen=True)
class StudentSpec:
    """The student network.

    Attributes:
        model: timm model name of a ``VisionTransformer`` (for example ``vit_tiny_patch16_224``).
        model_kwargs: Extra ``timm.create_model`` keyword arguments (``embed_dim``, ``depth``...).
            ``img_size`` and ``patch_size`` default to the teacher's, since the student runs on
            the teacher's patch grid (the keep masks are defined on it).
        init: ``scratch`` (random initialisation), ``checkpoint`` (a pretrained student whose
            classifier head is replaced for the teacher's classes; the official protocol's student,
            with ``train='linear'`` and the teacher's own ``model``) or ``pretrained`` (the same
            with timm's pretrained weights of ``model``: from ``checkpoint`` when given, the file
            ``smi fetch-weights`` saves for offline nodes, else from the timm / Hugging Face cache
            or hub).
        checkpoint: Weights file for ``init='checkpoint'`` (a teacher file of this suite or a
            plain timm checkpoint) or ``init='pretrained'``; its classifier head is dropped.
        train: ``full`` fine-tuning or ``linear`` (only the new head is trained).
    """

    model: str = "vit_tiny_patch16_224"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    init: str = "scratch"
    checkpoint: str | None = None
    train: str = "full"

    def __post_init__(self) -> None:
        if self.init not in STUDENT_INITS:
            raise SMIError(f"student init {self.init!r} is unknown; choose one of {list(STUDENT_INITS)}.")
        if self.train not in STUDENT_TRAINING:
            raise SMIError(f"student train {self.train!r} is unknown; choose one of {list(STUDENT_TRAINING)}.")
        if self.init == "checkpoint" and not self.checkpoint:
            raise SMIError("student init 'checkpoint' needs 'checkpoint': the path of the pretrained weights.")
        if self.init == "scratch" and self.train == "linear":
            raise SMIError("a student from scratch cannot be trained 'linear' (a random body); use train 'full'.")
        if not isinstance(self.model_kwargs, dict):
            raise SMIError(f"student model_kwargs must be a mapping, got {type(self.model_kwargs).__name__}.")


@dataclass(frozen=True)
class DistillRecipe:
    """How the student is trained on the synthetic images.

    The defaults suit the embedded benchmark (a from-scratch ViT student, a few dozen to a few
    hundred 32x32 images): small batches, so that a small set still gives enough steps. Tiny
    sets (64 images) need more epochs (about 100) for a from-scratch student to converge.

    Attributes:
        protocol: Always ``suite`` (recorded with the recipe; chosen by the protocol, not set here).
        epochs: Passes over the image set; the final epoch is the reported one.
        batch_size: Images per step.
        lr: Peak AdamW learning rate (cosine decay to zero over all steps).
        weight_decay: AdamW weight decay.
        warmup_epochs: Linear learning-rate warm-up, in epochs (fractions allowed).
        temperature: Softmax temperature of the KL loss (paper: 20); the loss is scaled by T^2.
        augment: ``patch_shift_flip`` (random whole-patch roll and horizontal flip, image and keep
            mask together), ``flip`` (flip only) or ``none``. Both keep sparse images sparse.
        max_shift: Largest roll, in patches, along each axis for ``patch_shift_flip``.
        erase: Whole-patch random erasing (:class:`~smi.distill.augment.PatchErase`): each image
            erases a fraction ``U(0, erase)`` of its kept patches to black, and the teacher labels
            the erased image. 0 disables. Inverted images hold no blank region, so without it a
            student never learns the teacher's response to one (the backgrounds of real images).
        num_images: Images used (a seeded subset); ``None`` uses the whole set. Equal counts
            across methods are the default comparison; see :mod:`smi.distill.budget` for equal
            inversion compute.
        eval_batch_size: Images per forward on the test split.
        eval_every: Evaluate on the test split every this many epochs (and always after the
            final one); the curve holds the evaluated epochs. Evaluation is a large part of a
            short epoch's cost.
    """

    protocol: str = field(default="suite", init=False)
    epochs: int = 30
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    temperature: float = PAPER_TEMPERATURE
    augment: str = "patch_shift_flip"
    max_shift: int = 1
    erase: float = 0.0
    num_images: int | None = None
    eval_batch_size: int = 256
    eval_every: int = 1

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTATIONS:
            raise SMIError(f"augment {self.augment!r} is unknown; choose one of {list(AUGMENTATIONS)}.")
        for name in ("epochs", "batch_size", "eval_batch_size", "eval_every"):
            if int(getattr(self, name)) < 1:
                raise SMIError(f"distillation recipe {name} = {getattr(self, name)} must be at least 1.")
        if self.num_images is not None and int(self.num_images) < 1:
            raise SMIError(f"distillation recipe num_images = {self.num_images} must be at least 1 (or null for all).")
        if float(self.temperature) <= 0 or float(self.lr) <= 0:
            raise SMIError("distillation recipe temperature and lr must be positive.")
        if int(self.max_shift) < 0 or float(self.warmup_epochs) < 0 or float(self.weight_decay) < 0:
            raise SMIError("distillation recipe max_shift, warmup_epochs and weight_decay must be >= 0.")
        if not 0.0 <= float(self.erase) < 1.0:
            raise SMIError(f"distillation recipe erase = {self.erase} must lie in [0, 1) (0 disables erasing).")


@dataclass(frozen=True)
class OfficialRecipe:
    """Knowledge transfer as the official SMI code runs it (``test_kt.py``, Hu et al., ICML 2024).

    Every epoch synthesises ``images_per_epoch`` new images with the inversion method into a
    growing pool, then takes **one** SGD step on ``batch_size`` images drawn from the whole pool;
    the student is a pretrained copy of the teacher's architecture with a new head, trained as a
    linear probe. The defaults are the official code's values.

    Attributes:
        protocol: Always ``official`` (recorded with the recipe; not a key to set).
        epochs: Epochs, each one synthesis and one step (official ``--epoches`` default 1000).
        images_per_epoch: Images synthesised per epoch, in one inversion batch (official 100).
        batch_size: Images per step, drawn from the pool (official ``--kr-batchsize`` 32).
        lr: SGD learning rate, constant: the official code has no schedule (0.1).
        momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay (1e-4).
        temperature: KL temperature (20); the loss is scaled by T^2.
        eval_every: Evaluate on the test split every this many epochs and after the last (the
            official code evaluates every epoch).
        eval_batch_size: Images per forward on the test split (does not change the figures).
        checkpoint_every: Save pool, student and optimiser state every this many epochs, so an
            interrupted job resumes (the official code cannot resume; this changes no figure).
    """

    protocol: str = field(default="official", init=False)
    epochs: int = 1000
    images_per_epoch: int = 100
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    temperature: float = PAPER_TEMPERATURE
    eval_every: int = 1
    eval_batch_size: int = 200
    checkpoint_every: int = 10

    def __post_init__(self) -> None:
        for name in ("epochs", "images_per_epoch", "batch_size", "eval_every", "eval_batch_size", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise SMIError(f"official distillation recipe {name} = {getattr(self, name)} must be at least 1.")
        if float(self.lr) <= 0 or float(self.temperature) <= 0:
            raise SMIError("official distillation recipe lr and temperature must be positive.")
        if float(self.momentum) < 0 or float(self.weight_decay) < 0:
            raise SMIError("official distillation recipe momentum and weight_decay must be >= 0.")


def parse_recipe(protocol: str, values: Mapping[str, Any] | None) -> DistillRecipe | OfficialRecipe:
    """The recipe of ``protocol`` from plain values, unknown keys rejected.

    Raises:
        SMIError: Unknown protocol, or a key the protocol's recipe does not have (a suite key
            such as ``augment`` under ``official`` is an error, not silently ignored).
    """
    if protocol not in PROTOCOLS:
        raise SMIError(f"distillation protocol {protocol!r} is unknown; choose one of {list(PROTOCOLS)}.")
    values = dict(values or {})
    values.pop("protocol", None)  # recorded recipes carry it; it is chosen by the protocol argument
    if protocol == "official":
        return from_dict(OfficialRecipe, values, "the official distillation recipe")
    return from_dict(DistillRecipe, values, "the distillation recipe")
