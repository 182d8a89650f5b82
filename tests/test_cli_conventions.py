"""The conventions every ``smi`` command follows (smi/cli/__init__.py; docs/architecture.md, "Commands")."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from types import ModuleType

import pytest

from smi.cli import HelpFormatter, OneLineParser, _load, _options, build_parser, command_help, command_modules, main
from smi.cli._common import json_arg

REPO = Path(__file__).resolve().parents[1]
COMMANDS = sorted(command_modules().items())
#: The longest first docstring line that fits the 120-character limit after the opening quotes.
MAX_HELP_CHARS = 117
#: Shared options that some commands declare differently on purpose (and always did): ``--out``
#: is a JSON, an image set, a CSV or several files; batch size and iterations have per-command
#: defaults; ``fetch-weights`` takes a plain ``--out-dir`` string.
PER_COMMAND: frozenset[str] = frozenset({"--out", "--batch-size", "--iterations", "--out-dir"})


def _command(command: str, module_name: str) -> tuple[ModuleType, argparse.ArgumentParser]:
    module = _load(command, module_name)
    parser = OneLineParser(prog=f"smi {command}")
    module.add_arguments(parser)
    return module, parser


def _definition(action: argparse.Action) -> tuple:
    """What the command line accepts for an option (its help and required-ness aside)."""
    default = action.default if not isinstance(action.default, dict | list) else repr(action.default)
    return type(action).__name__, action.type, default, action.nargs, action.choices, action.const


def _reference() -> dict[str, argparse.Action]:
    """Every shared option, as the helpers of :mod:`smi.cli._options` declare it."""
    parser = OneLineParser(prog="reference")
    _options.add_teacher_arguments(parser)
    _options.add_dataset_spec_argument(parser)
    _options.add_output_arguments(parser, "file", metrics=True, grid=True)
    _options.add_seed_argument(parser)
    _options.add_progress_argument(parser)
    _options.add_device_arguments(parser)
    _options.add_foreign_set_argument(parser)
    _options.add_inversion_arguments(parser)
    _options.add_method_params_argument(parser)
    _options.add_summary_arguments(parser, "report")
    _options.add_target_fraction_argument(parser)
    return {
        flag: action for action in parser._actions for flag in action.option_strings if flag not in ("-h", "--help")
    }


@pytest.mark.parametrize("command,module_name", COMMANDS, ids=[c for c, _ in COMMANDS])
def test_module_docstring_is_the_help_then_what_the_command_reads_and_writes(command, module_name) -> None:
    module, _ = _command(command, module_name)
    first, _, body = (module.__doc__ or "").partition("\n")
    assert first and first == command_help(module), f"smi.cli.{module_name} needs a module docstring"
    assert first.endswith(".") and first[0].isupper() and len(first) <= MAX_HELP_CHARS, first
    assert body.startswith("\n") and body.strip(), "a blank line, then what the command reads and writes"
    assert inspect.getdoc(module.add_arguments), f"smi.cli.{module_name}.add_arguments needs a docstring"
    assert inspect.getdoc(module.run), f"smi.cli.{module_name}.run needs a docstring"


def test_smi_help_lists_every_command_with_its_docstring_line() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    shown = {choice.dest: choice.help for choice in sub._choices_actions}
    assert shown == {command: command_help(_load(command, name)) for command, name in COMMANDS}


@pytest.mark.parametrize("command,module_name", COMMANDS, ids=[c for c, _ in COMMANDS])
def test_every_option_has_a_lower_case_help_and_shows_its_default_one_way(command, module_name) -> None:
    _, parser = _command(command, module_name)
    formatter = HelpFormatter(prog="smi")
    for action in parser._actions:
        name = f"smi {command} {'/'.join(action.option_strings) or action.dest}"
        assert action.help, f"{name} has no help"
        word = action.help.split()[0]
        assert not (word[0].isupper() and word[1:].islower()), f"{name}: a lower-case phrase: {action.help!r}"
        assert not action.help.endswith("."), f"{name}: no final period: {action.help!r}"
        text = formatter._get_help_string(action) or ""
        assert text.count("(default:") <= 1, f"{name} says its default twice: {text!r}"
        default = action.default
        valued = not (default is None or default is False or default in ([], {}) or default == argparse.SUPPRESS)
        if action.option_strings and valued:
            assert "(default" in text, f"{name} does not show its default"
    rendered = parser.format_help()
    for unset in ("None", "False", "[]", "{}"):
        assert f"(default: {unset})" not in rendered, command


def test_shared_options_are_declared_the_same_way_by_every_command() -> None:
    reference = _reference()
    seen: dict[str, set[str]] = {}
    for command, module_name in COMMANDS:
        _, parser = _command(command, module_name)
        for action in parser._actions:
            for flag in action.option_strings:
                if flag in reference and flag not in PER_COMMAND:
                    assert _definition(action) == _definition(reference[flag]), (
                        f"smi {command} declares {flag} differently from smi.cli._options; use its helper"
                    )
                    seen.setdefault(flag, set()).add(command)
                if action.type is json_arg:  # every JSON option: {} or None when absent, never another default
                    assert action.required or action.default in ({}, None), (command, flag)
    # The check has teeth: the most shared options appear in many commands.
    assert len(seen["--teacher"]) >= 8 and len(seen["--seed"]) >= 9 and len(seen["--threads"]) >= 11, seen


def test_a_redeclared_shared_option_would_be_caught() -> None:
    parser = OneLineParser(prog="drift")
    parser.add_argument("--seed", type=int, default=0)  # plain int: a negative seed would pass
    (action,) = [a for a in parser._actions if "--seed" in a.option_strings]
    assert _definition(action) != _definition(_reference()["--seed"])


def test_a_step_prints_its_result_on_stdout_and_nothing_on_stderr(tmp_path, capsys) -> None:
    config = tmp_path / "ci.yaml"
    config.write_text((REPO / "config" / "ci.yaml").read_text())
    assert main(["check-config", str(config), "--no-local"]) == 0
    out, err = capsys.readouterr()
    assert out == f"{config}: no problem found\n" and err == ""
