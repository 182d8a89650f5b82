"""The ``smi`` command line: one thin entry point per workflow step.

Each module in this package that defines ``COMMAND`` (its sub-command name), ``HELP``,
``add_arguments(parser)`` and ``run(args)`` becomes a sub-command, so a new step is a new
module and no shared file changes. :class:`smi.errors.SMIError` is printed as one line.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

from smi.errors import SMIError


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every discovered sub-command."""
    parser = argparse.ArgumentParser(prog="smi", description="Sparse model inversion benchmark suite.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        name = getattr(module, "COMMAND", None)
        if name is None:
            continue
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        result = args._run(args)
    except SMIError as exc:
        print(f"smi {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)
