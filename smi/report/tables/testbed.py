"""Table 5, ``testbed``: per teacher, the properties the other tables depend on.

Accuracy on each test split, background-shortcut reliance, activation outlier ratio on real and
noise images, and the pretrained student's accuracy on its pretraining source.
"""

from __future__ import annotations

import pandas as pd

from smi.report.render import Column, Table
from smi.report.tables._common import empty_table, kind_records, seed_cells

# Testbed columns: (summary column of the testbed record, header, decimals).
TESTBED_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("top1_test", "Top-1 test (%)", 2),
    ("top1_test_correlated", "Top-1 correlated test (%)", 2),
    ("shortcut_reliance", "Shortcut reliance (pp)", 2),
    ("outlier_ratio_real_median", "Outlier ratio real, median", 1),
    ("outlier_ratio_real_max", "Outlier ratio real, max", 1),
    ("outlier_ratio_noise_median", "Outlier ratio noise, median", 1),
    ("outlier_ratio_noise_max", "Outlier ratio noise, max", 1),
)


def testbed_table(summary: pd.DataFrame) -> Table:
    """Table 5: per teacher, the properties of the toy world that the other tables rest on."""
    index = ("dataset", "teacher")
    title = "Testbed: what each teacher and its data have (and lack)"
    bed = kind_records(summary, "testbed", index)
    if bed.empty:
        return empty_table("testbed", title, index, "no testbed records in this run.")
    columns: list[Column] = []
    cells = []
    for value, label, decimals in TESTBED_COLUMNS:
        if value in bed and pd.to_numeric(bed[value], errors="coerce").notna().any():
            columns.append(Column(label, None, decimals))
            cells.append(seed_cells(bed, index, value, label))
    pre = summary[summary["kind"] == "pretrain"] if "kind" in summary else pd.DataFrame()
    if not pre.empty and "pretrain_top1" in pre:
        # A pretrained student belongs to every teacher of its target dataset.
        joined = (
            bed[list(index)]
            .drop_duplicates()
            .merge(pre[["dataset", "student", "pretrain_dataset", "pretrain_top1"]], on="dataset")
        )
        for student in sorted(joined["student"].unique()):
            part = joined[joined["student"] == student]
            label = f"{student} pretraining top-1 (%)"
            columns.append(Column(label, None, 2))
            cells.append(seed_cells(part, index, "pretrain_top1", label).assign(note=_pretrain_notes(part, index)))
    rows = bed[list(index)].drop_duplicates().sort_values(list(index), kind="stable").reset_index(drop=True)
    notes = [
        "Shortcut reliance: teacher top-1 on the correlated test split (backgrounds follow the class as in "
        "training, rho) minus top-1 on the decorrelated test split, in percentage points.",
        "Outlier ratio: at the input and output of every linear layer of the blocks (the quantizer positions "
        "of QuantLinear), the largest channel's range over the median channel's range; median and maximum "
        "over those activations, on real test images and on the noise images.",
        "Pretraining top-1: the distillation student's accuracy on the test split of its pretraining source "
        "(another dataset than the teacher's; the source is named in the cell).",
    ]
    return Table(
        "testbed", title, index, columns, rows.assign(reference=False), pd.concat(cells, ignore_index=True), notes=notes
    )


def _pretrain_notes(part: pd.DataFrame, index: tuple[str, ...]) -> list[str]:
    """``(on <source>)`` per cell, in the order :func:`seed_stats` groups the rows."""
    sources = part.groupby(list(index), sort=False)["pretrain_dataset"].first()
    return [f"(on {source})" for source in sources]
