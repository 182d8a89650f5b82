"""Table 2, ``quantization``: top-1 of the quantized teacher per calibration source and bit width.

Laid out like the post-training quantization table of Sparse Model Inversion (Hu et al., ICML
2024): rows are calibration sources, columns teacher x bit width, with the full-precision model
as reference row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from smi.report.render import HIGHER, Column, Table
from smi.report.stats import seed_stats
from smi.report.tables._common import empty_table, int_text, kind_records, seed_note, sorted_rows, teacher_seed_column

# Row labels of the range estimators when a run calibrates with several (quantization table).
ESTIMATOR_COLUMN = "Estimator"  # a valid identifier: rows are rendered through namedtuples
ESTIMATOR_LABELS: dict[str, str] = {"minmax": "min/max", "mse": "MSE", "percentile": "percentile"}
ESTIMATOR_ORDER: tuple[str, ...] = ("minmax", "mse", "percentile")


def _varying(frame: pd.DataFrame, column: str) -> bool:
    return column in frame and frame[column].nunique(dropna=True) > 1


def quantization_table(summary: pd.DataFrame) -> Table:
    """Table 2: quantized top-1 per calibration source (rows) and teacher x bits (columns).

    With several range estimators in the run (``quantization.range_estimator: [minmax, mse]``)
    the rows are estimator x calibration source, one block per estimator (min/max first), and
    the best data-free source is set in bold within each block.
    """
    index: tuple[str, ...] = ("calibration",)
    title = "Top-1 accuracy (%) after data-free post-training quantization"
    quant = kind_records(summary, "quantization", ("calibration", "dataset", "teacher"))
    if quant.empty:
        return empty_table("quantization", title, index, "no quantization records in this run.")
    for col in ("w_bits", "a_bits"):
        quant[col] = pd.to_numeric(quant[col], errors="coerce") if col in quant else np.nan
    by_estimator = _varying(quant, "range_estimator")
    if by_estimator:
        index = (ESTIMATOR_COLUMN, "calibration")
        quant[ESTIMATOR_COLUMN] = quant["range_estimator"].map(lambda e: ESTIMATOR_LABELS.get(e, e))
        rank = {ESTIMATOR_LABELS[e]: i for i, e in enumerate(ESTIMATOR_ORDER)}
        quant = quant.assign(_rank=quant[ESTIMATOR_COLUMN].map(lambda e: rank.get(e, len(rank))))
        quant = quant.sort_values(["_rank", ESTIMATOR_COLUMN], kind="stable").drop(columns="_rank")
    extras = [c for c in ("calib_size", "protocol") if _varying(quant, c)]
    show_dataset = _varying(quant, "dataset")

    def label(row: pd.Series) -> str:
        bits = f"W{int_text(row['w_bits'])}/A{int_text(row['a_bits'])}"
        parts = ([row["dataset"]] if show_dataset else []) + [row["teacher"], bits]
        parts += [f"{c}={row[c]}" for c in extras]
        return " ".join(str(p) for p in parts) + " (%)"

    quant["column"] = quant.apply(label, axis=1)
    order = quant.assign(_w=-quant["w_bits"], _a=-quant["a_bits"])
    order = order.sort_values(["dataset", "teacher", "_w", "_a", *extras], kind="stable")
    labels = list(dict.fromkeys(order["column"]))
    columns = [Column(lbl, HIGHER, 2) for lbl in labels]
    cells = seed_stats(quant, [*index, "column"], "top1").assign(note="")
    rows = sorted_rows(quant, index, "calibration")
    if by_estimator:  # keep the estimator blocks in ESTIMATOR_ORDER, not alphabetical
        blocks = list(dict.fromkeys(quant[ESTIMATOR_COLUMN]))
        rows = rows.assign(_b=rows[ESTIMATOR_COLUMN].map(blocks.index)).sort_values("_b", kind="stable")
        rows = rows.drop(columns="_b").reset_index(drop=True)
    notes = [seed_note(quant)]
    fp_label = "FP (reference)"
    if "fp_top1" in quant and quant["fp_top1"].notna().any():
        # The unquantized model is evaluated once per job; identical repeats are one measurement
        # (per teacher seed: each seed is its own teacher).
        fp = quant[["column", *teacher_seed_column(quant), "fp_top1"]].dropna(subset=["fp_top1"]).drop_duplicates()
        fp = fp.assign(calibration=fp_label, **({ESTIMATOR_COLUMN: ""} if by_estimator else {}))
        fp_cells = seed_stats(fp, [*index, "column"], "fp_top1").assign(note="")
        cells = pd.concat([fp_cells, cells], ignore_index=True)
        fp_row = {"calibration": [fp_label], "reference": [True], **({ESTIMATOR_COLUMN: [""]} if by_estimator else {})}
        rows = pd.concat([pd.DataFrame(fp_row)[[*index, "reference"]], rows], ignore_index=True)
        notes.append("FP: the full-precision teacher on the same test split.")
    bold_scope = " per column and range estimator" if by_estimator else " per column"
    notes.append(f"WX/AY: X-bit weights, Y-bit activations; bold: best data-free calibration source{bold_scope}.")
    if by_estimator:
        notes.append(
            "Range estimators: min/max = the exact activation range (the paper's); MSE = the clipped range "
            "with the least quantization error (OMSE-style search); percentile = the 100 − p / p "
            "percentiles. Each estimator calibrates on the same images."
        )
    for c in ("calib_size", "range_estimator", "protocol"):
        if c in quant and c not in extras and not (c == "range_estimator" and by_estimator) and quant[c].notna().any():
            value = quant[c].dropna().iloc[0]
            notes.append(f"{c.replace('_', ' ').capitalize()}: {int_text(value) if c == 'calib_size' else value}.")
    return Table("quantization", title, index, columns, rows, cells, group=index[:-1], notes=notes)
