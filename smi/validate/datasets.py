"""Checks of the datasets an experiment uses: name, options, and a folder dataset's root layout."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smi.errors import SMIError
from smi.validate.schema import at_key

#: Top-level entries each folder dataset's root must have (the cheap part of its layout).
FOLDER_LAYOUT: dict[str, tuple[tuple[str, ...], ...]] = {
    # Each inner tuple is a set of alternatives: one of them must exist.
    "imagenet": (("train/",), ("val/",)),
    "imagefolder": (("train/",), ("test/", "val/")),
    "flowers102": (("jpg/",), ("imagelabels.mat",), ("setid.mat",)),
    "cub200": (("images/",), ("images.txt",), ("image_class_labels.txt",), ("train_test_split.txt",)),
}


def check_dataset(dataset_id: str, entry: Mapping[str, Any], check_machine: bool) -> None:
    """Check a dataset entry's name and options and, on this machine, its root folder's layout."""
    from smi.data import DatasetSpec
    from smi.data.registry import dataset_entry
    from smi.data.spec import resolve_root

    key = f"datasets.{dataset_id}"
    try:
        spec = DatasetSpec.from_config(
            {"name": entry["name"], "root": entry.get("root"), "options": entry.get("options", {})}
        )
        if not dataset_entry(spec.name).needs_root or not check_machine:
            return
        root = Path(resolve_root(spec))
    except SMIError as exc:
        raise at_key(key, exc) from None
    if not root.is_dir():
        raise SMIError(
            f"{key}.root: folder {root} does not exist (or is not a folder); give the folder of dataset '{spec.name}'."
        )
    for alternatives in FOLDER_LAYOUT.get(spec.name, ()):
        if not any((root / name).is_dir() if name.endswith("/") else (root / name).is_file() for name in alternatives):
            raise SMIError(
                f"{key}.root: {root} lacks {' or '.join(alternatives)}; dataset '{spec.name}' needs "
                f"{', '.join(' or '.join(a) for a in FOLDER_LAYOUT[spec.name])} under its root."
            )
