"""List the registered inversion methods (and image sources) with their parameters and defaults.

Reads the method registry (:mod:`smi.methods.registry`, with the baselines registered into it);
writes nothing and prints one line per method and one per parameter.
"""

from __future__ import annotations

import argparse
import dataclasses

COMMAND = "methods"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser`` (it has none)."""
    del parser


def run(args: argparse.Namespace) -> int:
    """Print every method with its parameters."""
    from smi.methods.registry import available_methods, method_class

    for name in available_methods():
        cls = method_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name}: {doc}")
        for field in dataclasses.fields(cls.Params):
            default = field.default if field.default is not dataclasses.MISSING else "(required)"
            print(f"    {field.name} = {default!r}")
    return 0
