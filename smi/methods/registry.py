"""The registry of inversion methods (and image sources such as noise and real data).

A method is a class with a frozen ``Params`` dataclass, registered under a name with
:func:`register_method`. The workflow and the CLI create methods by name with a parameter
dict from config; unknown names and unknown parameter keys are clear errors. Methods in the
``baselines`` package register themselves when it is imported, which :func:`available_methods`
and :func:`create_method` do on first use.
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from smi.config import from_dict, to_dict
from smi.errors import SMIError
from smi.inversion.types import InversionRequest, InversionResult

_METHODS: dict[str, type[InversionMethod]] = {}
#: Packages imported to discover registered methods (a third-party plugin can append to this).
PLUGIN_PACKAGES: list[str] = ["smi.methods.core", "baselines"]
_loaded = False

__all__ = [
    "PLUGIN_PACKAGES",
    "InversionMethod",
    "InversionRequest",
    "NoParams",
    "available_methods",
    "create_method",
    "method_class",
    "register_method",
]


@dataclass(frozen=True)
class NoParams:
    """For methods without parameters."""


class InversionMethod(ABC):
    """Base class of registered methods."""

    name: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    #: Whether the method optimises images through the teacher (False for noise / real data).
    synthesizes: ClassVar[bool] = True

    def __init__(self, params: Any) -> None:
        self.params = params

    def outputs_per_trajectory(self) -> int:
        """Output images one optimised sample yields (PRI yields several)."""
        return 1

    @abstractmethod
    def invert(self, request: InversionRequest) -> list[InversionResult]:
        """Produce images for ``request.targets``; one result per emission."""

    def describe(self) -> dict[str, Any]:
        """Name and parameters, for metadata and metrics."""
        return {
            "method": self.name,
            "method_params": to_dict(self.params) if dataclasses.is_dataclass(self.params) else {},
        }


M = TypeVar("M", bound=type[InversionMethod])


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator registering a method under ``name``."""

    def decorate(cls: M) -> M:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method name {name!r} is registered twice")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorate


def _load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package in PLUGIN_PACKAGES:
        importlib.import_module(package)


def available_methods() -> list[str]:
    """Names of all registered methods."""
    _load_plugins()
    return sorted(_METHODS)


def method_class(name: str) -> type[InversionMethod]:
    """The class registered under ``name``.

    Raises:
        SMIError: For an unknown name (the message lists the registered ones).
    """
    _load_plugins()
    if name not in _METHODS:
        raise SMIError(f"unknown method {name!r}; registered methods are {sorted(_METHODS)}.")
    return _METHODS[name]


def create_method(name: str, params: dict[str, Any] | None = None) -> InversionMethod:
    """Instantiate a registered method with parameters from config.

    Raises:
        SMIError: For an unknown method name or parameter key.
    """
    cls = method_class(name)
    return cls(from_dict(cls.Params, params, f"parameters of method {name!r}"))
