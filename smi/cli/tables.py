"""``smi tables``: ``summary.csv`` -> paper-style tables in Markdown, LaTeX (booktabs) and HTML."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smi.cli._common import unit_fraction
from smi.report.defaults import DEFAULT_TARGET_FRACTION

COMMAND = "tables"
HELP = (
    "Write efficiency, quantization, distillation and shapes tables (.md, .tex, .html) from summary.csv; "
    "a table without data gets a short 'no data' file."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    parser.add_argument(
        "--summary",
        type=Path,
        required=True,
        help="summary.csv written by `smi aggregate` (its curves.csv is read from the same folder)",
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for the table files")
    parser.add_argument(
        "--target-fraction",
        type=unit_fraction,
        default=DEFAULT_TARGET_FRACTION,
        help="fraction of the dense student's final top-1 for 'epochs to reach' (default %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    """Build and write the tables."""
    from smi.report.aggregate import read_aggregate
    from smi.report.tables import build_tables, write_tables

    tables = build_tables(read_aggregate(args.summary), args.target_fraction)
    written = write_tables(tables, args.out_dir)
    print(f"wrote {len(written)} table files to {args.out_dir}", file=sys.stderr)
    return 0
