"""The ``smi`` command line: one thin entry point per workflow step.

Each public module in this package is a sub-command named after the module (underscores become
dashes: ``train_teacher.py`` is ``smi train-teacher``) and defines ``COMMAND``,
``add_arguments(parser)`` and ``run(args)``. A new step is a new module; no shared file changes.
Only the module of the requested command is imported, so a workflow job does not pay for the
imports of every other step. :class:`smi.errors.SMIError` and argparse errors are printed as
one line (exit 2), without the usage block; Ctrl-C is one line too (exit 130).

Every command follows the same conventions (docs/architecture.md, "Commands"; checked by
tests/test_cli_conventions.py):

- The module docstring's first line says what the command does; it is the command's help in
  ``smi --help`` and ``smi <command> --help`` (:func:`command_help`). The paragraphs below it
  say what the command reads and what it writes. ``add_arguments`` and ``run`` have one-line
  docstrings.
- An option that several commands take is declared once, by a helper in
  :mod:`smi.cli._options`. Option helps are lower-case phrases without a final period (as
  argparse's own ``-h``); :class:`HelpFormatter` appends ``(default: X)`` to each.
- stdout carries the result only: one summary line per output a step writes, or the listing or
  table the command exists to print (``compare``, ``methods``, ``bench-inversion``). Progress
  bars go to stderr; so do errors: a command raises :class:`smi.errors.SMIError` and
  :func:`main` prints it as one line. Commands never print errors or exit themselves.

Before a command runs, the folders of its outputs (the options in :data:`OUTPUT_FILE_OPTIONS`
and :data:`OUTPUT_FOLDER_OPTIONS`) are checked for writability, so that an unwritable path
fails at once instead of after the work.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from smi.errors import SMIError

#: Argument destinations that name output files / folders in every sub-command.
OUTPUT_FILE_OPTIONS: tuple[str, ...] = ("out", "metrics", "grid", "save_student")
OUTPUT_FOLDER_OPTIONS: tuple[str, ...] = ("out_dir",)
#: Exit status of an interrupted command (128 + SIGINT, the shell convention).
INTERRUPTED_STATUS = 130


class HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default the same way: ``(default: X)`` after its help.

    Added where the default is a value (not ``None``, ``False`` or empty) and the help does not
    already say what the default is (``(default: the model's)``).
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text, default = action.help or "", action.default
        unset = default is None or default is False or default == argparse.SUPPRESS or default in ([], {})
        if not action.option_strings or unset or "(default" in text:
            return action.help
        return f"{text} (default: %(default)s)"


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``prog: error: message``), no usage block."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def command_modules() -> dict[str, str]:
    """Sub-command name -> module name, found without importing the modules."""
    return {
        info.name.replace("_", "-"): info.name
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    }


def command_help(module: ModuleType) -> str:
    """A command's one-line help: the first line of its module docstring (empty under ``python -OO``)."""
    return (module.__doc__ or "").strip().split("\n", 1)[0]


def _load(command: str, module_name: str) -> ModuleType:
    module = importlib.import_module(f"{__name__}.{module_name}")
    if getattr(module, "COMMAND", None) != command:
        raise RuntimeError(f"smi.cli.{module_name} must define COMMAND = {command!r}")
    return module


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command (imports all of them: used for --help)."""
    parser = OneLineParser(prog="smi", description="Sparse model inversion benchmark suite.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, module_name in sorted(command_modules().items()):
        module = _load(command, module_name)
        cmd = sub.add_parser(command, help=command_help(module), description=command_help(module))
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    modules = command_modules()
    try:  # argparse exits on --help and on a bad argument; the status is returned like any other
        if argv and argv[0] in modules:
            module = _load(argv[0], modules[argv[0]])
            parser = OneLineParser(prog=f"smi {argv[0]}", description=command_help(module))
            module.add_arguments(parser)
            args = parser.parse_args(argv[1:])
            args.command, run = argv[0], module.run
        else:
            args = build_parser().parse_args(argv)
            run = args._run
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        check_outputs(args)
        result = run(args)
    except SMIError as exc:
        print(f"smi {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Outputs are renamed into place only when complete, so an interrupt leaves none half-written.
        print(
            f"smi {args.command}: interrupted; nothing was written that is not complete (each output file "
            "appears only when finished); rerun the step to finish it.",
            file=sys.stderr,
        )
        return INTERRUPTED_STATUS
    return int(result or 0)


def check_outputs(args: argparse.Namespace) -> None:
    """Check that the command's output files and folders can be written (see the module doc)."""
    from smi.cli._common import check_writable

    def values(names: tuple[str, ...]) -> list[str]:
        found: list[str] = []
        for name in names:
            value = getattr(args, name, None)
            found += (
                [str(v) for v in value] if isinstance(value, (list, tuple)) else [] if value is None else [str(value)]
            )
        return found

    check_writable(values(OUTPUT_FILE_OPTIONS), values(OUTPUT_FOLDER_OPTIONS))
