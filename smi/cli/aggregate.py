"""``smi aggregate``: all metrics JSON of a run -> ``summary.csv`` plus long curve tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMMAND = "aggregate"
HELP = (
    "Collect metrics JSON files into summary.csv "
    "(and curves.csv, active_tokens.csv, loss_curves.csv, activation_ranges.csv beside it)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--inputs", nargs="+", type=Path, metavar="JSON", help="metrics files to aggregate")
    source.add_argument("--root", type=Path, help="results folder searched recursively for metrics records")
    parser.add_argument("--out", type=Path, required=True, help="summary CSV to write, e.g. results/<run>/summary.csv")


def run(args: argparse.Namespace) -> int:
    """Aggregate and write the tables."""
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
    print(f"aggregated {len(agg.summary)} records into {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0
