"""Table 3, ``distillation``: knowledge transfer from synthetic images to a student.

As in Sparse Model Inversion (Hu et al., ICML 2024): the student's final top-1 per method, plus
the epochs it needs to reach a fixed fraction of the dense-inversion student's final top-1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from smi.errors import SMIError
from smi.report.defaults import DEFAULT_TARGET_FRACTION
from smi.report.render import HIGHER, LOWER, Column, Table
from smi.report.stats import DENSE, first_epoch_reaching
from smi.report.tables._common import empty_table, kind_records, seed_cells, seed_note, sorted_rows, teacher_seed_column

BUDGET_COLUMN = "budget_gflops"  # distillation at an equal inversion-FLOPs budget (smi distill --budget-gflops)


def budget_labels(frame: pd.DataFrame) -> pd.Series:
    """Per-row image budget: ``"<g> GFLOPs"`` or ``"fixed image count"`` without a budget."""
    values = (
        pd.to_numeric(frame[BUDGET_COLUMN], errors="coerce")
        if BUDGET_COLUMN in frame
        else pd.Series(np.nan, index=frame.index)
    )
    return values.map(lambda v: f"{v:g} GFLOPs of inversion" if pd.notna(v) else "fixed image count")


def distillation_table(
    summary: pd.DataFrame, curves: pd.DataFrame, target_fraction: float = DEFAULT_TARGET_FRACTION
) -> Table:
    """Table 3: knowledge transfer from synthetic images to a student.

    Args:
        summary: The tidy summary.
        curves: The long distillation curves (``curves.csv``); may be empty.
        target_fraction: The fraction of the dense student's final top-1 to reach.
    """
    if not 0.0 < target_fraction <= 1.0:
        raise SMIError(f"target fraction {target_fraction} must lie in (0, 1], e.g. 0.95.")
    title = "Knowledge transfer: student top-1 accuracy (%) after distillation on synthetic images"
    budgeted = BUDGET_COLUMN in summary and pd.to_numeric(summary[BUDGET_COLUMN], errors="coerce").notna().any()
    # Students trained at an equal inversion-FLOPs budget are compared only with each other.
    group = ("dataset", "teacher", "student", "budget") if budgeted else ("dataset", "teacher", "student")
    index = (*group, "method")
    dist = kind_records(summary, "distillation", ("dataset", "teacher", "student", "method"))
    if dist.empty:
        return empty_table("distillation", title, index, "no distillation records in this run.")
    if budgeted:
        dist["budget"] = budget_labels(dist)
    top1 = Column("Top-1 (%)", HIGHER, 2)
    epochs = Column(f"Epochs to {100 * target_fraction:g}% of dense", LOWER, 1)
    cells = [seed_cells(dist, index, "final_top1", top1.label)]
    rows = sorted_rows(dist, index, "method")
    notes = [seed_note(dist)]
    epoch_cells, epoch_notes = _epochs_to_reach(dist, curves, index, group, target_fraction, epochs.label)
    cells.append(epoch_cells)
    notes += epoch_notes
    if "teacher_top1" in dist and dist["teacher_top1"].notna().any():
        ref = (
            dist[[*group, *teacher_seed_column(dist), "teacher_top1"]].dropna(subset=["teacher_top1"]).drop_duplicates()
        )
        ref = ref.assign(method="Teacher (reference)")
        cells.append(seed_cells(ref, index, "teacher_top1", top1.label))
        ref_rows = ref[list(index)].drop_duplicates().assign(reference=True)
        # The teacher row heads its group, like the FP row of the quantization table.
        rows = pd.concat([ref_rows, rows], ignore_index=True)
        rows = rows.sort_values(list(group), kind="stable").reset_index(drop=True)
        notes.append("Teacher (reference): the teacher's own top-1 on the same test split.")
    return Table(
        "distillation",
        title,
        index,
        [top1, epochs],
        rows,
        pd.concat(cells, ignore_index=True),
        group=group,
        notes=notes,
    )


def _epochs_to_reach(
    dist: pd.DataFrame,
    curves: pd.DataFrame,
    index: tuple[str, ...],
    group: tuple[str, ...],
    fraction: float,
    label: str,
) -> tuple[pd.DataFrame, list[str]]:
    """Cells with the mean epoch at which each method's students reach ``fraction`` x dense top-1."""
    empty = pd.DataFrame(columns=[*index, "mean", "std", "n", "column", "note"])
    if curves.empty or "source" not in curves or "source" not in dist:
        return empty, ["Epochs-to-reach needs curves.csv next to summary.csv; it was not found or is empty."]
    dense = dist[dist["method"] == DENSE]
    if dense.empty:
        return empty, ["Epochs-to-reach is empty: there is no dense-inversion student to compare with."]
    targets = (
        (pd.to_numeric(dense["final_top1"], errors="coerce").groupby([dense[g] for g in group]).mean() * fraction)
        .rename("threshold")
        .reset_index()
    )
    frame = dist.merge(targets, on=list(group), how="left")
    frame["epochs_to"] = [
        first_epoch_reaching(curves[curves["source"] == src], thr)
        for src, thr in zip(frame["source"], frame["threshold"])
    ]
    out = []
    for key, part in frame.groupby(list(index), sort=False):
        if part["threshold"].isna().all():
            continue
        reached = part["epochs_to"].dropna()
        n_total = len(part)
        mean = reached.mean() if len(reached) else np.nan
        std = reached.std() if len(reached) > 1 else np.nan
        note = (
            "" if len(reached) == n_total else ("not reached" if reached.empty else f"({len(reached)}/{n_total} seeds)")
        )
        out.append(
            {**dict(zip(index, key)), "mean": mean, "std": std, "n": len(reached), "column": label, "note": note}
        )
    notes = [
        f"Epochs to reach {100 * fraction:g}% of the dense-inversion student's final top-1 "
        "(mean over seeds that reach it; (k/n) when only k of n seeds do)."
    ]
    missing = sorted({"/".join(map(str, k)) for k, p in frame.groupby(list(group)) if p["threshold"].isna().all()})
    if missing:
        notes.append("No dense student for " + ", ".join(missing) + ": epochs-to-reach left empty.")
    return (pd.DataFrame(out) if out else empty), notes
