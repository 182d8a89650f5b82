"""Datasets for teachers and evaluators: embedded (``digits``, ``shapes``) and real folders.

Public API:

- :class:`DatasetSpec` - name, root, options (``DatasetSpec.from_config`` rejects unknown keys).
- :func:`load_dataset` - a split as a ``torch.utils.data.Dataset`` of normalised images.
- :func:`num_classes`, :data:`DATASETS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch.utils.data import Dataset

from smi.config import from_dict
from smi.data.registry import DATASETS, dataset_entry
from smi.data.spec import ROOT_ENV_VARS, DatasetSpec, resolve_root
from smi.data.tensors import TensorImageDataset
from smi.data.transforms import suite_data_config
from smi.errors import SMIError

__all__ = [
    "DATASETS",
    "ROOT_ENV_VARS",
    "DatasetSpec",
    "TensorImageDataset",
    "load_dataset",
    "num_classes",
    "splits",
    "suite_data_config",
]


def load_dataset(spec: DatasetSpec, split: str, data_config: Mapping[str, Any], with_masks: bool = False) -> Dataset:
    """Load one split of a dataset, preprocessed for a model with ``data_config``.

    Args:
        spec: The dataset.
        split: ``train`` or ``test``; ``shapes`` also has ``test_correlated``.
        data_config: timm data config (``input_size`` (C, H, W), ``mean``, ``std``, and for
            real datasets ``interpolation``, ``crop_pct``, ``crop_mode``).
        with_masks: Return ``(image, label, fg_mask)`` items (``shapes`` only); ``fg_mask`` is
            a bool (H, W) tensor at the input size.

    Returns:
        A dataset of ``(image, label)`` items, the image a normalised float (C, H, W) tensor.

    Raises:
        SMIError: Unknown dataset, split or option; missing or malformed folder.
    """
    entry = dataset_entry(spec.name)
    if split not in entry.splits:
        raise SMIError(f"dataset '{spec.name}' has no split '{split}'; choose one of {list(entry.splits)}.")
    options = from_dict(entry.options_cls, spec.options, f"options of dataset '{spec.name}'")
    root = resolve_root(spec) if entry.needs_root else None
    return entry.load(options, root, split, dict(data_config), with_masks)


def num_classes(spec: DatasetSpec) -> int:
    """Number of classes of the dataset (for folder datasets, read from its index files)."""
    entry = dataset_entry(spec.name)
    return int(entry.num_classes(resolve_root(spec) if entry.needs_root else None))


def splits(spec: DatasetSpec) -> tuple[str, ...]:
    """The split names the dataset offers."""
    return dataset_entry(spec.name).splits
