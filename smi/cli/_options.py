"""The options that several sub-commands take, each declared here once.

A command adds them with the ``add_*`` functions below instead of its own ``add_argument``, so
an option's name, type, default and help cannot drift apart between commands
(tests/test_cli_conventions.py checks that no command declares one of them differently). Helps
are lower-case phrases; the parser appends ``(default: X)`` (:class:`smi.cli.HelpFormatter`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smi.cli._common import json_arg, nonneg_int, positive_int, unit_fraction

#: Torch CPU threads unless ``--threads`` says otherwise. Fixed rather than torch's choice (the
#: machine's core count): results such as trained weights change with the thread count, so a
#: default that follows the machine would make the same command give different numbers.
DEFAULT_THREADS = 1
#: How the help of every JSON option says what it takes (see :func:`json_arg`).
JSON_VALUE = "as JSON text or a .json file"
#: A parser or one of its argument groups: both take ``add_argument``.
ArgumentTarget = argparse.ArgumentParser | argparse._ArgumentGroup


def add_device_arguments(
    parser: argparse.ArgumentParser,
    device_help: str = "cpu, cuda or cuda:N",
    threads_help: str = "CPU threads for torch; results can depend on it, every record stores it",
) -> None:
    """``--device`` and ``--threads`` (the helps change for a command that hands them on)."""
    parser.add_argument("--device", default="cpu", help=device_help)
    parser.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS, help=threads_help)


def add_foreign_set_argument(parser: argparse.ArgumentParser) -> None:
    """``--allow-foreign-set``: accept an image set made from another teacher (recorded in the metrics)."""
    parser.add_argument(
        "--allow-foreign-set",
        action="store_true",
        help="accept an image set inverted from another teacher (a deliberate transfer experiment; "
        "recorded in the metrics)",
    )


def add_teacher_arguments(parser: argparse.ArgumentParser) -> None:
    """``--teacher``, the teacher file the command reads, and ``--teacher-id``."""
    parser.add_argument("--teacher", required=True, help="teacher file (.pt) written by `smi train-teacher`")
    add_teacher_id_argument(parser)


def add_dataset_spec_argument(
    parser: argparse.ArgumentParser, what: str = "the teacher's dataset", absent: str | None = None
) -> None:
    """``--dataset-spec``: a :class:`smi.data.DatasetSpec` as JSON.

    Args:
        parser: The command's parser.
        what: The dataset the spec names, for the help.
        absent: What the command does without the option; ``None`` makes it required.
    """
    default = "" if absent is None else f" (default: {absent})"
    parser.add_argument(
        "--dataset-spec", type=json_arg, required=absent is None, help=f"{what}: a dataset spec {JSON_VALUE}{default}"
    )


def add_output_arguments(parser: argparse.ArgumentParser, out: str, metrics: bool = False, grid: bool = False) -> None:
    """``--out`` (required), and the optional outputs ``--metrics`` (required) and ``--grid``.

    Args:
        parser: The command's parser.
        out: What ``--out`` holds, for the help (``"metrics JSON"``, ``"image-set file (.pt)"``).
        metrics: Add ``--metrics``, the metrics JSON beside a non-JSON ``--out``.
        grid: Add ``--grid``, a PNG grid of the images.
    """
    parser.add_argument("--out", required=True, help=f"{out} to write")
    if metrics:
        parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    if grid:
        parser.add_argument("--grid", default=None, help="PNG grid of the images to write (default: none)")


def add_seed_argument(parser: argparse.ArgumentParser, what: str = "the job's random draws") -> None:
    """``--seed``; ``what`` says what it seeds."""
    parser.add_argument("--seed", type=nonneg_int, default=0, help=f"seed of {what}")


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bars on stderr (the workflow's logs stay short)."""
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def add_inversion_arguments(parser: argparse.ArgumentParser) -> None:
    """``--batch-size``, ``--iterations`` and ``--inversion-config``: what :func:`inversion_config` reads."""
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, help="images optimised together (default: InversionConfig's)"
    )
    parser.add_argument(
        "--iterations",
        type=positive_int,
        default=None,
        help="optimisation iterations (default: InversionConfig's; the paper runs 4000)",
    )
    add_inversion_config_argument(parser)


def add_inversion_config_argument(parser: ArgumentTarget) -> None:
    """``--inversion-config``: :class:`smi.inversion.InversionConfig` keys as JSON."""
    add_json_argument(parser, "--inversion-config", "InversionConfig keys (iterations, lr, tv_l2, ...)", "none")


def add_method_params_argument(parser: ArgumentTarget) -> None:
    """``--method-params``: the parameters of a registered inversion method as JSON."""
    add_json_argument(parser, "--method-params", "the method's parameters (see `smi methods`)", "its defaults")


def add_json_argument(parser: ArgumentTarget, flag: str, what: str, absent: str | None = None) -> None:
    """An option whose value is a JSON object (:func:`smi.cli._common.json_arg`), e.g. a spec or a recipe.

    Args:
        parser: The command's parser (or an argument group).
        flag: The option, e.g. ``--recipe``.
        what: What the object holds, for the help.
        absent: What an absent option means, for the help (the value is then ``{}``); ``None``
            makes the option required.
    """
    if absent is None:
        parser.add_argument(flag, type=json_arg, required=True, help=f"{what} {JSON_VALUE}")
    else:
        parser.add_argument(flag, type=json_arg, default={}, help=f"{what} {JSON_VALUE} (default: {absent})")


def add_summary_arguments(parser: argparse.ArgumentParser, outputs: str) -> None:
    """``--summary`` (read) and ``--out-dir`` (written) of a report command; ``outputs`` names its files."""
    parser.add_argument(
        "--summary",
        type=Path,
        required=True,
        help="summary.csv written by `smi aggregate` (the curve tables beside it are read too)",
    )
    parser.add_argument("--out-dir", type=Path, required=True, help=f"folder for the {outputs} files")


def add_target_fraction_argument(parser: argparse.ArgumentParser) -> None:
    """``--target-fraction`` of the distillation table's "epochs to reach" column."""
    from smi.report.defaults import DEFAULT_TARGET_FRACTION

    parser.add_argument(
        "--target-fraction",
        type=unit_fraction,
        default=DEFAULT_TARGET_FRACTION,
        help="fraction of the dense student's final top-1 for 'epochs to reach' in the distillation table",
    )


def add_teacher_id_argument(parser: argparse.ArgumentParser) -> None:
    """``--teacher-id``: the teacher's id in the records (the workflow passes its config id)."""
    parser.add_argument(
        "--teacher-id", default=None, help="teacher id stored in the records (default: the teacher file's stem)"
    )
