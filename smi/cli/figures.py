"""``smi figures``: ``summary.csv`` (and image sets) -> PNG and SVG figures with stable names."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smi.cli._common import positive_int
from smi.report.defaults import DEFAULT_GRID_CLASSES
from smi.report.names import GRID_FIGURE_NAME, SUMMARY_FIGURE_NAMES

COMMAND = "figures"
HELP = (
    f"Write {', '.join(SUMMARY_FIGURE_NAMES)} (.png, .svg) from summary.csv, and {GRID_FIGURE_NAME} from --image-sets."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    parser.add_argument(
        "--summary",
        type=Path,
        required=True,
        help="summary.csv written by `smi aggregate` (curve tables are read from the same folder)",
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for the figure files")
    parser.add_argument(
        "--image-sets",
        nargs="+",
        type=Path,
        default=None,
        metavar="PT",
        help=f"image-set files (one per method, plus one made by the 'real' method) for {GRID_FIGURE_NAME}",
    )
    parser.add_argument(
        "--grid-classes",
        type=positive_int,
        default=DEFAULT_GRID_CLASSES,
        help=f"number of classes (columns) in {GRID_FIGURE_NAME} (default %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    """Build and save the figures."""
    from smi.report.aggregate import read_aggregate
    from smi.report.figures import build_figures, save_figure
    from smi.report.grids import image_grid_figure, load_image_sets

    figures = build_figures(read_aggregate(args.summary))
    if args.image_sets:
        figures[GRID_FIGURE_NAME] = image_grid_figure(load_image_sets(args.image_sets), args.grid_classes)
    written = [path for name, fig in figures.items() for path in save_figure(fig, args.out_dir, name)]
    print(f"wrote {len(written)} figure files to {args.out_dir}", file=sys.stderr)
    return 0
