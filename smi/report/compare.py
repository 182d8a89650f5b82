"""Cell-by-cell comparison of the result tables of two runs.

Typical use: a new baseline's run (B) against a reference run (A). Both runs' tables are
rebuilt from their ``summary.csv`` with the same code, so a difference is a difference in
the measurements, never in formatting. A cell counts as changed when
``|B - A| > atol + rtol * |A|`` (the convention of :func:`numpy.isclose`), or when it
exists in only one run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import pandas as pd
from tabulate import tabulate

from smi.errors import SMIError
from smi.report.aggregate import read_aggregate
from smi.report.defaults import DEFAULT_TARGET_FRACTION
from smi.report.names import TABLE_NAMES
from smi.report.render import Table
from smi.report.tables import build_tables

SAME, CHANGED, ONLY_A, ONLY_B = "same", "changed", "only in A", "only in B"
CELL_KEYS = ["table", "row", "column"]


@dataclass(frozen=True)
class Tolerance:
    """When two cell means count as equal.

    Attributes:
        atol: Absolute tolerance (in the cell's unit).
        rtol: Relative tolerance (fraction of run A's value).
    """

    atol: float = 0.0
    rtol: float = 0.0

    def __post_init__(self) -> None:
        if self.atol < 0 or self.rtol < 0:
            raise SMIError(f"tolerances must be non-negative, got atol={self.atol}, rtol={self.rtol}.")

    def close(self, a: float, b: float) -> bool:
        """Whether ``a`` and ``b`` are equal within tolerance (two missing values are equal)."""
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(b - a) <= self.atol + self.rtol * abs(a)


def table_cells(table: Table) -> pd.DataFrame:
    """The cells of one table as ``table, row, column, mean, std, n`` (row = its keys joined by ' / ')."""
    if table.empty:
        return pd.DataFrame(columns=[*CELL_KEYS, "mean", "std", "n"])
    cells = table.cells
    row = cells[list(table.index)].astype(str).agg(" / ".join, axis=1)
    return pd.DataFrame(
        {
            "table": table.name,
            "row": row,
            "column": cells["column"].astype(str),
            "mean": pd.to_numeric(cells["mean"], errors="coerce").astype(float),
            "std": pd.to_numeric(cells["std"], errors="coerce").astype(float),
            "n": pd.to_numeric(cells["n"], errors="coerce"),
        }
    )


def run_cells(run: str | os.PathLike[str], target_fraction: float = DEFAULT_TARGET_FRACTION) -> pd.DataFrame:
    """Every table cell of a run folder (or ``summary.csv`` path)."""
    tables = build_tables(read_aggregate(run), target_fraction)
    return pd.concat([table_cells(tables[name]) for name in TABLE_NAMES], ignore_index=True)


def compare_cells(cells_a: pd.DataFrame, cells_b: pd.DataFrame, tolerance: Tolerance = Tolerance()) -> pd.DataFrame:
    """Outer-join two runs' cells and classify each as same, changed, only in A or only in B.

    Returns:
        Columns ``table, row, column, a, b, diff (= b - a), rel_diff_pct, status`` in table order.
    """
    merged = cells_a.merge(cells_b, on=CELL_KEYS, how="outer", suffixes=("_a", "_b"), indicator=True, sort=False)
    merged["a"] = merged["mean_a"].astype(float)
    merged["b"] = merged["mean_b"].astype(float)
    merged["diff"] = merged["b"] - merged["a"]
    merged["rel_diff_pct"] = 100.0 * merged["diff"] / merged["a"].abs().where(merged["a"] != 0)
    status = []
    for side, a, b in zip(merged["_merge"], merged["a"], merged["b"]):
        if side == "left_only":
            status.append(ONLY_A)
        elif side == "right_only":
            status.append(ONLY_B)
        else:
            status.append(SAME if tolerance.close(a, b) else CHANGED)
    merged["status"] = status
    order = {name: i for i, name in enumerate(TABLE_NAMES)}
    merged = merged.sort_values("table", key=lambda s: s.map(order), kind="stable")
    return merged[[*CELL_KEYS, "a", "b", "diff", "rel_diff_pct", "status"]].reset_index(drop=True)


def compare_runs(
    run_a: str | os.PathLike[str],
    run_b: str | os.PathLike[str],
    tolerance: Tolerance = Tolerance(),
    target_fraction: float = DEFAULT_TARGET_FRACTION,
) -> pd.DataFrame:
    """Compare the tables of two run folders; see :func:`compare_cells`."""
    return compare_cells(run_cells(run_a, target_fraction), run_cells(run_b, target_fraction), tolerance)


def format_comparison(diff: pd.DataFrame, show_all: bool = False) -> str:
    """A readable report: one block per table with the differing cells, then a count line."""
    shown = diff if show_all else diff[diff["status"] != SAME]
    lines = []
    for name in dict.fromkeys(shown["table"]):
        part = shown[shown["table"] == name]
        body = [
            [
                r.row,
                r.column,
                _num(r.a),
                _num(r.b),
                _num(r.diff, signed=True),
                _num(r.rel_diff_pct, signed=True),
                r.status,
            ]
            for r in part.itertuples()
        ]
        lines += [
            f"== {name} ==",
            tabulate(
                body,
                headers=["row", "column", "A", "B", "B - A", "B - A (%)", "status"],
                tablefmt="simple",
                disable_numparse=True,
            ),
            "",
        ]
    counts = diff["status"].value_counts()
    lines.append(
        f"{len(diff)} cells: {counts.get(SAME, 0)} same, {counts.get(CHANGED, 0)} changed, "
        f"{counts.get(ONLY_A, 0)} only in A, {counts.get(ONLY_B, 0)} only in B."
    )
    return "\n".join(lines)


def _num(value: float, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:+.4g}" if signed else f"{value:.4g}"
