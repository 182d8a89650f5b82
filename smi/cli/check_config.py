"""Check a workflow config file as `snakemake -n` does (schema, datasets, models, methods, ...); YAML errors by line.

Reads the config file (YAML or JSON) and runs what ``snakemake -n`` runs before building the
DAG (the schema, the cross-references and :mod:`smi.validate`), without Snakemake. Writes
nothing; prints one line when the config passes. Snakemake reports a YAML syntax error in a
``--configfile`` without its line; this command names the line and column.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

COMMAND = "check-config"
#: The workflow folder: the schema and {repo} of external commands are found there.
REPO = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    parser.add_argument("config", type=Path, metavar="CONFIG", help="workflow config file (YAML or JSON)")
    parser.add_argument(
        "--local",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the jobs will run on this machine: check that a cuda device exists",
    )


def run(args: argparse.Namespace) -> int:
    """Check the config and print one line."""
    from snakemake.utils import validate as fill_defaults

    from smi.validate import SCHEMA_PATH, check_schema, check_workflow_config, load_config_file, machine_checks_enabled

    config = load_config_file(args.config)
    schema = REPO / SCHEMA_PATH
    check_schema(config, schema)
    fill_defaults(config, str(schema))  # the defaults the workflow fills in before its checks
    check_workflow_config(config, REPO, args.local, machine_checks_enabled(os.environ))
    print(f"{args.config}: no problem found")
    return 0
