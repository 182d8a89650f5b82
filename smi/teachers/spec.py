"""Teacher and training-recipe configuration.

A teacher is a timm model name plus a *source*: ``pretrained`` (timm weights from the cache or
hub, or a local file), ``checkpoint`` (a local ``.pth``/``.safetensors``), ``train`` (trained
from scratch by the suite) or ``finetune`` (a pretrained or checkpoint start, trained on the
dataset). Both dataclasses are built with :func:`smi.config.from_dict`, which rejects unknown
keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from smi.config import from_dict
from smi.errors import SMIError

SOURCES: tuple[str, ...] = ("pretrained", "checkpoint", "train", "finetune")
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".pth.tar", ".bin", ".safetensors")


@dataclass(frozen=True)
class Recipe:
    """How the suite trains or fine-tunes a teacher (AdamW, warm-up then cosine decay).

    Attributes:
        epochs: Passes over the training split; the final epoch is reported (no selection
            on the test set).
        batch_size: Training batch size.
        lr: Peak learning rate after warm-up.
        min_lr: Learning rate at the end of the cosine decay.
        weight_decay: Decoupled weight decay (not applied to biases, norms, position embeddings).
        warmup_epochs: Linear warm-up length, in epochs (may be fractional).
        label_smoothing: Label smoothing of the cross-entropy.
        optimizer: A timm optimizer name (``timm.optim.create_optimizer_v2``).
        shift: Random translation of up to this fraction of the side (edge pixels replicated).
        hflip: Random horizontal flips (never for digits: a flipped digit is another glyph).
        noise_std: Standard deviation of Gaussian noise added to every training input, in the
            model's normalised input units (0 disables). A noise-robust teacher has more
            perceptually aligned input gradients, so its inversions look more like its data.
        grad_clip: Clip the gradient norm to this value; ``None`` disables.
        sincos_pos_init: Start the position embedding of a model trained from scratch from
            a 2-D sin-cos table (``train`` only; fine-tuning keeps the pretrained one).
        eval_batch_size: Batch size of evaluation.
        num_workers: DataLoader workers for folder datasets (the embedded ones are in memory).
    """

    epochs: int = 15
    batch_size: int = 32
    lr: float = 2e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    optimizer: str = "adamw"
    shift: float = 0.0625
    hflip: bool = False
    noise_std: float = 0.0
    grad_clip: float | None = 1.0
    sincos_pos_init: bool = True
    eval_batch_size: int = 256
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise SMIError("recipe epochs, batch_size and eval_batch_size must be at least 1.")
        if self.lr <= 0 or self.min_lr < 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise SMIError("recipe lr must be positive; min_lr, weight_decay and warmup_epochs non-negative.")
        if not 0.0 <= self.label_smoothing < 1.0 or not 0.0 <= self.shift < 0.5:
            raise SMIError("recipe label_smoothing must lie in [0, 1) and shift in [0, 0.5).")
        if not self.noise_std >= 0:
            raise SMIError(f"recipe noise_std = {self.noise_std} must be >= 0 (0 disables input noise).")

    @classmethod
    def from_config(cls, values: Mapping[str, Any] | None) -> Recipe:
        """Build from a config dict (unknown keys rejected)."""
        return from_dict(cls, values, "teacher recipe")


@dataclass(frozen=True)
class TeacherSpec:
    """Which model and where its weights come from.

    Attributes:
        model: timm model name (a ViT, e.g. ``vit_tiny_patch16_224`` or ``deit_small_patch16_224``).
        model_kwargs: Extra ``timm.create_model`` arguments (``img_size``, ``patch_size``,
            ``embed_dim``, ``depth``, ``num_heads``, ``mlp_ratio``...).
        source: ``pretrained``, ``checkpoint``, ``train`` or ``finetune``.
        checkpoint: Local weights file: required by ``checkpoint``; for ``finetune`` the start
            (otherwise the pretrained weights).
        pretrained_file: Local file of the pretrained weights (offline ``pretrained``/``finetune``),
            passed as ``pretrained_cfg_overlay=dict(file=...)``.
        recipe: :class:`Recipe` options for ``train`` and ``finetune``.
        data_config: Overrides of the resolved timm data config (``mean``, ``std``,
            ``input_size``, ``interpolation``, ``crop_pct``, ``crop_mode``).
    """

    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    source: str = "train"
    checkpoint: str | None = None
    pretrained_file: str | None = None
    recipe: dict[str, Any] | None = None
    data_config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise SMIError(f"unknown teacher source '{self.source}'; choose one of {list(SOURCES)}.")
        if self.source == "checkpoint" and not self.checkpoint:
            raise SMIError("teacher source 'checkpoint' needs 'checkpoint': the path of a .pth or .safetensors file.")
        if self.source in ("pretrained", "checkpoint") and self.recipe:
            raise SMIError(f"teacher source '{self.source}' does not train; remove 'recipe' or use source 'finetune'.")

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> TeacherSpec:
        """Build from a config dict; unknown keys (also in ``recipe``) are rejected."""
        spec = from_dict(cls, values, "teacher spec")
        for name in ("model_kwargs", "recipe", "data_config"):
            value = getattr(spec, name)
            if value is not None and not isinstance(value, Mapping):
                raise SMIError(f"teacher spec '{name}' must be a mapping, got {type(value).__name__}.")
        spec.training_recipe()
        return spec

    def training_recipe(self) -> Recipe:
        """The :class:`Recipe` (defaults where the spec gives none)."""
        return Recipe.from_config(self.recipe)

    def to_config(self) -> dict[str, Any]:
        """Plain-dict form accepted by :meth:`from_config`."""
        return {
            "model": self.model,
            "model_kwargs": dict(self.model_kwargs),
            "source": self.source,
            "checkpoint": self.checkpoint,
            "pretrained_file": self.pretrained_file,
            "recipe": dict(self.recipe) if self.recipe else None,
            "data_config": dict(self.data_config) if self.data_config else None,
        }
