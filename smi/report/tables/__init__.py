"""The five result tables, laid out like those of Sparse Model Inversion (Hu et al., ICML 2024).

One module per table:

1. :mod:`~smi.report.tables.efficiency`: per teacher and inversion method, time per image,
   speed-up over dense inversion, GFLOPs per image, FLOPs reduction, peak memory and memory
   reduction;
2. :mod:`~smi.report.tables.quantization`: rows are calibration sources, columns teacher x bit
   width, cells the top-1 of the quantized model, with the full-precision model as reference row;
3. :mod:`~smi.report.tables.distillation`: final student top-1 per method and epochs needed to
   reach a fixed fraction of the dense-inversion student's final top-1;
4. :mod:`~smi.report.tables.shapes`: on the synthetic ``shapes`` dataset, how often kept patches
   lie on the object (against randomly kept patches) and the student's correlated-vs-decorrelated
   test gap;
5. :mod:`~smi.report.tables.testbed`: per teacher, the properties the other tables depend on -
   accuracy on each test split, background-shortcut reliance, activation outlier ratio on real
   and noise images, and the pretrained student's accuracy on its pretraining source.

:mod:`~smi.report.tables._common` holds what the builders share. Every builder returns a
:class:`smi.report.render.Table` of numbers (mean, std, seed count), so the same object renders
to Markdown/LaTeX/HTML and feeds ``smi compare``. This package builds them all
(:func:`build_tables`) and writes them (:func:`write_tables`).
"""

from __future__ import annotations

import os
from pathlib import Path

from smi.report.aggregate import Aggregate
from smi.report.defaults import DEFAULT_TARGET_FRACTION
from smi.report.render import Table, write_table
from smi.report.tables._common import REFERENCE_METHODS, SEED_NOTE
from smi.report.tables.distillation import BUDGET_COLUMN, budget_labels, distillation_table
from smi.report.tables.efficiency import BYTES_PER_MIB, MEMORY_KINDS, efficiency_table
from smi.report.tables.quantization import ESTIMATOR_COLUMN, ESTIMATOR_LABELS, ESTIMATOR_ORDER, quantization_table
from smi.report.tables.shapes import FOREGROUND_DEFAULT_METHOD, SHAPES_DATASET, shapes_table
from smi.report.tables.testbed import TESTBED_COLUMNS, testbed_table

__all__ = [
    "BUDGET_COLUMN",
    "BYTES_PER_MIB",
    "ESTIMATOR_COLUMN",
    "ESTIMATOR_LABELS",
    "ESTIMATOR_ORDER",
    "FOREGROUND_DEFAULT_METHOD",
    "MEMORY_KINDS",
    "REFERENCE_METHODS",
    "SEED_NOTE",
    "SHAPES_DATASET",
    "TESTBED_COLUMNS",
    "budget_labels",
    "build_tables",
    "distillation_table",
    "efficiency_table",
    "quantization_table",
    "shapes_table",
    "testbed_table",
    "write_tables",
]


def build_tables(agg: Aggregate, target_fraction: float = DEFAULT_TARGET_FRACTION) -> dict[str, Table]:
    """All five tables of a run, keyed by :data:`smi.report.names.TABLE_NAMES`."""
    summary = agg.summary
    return {
        "efficiency": efficiency_table(summary),
        "quantization": quantization_table(summary),
        "distillation": distillation_table(summary, agg.table("curves.csv"), target_fraction),
        "shapes": shapes_table(summary),
        "testbed": testbed_table(summary),
    }


def write_tables(tables: dict[str, Table], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write every table as ``.md``, ``.tex`` and ``.html`` into ``out_dir``."""
    written = []
    for table in tables.values():
        written += write_table(table, out_dir)
    return written
