"""Building a teacher from its spec: pretrained, checkpoint, train or finetune.

``train`` is the suite's embedded default (small timm ViTs trained on ``digits``/``shapes`` on
a CPU); ``finetune`` is how Flowers-102 and CUB-200 teachers are made in the configuration of
Sparse Model Inversion (Hu et al., ICML 2024): an ImageNet-pretrained ViT with a new head,
trained on the dataset. Every teacher is evaluated on the dataset's real test split.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from smi.data import DatasetSpec, load_dataset, num_classes, suite_data_config
from smi.errors import SMIError
from smi.teachers import hub, models
from smi.teachers.spec import Recipe, TeacherSpec
from smi.teachers.store import freeze, read_metadata
from smi.teachers.training import evaluate, fit
from smi.types import Teacher


def build_teacher(
    spec: TeacherSpec,
    dataset_spec: DatasetSpec,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> tuple[Teacher, dict[str, Any]]:
    """Get the teacher ``spec`` describes for ``dataset_spec`` and measure it on the test split.

    Args:
        spec: Model and weight source.
        dataset_spec: The dataset (its class count sets the head; its test split is evaluated).
        device: Compute device.
        seed: Seed of the model initialisation, data order and augmentation.
        progress: Show tqdm progress on stderr.

    Returns:
        The frozen teacher (eval mode) and metrics: ``top1``, ``top5`` (%), ``num_test_images``,
        ``train_time_s``, ``train_cpu_time_s``, ``num_params``, ``source``, ``recipe``, ``history``.

    Raises:
        SMIError: Unknown model, non-ViT, missing/corrupt weights, head/class-count mismatch.
    """
    device = torch.device(device)
    classes = num_classes(dataset_spec)
    models.check_model_name(spec.model)
    models.check_architecture(spec.model, spec.model_kwargs)
    torch.manual_seed(seed)  # the head (and, for 'train', every weight) is initialised here
    model, model_kwargs, data_config = _initial_model(spec, classes)
    recipe: Recipe | None = spec.training_recipe() if spec.source in ("train", "finetune") else None
    train_info: dict[str, Any] = {"train_time_s": 0.0, "train_cpu_time_s": 0.0, "steps": 0, "history": []}
    if recipe is not None:
        train_set = load_dataset(dataset_spec, "train", data_config)
        train_info = fit(model, train_set, recipe, device, seed, progress)
    model.to(device).eval()
    test_set = load_dataset(dataset_spec, "test", data_config)
    eval_batch = recipe.eval_batch_size if recipe else Recipe().eval_batch_size
    scores = evaluate(model, test_set, eval_batch, device, recipe.num_workers if recipe else 0)
    recipe_dict = _recipe_dict(recipe)
    metrics = {
        "top1": scores["top1"],
        "top5": scores["top5"],
        "num_test_images": scores["num_images"],
        "num_params": sum(p.numel() for p in model.parameters()),
        "source": spec.source,
        "recipe": recipe_dict,
        **train_info,
    }
    metadata = {
        "model_kwargs": model_kwargs,
        "source": spec.source,
        "checkpoint": spec.checkpoint,
        "pretrained_file": spec.pretrained_file,
        "seed": seed,
        "dataset_spec": dataset_spec.to_config(),
        "top1": scores["top1"],
        "top5": scores["top5"],
        "recipe": recipe_dict,
    }
    teacher = Teacher(model, spec.model, classes, data_config, dataset_spec.name, metadata)
    return freeze(teacher, device), metrics


def _initial_model(spec: TeacherSpec, classes: int) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """The model before any training, its timm kwargs and its data config."""
    kwargs = dict(spec.model_kwargs)
    if spec.source == "train":
        model = models.create(spec.model, classes, kwargs)
        if spec.training_recipe().sincos_pos_init:
            models.init_sincos_pos_embed(model)
        h, w = model.patch_embed.img_size
        config = {**suite_data_config(h), "input_size": (3, h, w), **_overrides(spec)}
        return model, kwargs, models.model_data_config(model, config)
    if spec.source == "pretrained" or (spec.source == "finetune" and not spec.checkpoint and not spec.pretrained_file):
        head = models.pretrained_num_classes(spec.model)
        if spec.source == "pretrained" and not spec.pretrained_file and head and head != classes:
            raise SMIError(
                f"the pretrained head of '{spec.model}' has {head} classes but the dataset has {classes}; "
                "use source 'finetune' to train a new head."
            )
        model = models.create_pretrained(spec.model, classes, kwargs, spec.pretrained_file)
        return model, kwargs, models.model_data_config(model, spec.data_config)
    path = spec.checkpoint or spec.pretrained_file
    assert path is not None
    _check_exists(spec, path)
    meta = read_metadata(path)
    if meta is not None:
        kwargs = _suite_kwargs(spec, meta, path)
        if spec.source == "checkpoint" and int(meta["num_classes"]) != classes:
            raise SMIError(
                f"the classifier head of teacher file {path} has {meta['num_classes']} classes but the dataset has "
                f"{classes}; use a teacher trained on this dataset, or source 'finetune' to replace the head."
            )
    model = models.create_from_checkpoint(spec.model, classes, kwargs, path, replace_head=spec.source == "finetune")
    base = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["data_config"].items()} if meta else None
    config = {**base, **_overrides(spec)} if base else dict(_overrides(spec))
    return model, kwargs, models.model_data_config(model, config)


def _check_exists(spec: TeacherSpec, path: str) -> None:
    """A missing weights file is the user's checkpoint or a not yet fetched pretrained file."""
    if os.path.isfile(path):
        return
    if spec.checkpoint:
        raise SMIError(
            f"checkpoint {path} of the '{spec.model}' teacher does not exist; give in 'checkpoint' the path of a "
            "teacher file of this suite or of a timm checkpoint (.pth, .pt or .safetensors)."
        )
    raise hub.missing_file_error(path, spec.model)


def _suite_kwargs(spec: TeacherSpec, meta: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The model kwargs stored in a suite teacher file, checked against the spec."""
    if meta["model_name"] != spec.model:
        raise SMIError(f"teacher file {path} holds a '{meta['model_name']}', but the spec asks for '{spec.model}'.")
    stored = dict(meta["model_kwargs"])
    if spec.model_kwargs and dict(spec.model_kwargs) != stored:
        raise SMIError(
            f"model_kwargs {dict(spec.model_kwargs)} differ from those stored in {path} ({stored}); "
            "leave model_kwargs empty to use the stored ones."
        )
    return stored


def _overrides(spec: TeacherSpec) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in dict(spec.data_config or {}).items()}


def _recipe_dict(recipe: Recipe | None) -> dict[str, Any] | None:
    from smi.config import to_dict

    return to_dict(recipe) if recipe is not None else None
