"""Names of the datasets and how each one is loaded.

One entry per dataset: its options dataclass, its splits, and loader functions. The public
functions of :mod:`smi.data` dispatch through :func:`dataset_entry`, so adding a dataset is
one entry here plus its module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from smi.data import cifar, digits, folders, shapes
from smi.errors import SMIError


@dataclass(frozen=True)
class DatasetEntry:
    """How to load one dataset.

    Attributes:
        options_cls: Frozen dataclass of its options.
        splits: Valid split names.
        load: ``load(options, root, split, data_config, with_masks) -> Dataset``.
        num_classes: ``num_classes(root) -> int``.
        needs_root: Whether the dataset lives in a user-given folder.
    """

    options_cls: type
    splits: tuple[str, ...]
    load: Callable[..., Any]
    num_classes: Callable[[str | None], int]
    needs_root: bool


def _embedded(loader: Callable[..., Any]) -> Callable[..., Any]:
    def load(options: Any, root: str | None, split: str, data_config: Any, with_masks: bool) -> Any:
        return loader(options, split, data_config, with_masks=with_masks)

    return load


def _from_root(name: str, loader: Callable[..., Any]) -> Callable[..., Any]:
    """The entry's ``load`` of a dataset read from a folder: ``loader(name, root, options, split, data_config)``."""

    def load(options: Any, root: str, split: str, data_config: Any, with_masks: bool) -> Any:
        if with_masks:
            raise SMIError(f"dataset '{name}' has no foreground masks; only 'shapes' has them.")
        return loader(name, root, options, split, data_config)

    return load


def _from_root_entries(
    names: tuple[str, ...],
    options_cls: type,
    splits: tuple[str, ...],
    loader: Callable[..., Any],
    num_classes: Callable[..., int],
) -> dict[str, DatasetEntry]:
    """One entry per dataset ``name`` of a module that reads several from a folder.

    ``loader(name, root, options, split, data_config)`` and ``num_classes(name, root)``.
    """
    return {
        name: DatasetEntry(options_cls, splits, _from_root(name, loader), partial(num_classes, name), needs_root=True)
        for name in names
    }


_ENTRIES: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(
        digits.DigitsOptions,
        digits.SPLITS,
        _embedded(digits.load_digits_split),
        lambda _root: digits.NUM_CLASSES,
        needs_root=False,
    ),
    "shapes": DatasetEntry(
        shapes.ShapesOptions,
        shapes.SPLITS,
        _embedded(shapes.load_shapes_split),
        lambda _root: shapes.NUM_CLASSES,
        needs_root=False,
    ),
    **_from_root_entries(
        ("imagenet", "flowers102", "cub200", "imagefolder"),
        folders.FolderOptions,
        folders.SPLITS,
        folders.load_folder_split,
        folders.folder_num_classes,
    ),
    **_from_root_entries(
        tuple(cifar.LAYOUTS), cifar.CifarOptions, cifar.SPLITS, cifar.load_cifar_split, cifar.cifar_num_classes
    ),
}

#: Names of all datasets.
DATASETS: tuple[str, ...] = tuple(_ENTRIES)


def dataset_entry(name: str) -> DatasetEntry:
    """The entry of dataset ``name``.

    Raises:
        SMIError: If the name is unknown.
    """
    try:
        return _ENTRIES[name]
    except KeyError:
        raise SMIError(f"unknown dataset '{name}'; choose one of {list(DATASETS)}.") from None
