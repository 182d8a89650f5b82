"""Write the paper-style tables (.md, .tex, .html) from summary.csv; a table without data gets a 'no data' file.

Reads ``summary.csv`` and its ``curves.csv`` beside it (``smi aggregate``); writes each table of
:func:`smi.report.tables.build_tables` as Markdown, LaTeX (booktabs) and HTML into ``--out-dir``.
"""

from __future__ import annotations

import argparse

from smi.cli import _options as options

COMMAND = "tables"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    options.add_summary_arguments(parser, "table")
    options.add_target_fraction_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Build the tables and write them."""
    from smi.report.aggregate import read_aggregate
    from smi.report.tables import build_tables, write_tables

    tables = build_tables(read_aggregate(args.summary), args.target_fraction)
    written = write_tables(tables, args.out_dir)
    print(f"wrote {len(written)} table files to {args.out_dir}")
    return 0
