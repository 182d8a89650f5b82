"""Collect metrics JSON files into summary.csv and the long curve tables beside it.

Reads the metrics records named by ``--inputs``, or every one under ``--root``; writes
``summary.csv`` (``--out``) and, beside it, ``curves.csv``, ``active_tokens.csv``,
``loss_curves.csv`` and ``activation_ranges.csv`` (:mod:`smi.report.aggregate`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

COMMAND = "aggregate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--inputs", nargs="+", type=Path, metavar="JSON", help="metrics files to aggregate")
    source.add_argument("--root", type=Path, help="results folder searched recursively for metrics records")
    parser.add_argument("--out", type=Path, required=True, help="summary CSV to write, e.g. results/<run>/summary.csv")


def run(args: argparse.Namespace) -> int:
    """Aggregate the records and write the tables."""
    from smi.errors import SMIError
    from smi.report.aggregate import aggregate_files, find_metrics, write_aggregate

    if args.root is not None:
        paths = find_metrics(args.root)
        if not paths:
            raise SMIError(f"no metrics records (JSON with a 'kind' key) under {args.root}; run the workflow first.")
        agg = aggregate_files(paths, root=args.root)
    else:
        agg = aggregate_files(args.inputs)
    written = write_aggregate(agg, args.out)
    print(f"aggregated {len(agg.summary)} records into {', '.join(str(p) for p in written)}")
    return 0
