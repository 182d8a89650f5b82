"""The ``smi`` command line: one thin entry point per workflow step.

Each public module in this package is a sub-command named after the module (underscores become
dashes: ``train_teacher.py`` is ``smi train-teacher``) and defines ``COMMAND``, ``HELP``,
``add_arguments(parser)`` and ``run(args)``. A new step is a new module; no shared file changes.
Only the module of the requested command is imported, so a workflow job does not pay for the
imports of every other step. :class:`smi.errors.SMIError` is printed as one line (exit 2).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from types import ModuleType
from typing import Sequence

from smi.errors import SMIError


def command_modules() -> dict[str, str]:
    """Sub-command name -> module name, found without importing the modules."""
    return {
        info.name.replace("_", "-"): info.name
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    }


def _load(command: str, module_name: str) -> ModuleType:
    module = importlib.import_module(f"{__name__}.{module_name}")
    if getattr(module, "COMMAND", None) != command:
        raise RuntimeError(f"smi.cli.{module_name} must define COMMAND = {command!r}")
    return module


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command (imports all of them: used for --help)."""
    parser = argparse.ArgumentParser(prog="smi", description="Sparse model inversion benchmark suite.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, module_name in sorted(command_modules().items()):
        module = _load(command, module_name)
        cmd = sub.add_parser(command, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    modules = command_modules()
    if argv and argv[0] in modules:
        module = _load(argv[0], modules[argv[0]])
        parser = argparse.ArgumentParser(prog=f"smi {argv[0]}", description=module.HELP)
        module.add_arguments(parser)
        args = parser.parse_args(argv[1:])
        args.command, run = argv[0], module.run
    else:
        args = build_parser().parse_args(argv)
        run = args._run
    try:
        result = run(args)
    except SMIError as exc:
        print(f"smi {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)
