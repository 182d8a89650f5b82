"""Baseline methods, one module each, registered into the registry of :mod:`smi.methods.registry`.

Importing this package imports every module in it, so a new baseline is one new module.
"""

from __future__ import annotations

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
