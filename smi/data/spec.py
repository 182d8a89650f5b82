"""Dataset specification: which dataset, where it lives, and its options.

A :class:`DatasetSpec` is what configs and the CLI pass around (``--dataset-spec JSON``). The
dataset-specific ``options`` are validated by the dataset's own options dataclass, so a typo in
an option name is rejected with the list of valid names rather than silently ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from smi.config import from_dict
from smi.errors import SMIError

#: Environment variables that give a dataset's root folder when the spec has no ``root``.
ROOT_ENV_VARS: dict[str, str] = {
    "imagenet": "SMI_IMAGENET_ROOT",
    "flowers102": "SMI_FLOWERS_ROOT",
    "cub200": "SMI_CUB_ROOT",
    "imagefolder": "SMI_IMAGEFOLDER_ROOT",
    "cifar10": "SMI_CIFAR10_ROOT",
    "cifar100": "SMI_CIFAR100_ROOT",
}


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset by name, with an optional root folder and dataset-specific options.

    Attributes:
        name: One of :data:`smi.data.DATASETS`.
        root: Folder of a real dataset; when ``None`` the dataset's environment variable
            (:data:`ROOT_ENV_VARS`) is used. Ignored by the embedded datasets.
        options: Dataset-specific options (see the options dataclass of each dataset).
    """

    name: str
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> DatasetSpec:
        """Build and validate a spec from a config dict (unknown keys and options rejected)."""
        spec = from_dict(cls, values, "dataset spec")
        if not isinstance(spec.options, Mapping):
            raise SMIError(f"dataset spec 'options' must be a mapping, got {type(spec.options).__name__}.")
        spec = cls(spec.name, spec.root, dict(spec.options))
        from smi.data.registry import dataset_entry  # local: the registry imports the loaders

        entry = dataset_entry(spec.name)
        from_dict(entry.options_cls, spec.options, f"options of dataset '{spec.name}'")
        return spec

    def to_config(self) -> dict[str, Any]:
        """The plain-dict form accepted by :meth:`from_config`."""
        return {"name": self.name, "root": self.root, "options": dict(self.options)}


def resolve_root(spec: DatasetSpec) -> str:
    """The dataset's root folder from the spec or its environment variable.

    Raises:
        SMIError: If neither gives a folder.
    """
    if spec.root:
        return os.path.expanduser(spec.root)
    env = ROOT_ENV_VARS.get(spec.name)
    if env and os.environ.get(env):
        return os.path.expanduser(os.environ[env])
    hint = f" or set the environment variable {env}" if env else ""
    raise SMIError(f"dataset '{spec.name}' needs its folder: give 'root' in the dataset spec{hint}.")
