"""The names of the report's tables and figures, said once.

The workflow's rules (workflow/rules/report.smk), the table and figure builders, the CLI and
the tests take them from here. The module imports nothing heavy, so the Snakefile can import
it when it is parsed.
"""

from __future__ import annotations

#: Tables, in report order; each is written as ``tables/<name>.{md,tex,html}``.
TABLE_NAMES: tuple[str, ...] = ("efficiency", "quantization", "distillation", "shapes", "testbed")
#: Figures built from ``summary.csv`` and the curve tables.
SUMMARY_FIGURE_NAMES: tuple[str, ...] = ("speedup", "accuracy_vs_gflops", "distillation_curves", "active_patches")
#: The figure built from the image sets.
GRID_FIGURE_NAME = "image_grid"
#: Every figure, in report order; each is written as ``figures/<name>.{png,svg}``.
FIGURE_NAMES: tuple[str, ...] = (*SUMMARY_FIGURE_NAMES, GRID_FIGURE_NAME)
