"""``smi methods``: list the registered inversion methods and their parameters."""

from __future__ import annotations

import argparse
import dataclasses

COMMAND = "methods"
HELP = "List the registered inversion methods (and image sources) with their parameters and defaults."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    from smi.methods.registry import available_methods, method_class

    for name in available_methods():
        cls = method_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name}: {doc}")
        for field in dataclasses.fields(cls.Params):
            default = field.default if field.default is not dataclasses.MISSING else "(required)"
            print(f"    {field.name} = {default!r}")
    return 0
