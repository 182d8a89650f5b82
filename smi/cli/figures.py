"""Write the report's figures (.png, .svg) from summary.csv, and the image grid from --image-sets.

Reads ``summary.csv`` and the curve tables beside it (``smi aggregate``), and with
``--image-sets`` the image-set files; writes each figure as PNG and SVG into ``--out-dir``
under the stable names of :mod:`smi.report.names`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smi.cli import _options as options
from smi.cli._common import positive_int
from smi.report.defaults import DEFAULT_GRID_CLASSES
from smi.report.names import GRID_FIGURE_NAME

COMMAND = "figures"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    options.add_summary_arguments(parser, "figure")
    parser.add_argument(
        "--image-sets",
        nargs="+",
        type=Path,
        default=None,
        metavar="PT",
        help=f"image-set files (one per method, plus one made by the 'real' method) for {GRID_FIGURE_NAME} "
        "(default: none, no grid)",
    )
    parser.add_argument(
        "--grid-classes",
        type=positive_int,
        default=DEFAULT_GRID_CLASSES,
        help=f"number of classes (columns) in {GRID_FIGURE_NAME}",
    )


def run(args: argparse.Namespace) -> int:
    """Build the figures and save them."""
    from smi.report.aggregate import read_aggregate
    from smi.report.figures import build_figures, save_figure
    from smi.report.grids import image_grid_figure, load_image_sets

    figures = build_figures(read_aggregate(args.summary))
    if args.image_sets:
        figures[GRID_FIGURE_NAME] = image_grid_figure(load_image_sets(args.image_sets), args.grid_classes)
    written = [path for name, fig in figures.items() for path in save_figure(fig, args.out_dir, name)]
    print(f"wrote {len(written)} figure files to {args.out_dir}")
    return 0
