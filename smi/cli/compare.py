"""Print the table cells that differ between two runs (RUN_B - RUN_A); always exits 0.

A run is a results folder holding ``summary.csv``, or the CSV itself. Reads the two summary
tables (and the curve tables beside them); prints the cells that differ beyond the tolerances
(:mod:`smi.report.compare`); ``--out`` also writes every compared cell as CSV.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smi.cli import _options as options
from smi.cli._common import nonneg_float

COMMAND = "compare"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    parser.add_argument("run_a", type=Path, metavar="RUN_A", help="reference run (results/<run> or its summary.csv)")
    parser.add_argument("run_b", type=Path, metavar="RUN_B", help="run compared with RUN_A")
    parser.add_argument("--atol", type=nonneg_float, default=0.0, help="absolute tolerance per cell")
    parser.add_argument(
        "--rtol", type=nonneg_float, default=0.0, help="relative tolerance per cell, as a fraction of RUN_A's value"
    )
    parser.add_argument("--all", action="store_true", help="list equal cells too")
    options.add_target_fraction_argument(parser)
    parser.add_argument(
        "--out", type=Path, default=None, help="CSV to write every compared cell to as well (default: none)"
    )


def run(args: argparse.Namespace) -> int:
    """Compare the runs and print the differing cells."""
    from smi.io import atomic_path
    from smi.report.compare import Tolerance, compare_runs, format_comparison

    for name, path in (("RUN_A", args.run_a), ("RUN_B", args.run_b)):
        check_summary_table(name, path)
    diff = compare_runs(args.run_a, args.run_b, Tolerance(args.atol, args.rtol), args.target_fraction)
    print(format_comparison(diff, show_all=args.all))
    if args.out is not None:
        with atomic_path(args.out) as tmp:
            diff.to_csv(tmp, index=False)
    return 0


def check_summary_table(name: str, path: Path) -> None:
    """Raise unless ``path`` is (or is a folder holding) a summary table of ``smi aggregate``.

    Any other CSV would compare as "0 cells" or "every cell only in A", which reads like a result.

    Raises:
        SMIError: For a missing file, an unreadable CSV, or a CSV without metrics records.
    """
    import pandas as pd

    from smi.errors import SMIError
    from smi.report.aggregate import KINDS, SUMMARY_NAME

    table = path / SUMMARY_NAME if path.is_dir() else path
    if not table.is_file():
        raise SMIError(
            f"{name} {table} does not exist; give a results folder holding {SUMMARY_NAME} "
            "(run `smi aggregate` first) or the CSV itself."
        )
    try:
        kinds = pd.read_csv(table, usecols=["kind"])["kind"]
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        kinds = None
    if kinds is None or not kinds.isin(KINDS).any():
        raise SMIError(
            f"{name} {table} is not a summary table of `smi aggregate` (no metrics records with a 'kind' "
            f"of {', '.join(KINDS)}); give the {SUMMARY_NAME} of a run."
        )
