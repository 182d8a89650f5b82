"""The four result tables, laid out like those of Sparse Model Inversion (Hu et al., ICML 2024).

1. ``efficiency``: per teacher and inversion method, time per image, speed-up over dense
   inversion, GFLOPs per image, FLOPs reduction, peak memory and memory reduction;
2. ``quantization``: rows are calibration sources, columns teacher x bit width, cells the
   top-1 of the quantized model, with the full-precision model as reference row;
3. ``distillation``: final student top-1 per method and epochs needed to reach a fixed
   fraction of the dense-inversion student's final top-1;
4. ``shapes``: on the synthetic ``shapes`` dataset, how often kept patches lie on the object
   (against randomly kept patches) and the student's correlated-vs-decorrelated test gap;
5. ``testbed``: per teacher, the properties the other tables depend on - accuracy on each
   test split, background-shortcut reliance, activation outlier ratio on real and noise
   images, and the pretrained student's accuracy on its pretraining source.

Every builder returns a :class:`smi.report.render.Table` of numbers (mean, std, seed count),
so the same object renders to Markdown/LaTeX/HTML and feeds ``smi compare``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from smi.errors import SMIError
from smi.report.aggregate import Aggregate
from smi.report.defaults import DEFAULT_TARGET_FRACTION
from smi.report.render import HIGHER, LOWER, Column, Table, write_table
from smi.report.stats import (
    DENSE,
    MISSING_KEY,
    REFERENCE_SOURCES,
    fill_keys,
    first_epoch_reaching,
    isolated_timings,
    method_sort_key,
    ratios_to_dense,
    seed_stats,
)

BYTES_PER_MIB = 2**20
SHAPES_DATASET = "shapes"
BUDGET_COLUMN = "budget_gflops"  # distillation at an equal inversion-FLOPs budget (smi distill --budget-gflops)
# A foreground record scores SMI's CLS-attention stopping against random stopping on real
# images; records that do not name a method are labelled with this one.
FOREGROUND_DEFAULT_METHOD = "smi"
# Real data is an upper reference, not a data-free competitor: never set in bold.
REFERENCE_METHODS: tuple[str, ...] = ("real",)
SEED_NOTE = "Cells are mean ± sample standard deviation over seeds (no ± for a single seed)."
MEMORY_KINDS: dict[str, str] = {
    "cuda_peak_allocated": "peak CUDA memory allocated during inversion",
    "cpu_saved_activations": "bytes autograd saves for backward at the peak iteration (CPU runs; the "
    "device-independent part of memory)",
}


def _records(summary: pd.DataFrame, kind: str, keys: tuple[str, ...]) -> pd.DataFrame:
    """Rows of one kind with every key column present and filled (NaN keys never match)."""
    if summary.empty or "kind" not in summary:
        return pd.DataFrame(columns=list(keys))
    return fill_keys(summary[summary["kind"] == kind], keys)


def budget_labels(frame: pd.DataFrame) -> pd.Series:
    """Per-row image budget: ``"<g> GFLOPs"`` or ``"fixed image count"`` without a budget."""
    values = (
        pd.to_numeric(frame[BUDGET_COLUMN], errors="coerce")
        if BUDGET_COLUMN in frame
        else pd.Series(np.nan, index=frame.index)
    )
    return values.map(lambda v: f"{v:g} GFLOPs of inversion" if pd.notna(v) else "fixed image count")


def _empty(name: str, title: str, index: tuple[str, ...], reason: str) -> Table:
    return Table(
        name, title, index, [], pd.DataFrame(columns=[*index, "reference"]), pd.DataFrame(), empty_reason=reason
    )


def _sorted_rows(frame: pd.DataFrame, index: tuple[str, ...], method_col: str) -> pd.DataFrame:
    rows = frame[list(index)].drop_duplicates()
    rows = rows.assign(_order=rows[method_col].map(method_sort_key))
    rows = rows.sort_values([*[c for c in index if c != method_col], "_order"], kind="stable")
    rows = rows.drop(columns="_order").reset_index(drop=True)
    return rows.assign(reference=rows[method_col].isin(REFERENCE_METHODS))


def _cells(frame: pd.DataFrame, index: tuple[str, ...], value: str, label: str) -> pd.DataFrame:
    stats = seed_stats(frame, index, value)
    return stats.assign(column=label, note="")


def _seed_note(frame: pd.DataFrame) -> str:
    if "seed" not in frame:
        return SEED_NOTE
    seeds = sorted(frame["seed"].dropna().unique().tolist())
    note = f"{SEED_NOTE} Seeds: {', '.join(str(s) for s in seeds) or 'none recorded'}."
    teacher_seeds = sorted(
        {str(s) for s in frame.get("teacher_seed", pd.Series(dtype=object)).dropna()} - {MISSING_KEY}
    )
    if len(teacher_seeds) > 1:
        note += (
            f" Teacher seeds: {', '.join(teacher_seeds)} (each trains its own teacher); a cell pools every "
            "teacher seed and inversion seed of its teacher, so its std includes the teacher's variance."
        )
    return note


def efficiency_table(summary: pd.DataFrame) -> Table:
    """Table 1: inversion cost per teacher and method, relative to dense inversion.

    Time per image and speed-up come from the isolated timing job of each teacher (``kind`` =
    timing, :func:`smi.report.stats.isolated_timings`) when the run has one; otherwise from the
    inversion jobs' own wall times, which the notes then say were not isolated. FLOPs and memory
    come from the inversion jobs (exact counts).
    """
    index = ("dataset", "teacher", "method")
    title = "Inversion efficiency per image (relative to dense inversion)"
    inv = _records(summary, "inversion", index)
    inv = inv[~inv["method"].isin(REFERENCE_SOURCES)]
    if inv.empty:
        return _empty("efficiency", title, index, "no inversion records in this run.")
    inv["seed"] = inv["seed"] if "seed" in inv else MISSING_KEY
    frame = ratios_to_dense(inv)
    frame["peak_memory_mib"] = frame["peak_memory_bytes"] / BYTES_PER_MIB
    frame["memory_after_stop_mib"] = frame["peak_memory_after_last_stop_bytes"] / BYTES_PER_MIB
    time_col, speedup_col = Column("Time / image (s)", LOWER, None), Column("Speed-up (×)", HIGHER, 2)
    specs = [
        ("gflops_per_image", Column("GFLOPs / image", LOWER, None)),
        ("flops_reduction_pct", Column("FLOPs reduction (%)", HIGHER, 2)),
        ("peak_memory_mib", Column("Peak memory (MiB)", LOWER, None)),
        ("memory_reduction_pct", Column("Memory reduction (%)", HIGHER, 2)),
        ("memory_after_stop_mib", Column("Memory after last stop (MiB)", LOWER, None)),
        ("memory_after_stop_reduction_pct", Column("Reduction after last stop (%)", HIGHER, 2)),
    ]
    timing = isolated_timings(summary)
    timing = timing.merge(frame[list(index)].drop_duplicates(), on=list(index))  # rows the table lists
    if timing.empty:
        time_cells = [
            _cells(frame, index, "time_per_image_s", time_col.label),
            _cells(frame, index, "speedup", speedup_col.label),
        ]
        time_notes = [
            "Times: each inversion job's own wall time; jobs ran beside other jobs, so times and speed-ups "
            "are not isolated (enable `timing` for isolated ones)."
        ]
    else:
        time_cells = [
            _cells(timing, index, "time_per_image_s", time_col.label),
            _cells(timing, index, "speedup", speedup_col.label),
        ]
        time_notes = [_timing_note(timing, frame)]
    cells = pd.concat(
        [*time_cells, *(_cells(frame, index, value, col.label) for value, col in specs)], ignore_index=True
    )
    notes = [
        _seed_note(frame),
        f"Image sources without inversion ({', '.join(REFERENCE_SOURCES)}) are not listed.",
        *time_notes,
        "Reductions = 100 × (1 − method / dense), taken per seed against the dense run with the same dataset, "
        "teacher and seed (FLOPs and memory are exact counts of the inversion jobs).",
    ]
    kinds = sorted(set(frame["memory_kind"].dropna().astype(str)) & set(MEMORY_KINDS)) if "memory_kind" in frame else []
    if kinds:
        notes.append(
            "Memory: " + "; ".join(MEMORY_KINDS.get(k, k) for k in kinds) + ". Peak memory covers the "
            "whole run, including the dense iterations before the first stop; 'after last stop' is the "
            "peak of the sparse phase that follows the last stopping step (dense: its whole-run peak)."
        )
    unmatched = frame[~frame["has_dense"]]
    if len(unmatched):
        pairs = sorted({f"{r.dataset}/{r.teacher} seed {r.seed}" for r in unmatched.itertuples()})
        notes.append("Speed-up and reductions are empty where no dense run matches (" + ", ".join(pairs) + ").")
    return Table(
        "efficiency",
        title,
        index,
        [time_col, speedup_col, *(c for _, c in specs)],
        _sorted_rows(frame, index, "method"),
        cells,
        group=("dataset", "teacher"),
        notes=notes,
    )


def _timing_note(timing: pd.DataFrame, frame: pd.DataFrame) -> str:
    """How the isolated times were taken, and which listed methods they do not cover."""

    def values(col: str) -> str:
        found = sorted(
            {_int_text(v) for v in pd.to_numeric(timing.get(col, pd.Series(dtype=float)), errors="coerce").dropna()}
        )
        return "/".join(found) or "?"

    note = (
        f"Time / image and speed-up: one timing job per teacher (`smi time-inversions`) with the machine to "
        f"itself timed every method's inversion loop in {values('rounds')} interleaved rounds, "
        f"{values('timed_iterations')} of the run's {values('full_iterations')} iterations with the stopping "
        f"schedules compressed in proportion, on the batch each inversion job uses; cells are each method's fastest "
        f"round (the least disturbed), speed-up = dense's fastest time / the method's fastest time. The "
        f"inversion jobs' own wall "
        f"times (summary.csv) shared the machine and are not used."
    )
    keys = ["dataset", "teacher", "method"]
    timed = set(map(tuple, timing[keys].astype(str).to_numpy()))
    untimed = sorted({"/".join(k) for k in map(tuple, frame[keys].astype(str).to_numpy()) if k not in timed})
    if untimed:
        note += (
            " Not timed in isolation (external commands, or teachers without a timing job): "
            + ", ".join(untimed)
            + "; their time and speed-up cells are empty."
        )
    return note


def _varying(frame: pd.DataFrame, column: str) -> bool:
    return column in frame and frame[column].nunique(dropna=True) > 1


# Row labels of the range estimators when a run calibrates with several (quantization table).
ESTIMATOR_COLUMN = "Estimator"  # a valid identifier: rows are rendered through namedtuples
ESTIMATOR_LABELS: dict[str, str] = {"minmax": "min/max", "mse": "MSE", "percentile": "percentile"}
ESTIMATOR_ORDER: tuple[str, ...] = ("minmax", "mse", "percentile")


def quantization_table(summary: pd.DataFrame) -> Table:
    """Table 2: quantized top-1 per calibration source (rows) and teacher x bits (columns).

    With several range estimators in the run (``quantization.range_estimator: [minmax, mse]``)
    the rows are estimator x calibration source, one block per estimator (min/max first), and
    the best data-free source is set in bold within each block.
    """
    index: tuple[str, ...] = ("calibration",)
    title = "Top-1 accuracy (%) after data-free post-training quantization"
    quant = _records(summary, "quantization", ("calibration", "dataset", "teacher"))
    if quant.empty:
        return _empty("quantization", title, index, "no quantization records in this run.")
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
        bits = f"W{_int_text(row['w_bits'])}/A{_int_text(row['a_bits'])}"
        parts = ([row["dataset"]] if show_dataset else []) + [row["teacher"], bits]
        parts += [f"{c}={row[c]}" for c in extras]
        return " ".join(str(p) for p in parts) + " (%)"

    quant["column"] = quant.apply(label, axis=1)
    order = quant.assign(_w=-quant["w_bits"], _a=-quant["a_bits"])
    order = order.sort_values(["dataset", "teacher", "_w", "_a", *extras], kind="stable")
    labels = list(dict.fromkeys(order["column"]))
    columns = [Column(lbl, HIGHER, 2) for lbl in labels]
    cells = seed_stats(quant, [*index, "column"], "top1").assign(note="")
    rows = _sorted_rows(quant, index, "calibration")
    if by_estimator:  # keep the estimator blocks in ESTIMATOR_ORDER, not alphabetical
        blocks = list(dict.fromkeys(quant[ESTIMATOR_COLUMN]))
        rows = rows.assign(_b=rows[ESTIMATOR_COLUMN].map(blocks.index)).sort_values("_b", kind="stable")
        rows = rows.drop(columns="_b").reset_index(drop=True)
    notes = [_seed_note(quant)]
    fp_label = "FP (reference)"
    if "fp_top1" in quant and quant["fp_top1"].notna().any():
        # The unquantized model is evaluated once per job; identical repeats are one measurement
        # (per teacher seed: each seed is its own teacher).
        fp = quant[["column", *_teacher_seed_column(quant), "fp_top1"]].dropna(subset=["fp_top1"]).drop_duplicates()
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
            notes.append(f"{c.replace('_', ' ').capitalize()}: {_int_text(value) if c == 'calib_size' else value}.")
    return Table("quantization", title, index, columns, rows, cells, group=index[:-1], notes=notes)


def _teacher_seed_column(frame: pd.DataFrame) -> list[str]:
    """``["teacher_seed"]`` where the records name it: reference rows are one per teacher."""
    return ["teacher_seed"] if "teacher_seed" in frame and frame["teacher_seed"].notna().any() else []


def _int_text(value: object) -> str:
    return str(int(value)) if pd.notna(value) else "?"


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
    dist = _records(summary, "distillation", ("dataset", "teacher", "student", "method"))
    if dist.empty:
        return _empty("distillation", title, index, "no distillation records in this run.")
    if budgeted:
        dist["budget"] = budget_labels(dist)
    top1 = Column("Top-1 (%)", HIGHER, 2)
    epochs = Column(f"Epochs to {100 * target_fraction:g}% of dense", LOWER, 1)
    cells = [_cells(dist, index, "final_top1", top1.label)]
    rows = _sorted_rows(dist, index, "method")
    notes = [_seed_note(dist)]
    epoch_cells, epoch_notes = _epochs_to_reach(dist, curves, index, group, target_fraction, epochs.label)
    cells.append(epoch_cells)
    notes += epoch_notes
    if "teacher_top1" in dist and dist["teacher_top1"].notna().any():
        ref = (
            dist[[*group, *_teacher_seed_column(dist), "teacher_top1"]]
            .dropna(subset=["teacher_top1"])
            .drop_duplicates()
        )
        ref = ref.assign(method="Teacher (reference)")
        cells.append(_cells(ref, index, "teacher_top1", top1.label))
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


def shapes_table(summary: pd.DataFrame) -> Table:
    """Table 4: foreground precision of kept patches and the shortcut gap on ``shapes``."""
    index = ("dataset", "teacher", "method")
    group = ("dataset", "teacher")
    title = "Shapes: where the kept patches lie, and the background-shortcut gap"
    fg = summary[summary["kind"] == "foreground"] if "kind" in summary else pd.DataFrame()
    if not fg.empty:
        fg = fg.assign(
            method=fg["method"].fillna(FOREGROUND_DEFAULT_METHOD) if "method" in fg else FOREGROUND_DEFAULT_METHOD
        )
    fg = fill_keys(fg, index)
    dist = _records(summary, "distillation", (*index, "student"))
    if not dist.empty:
        dist = dist[(dist["dataset"] == SHAPES_DATASET)]
        if "decorrelation_gap" in dist:
            dist = dist[pd.to_numeric(dist["decorrelation_gap"], errors="coerce").notna()]
        else:
            dist = dist.iloc[0:0]
    inv = _inverted_foreground(fg, index)
    if fg.empty and dist.empty:
        return _empty("shapes", title, index, "no foreground records and no shapes distillation records in this run.")
    columns: list[Column] = []
    cells = []
    if not fg.empty:
        fg = fg.copy()
        for col in ("precision", "random_precision", "recall"):
            values = pd.to_numeric(fg[col], errors="coerce") if col in fg else pd.Series(np.nan, index=fg.index)
            if (values > 1).any():
                raise SMIError(f"foreground record has {col} > 1; precision and recall must be fractions in [0, 1].")
            fg[f"{col}_pct"] = 100.0 * values
        for value, col in (
            ("precision_pct", Column("FG precision (%)", HIGHER, 1)),
            ("random_precision_pct", Column("Random-keep FG precision (%)", None, 1)),
            ("recall_pct", Column("FG recall (%)", None, 1)),
            ("kept_patches", Column("Kept patches", None, 1)),
        ):
            columns.append(col)
            cells.append(_cells(fg, index, value, col.label))
    if not inv.empty:
        for value, col in (
            ("precision_pct", Column("Inverted: FG precision vs saliency (%)", HIGHER, 1)),
            ("chance_pct", Column("Inverted: chance (%)", None, 1)),
        ):
            columns.append(col)
            cells.append(_cells(inv, index, value, col.label))
    if not dist.empty:
        students = sorted(dist["student"].unique())
        for student in students:
            part = dist[dist["student"] == student]
            prefix = f"→{student} " if len(students) > 1 else ""
            for value, col in (
                ("final_top1", Column(f"{prefix}Top-1 decorrelated (%)", HIGHER, 2)),
                ("final_top1_correlated", Column(f"{prefix}Top-1 correlated (%)", None, 2)),
                ("decorrelation_gap", Column(f"{prefix}Gap (pp)", LOWER, 2)),
            ):
                columns.append(col)
                cells.append(_cells(part, index, value, col.label))
    both = pd.concat([f[list(index)] for f in (fg, inv, dist) if not f.empty], ignore_index=True)
    notes = [
        _seed_note(pd.concat([f for f in (fg, inv, dist) if not f.empty], ignore_index=True)),
        "FG precision: share of kept patches that overlap the object; random-keep: the same number of "
        "patches kept uniformly at random (chance level).",
        *_saliency_notes(fg),
        "Gap = student top-1 on the correlated test split (backgrounds agree with the class, as in training) "
        "minus top-1 on the decorrelated split, in percentage points; smaller means less background shortcut.",
    ]
    return Table(
        "shapes",
        title,
        index,
        columns,
        _sorted_rows(both, index, "method"),
        pd.concat(cells, ignore_index=True),
        group=group,
        notes=notes,
    )


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
    bed = _records(summary, "testbed", index)
    if bed.empty:
        return _empty("testbed", title, index, "no testbed records in this run.")
    columns: list[Column] = []
    cells = []
    for value, label, decimals in TESTBED_COLUMNS:
        if value in bed and pd.to_numeric(bed[value], errors="coerce").notna().any():
            columns.append(Column(label, None, decimals))
            cells.append(_cells(bed, index, value, label))
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
            cells.append(_cells(part, index, "pretrain_top1", label).assign(note=_pretrain_notes(part, index)))
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


def _inverted_foreground(fg: pd.DataFrame, index: tuple[str, ...]) -> pd.DataFrame:
    """Long rows (index, seed, precision_pct, chance_pct) from ``inverted.<label>.<seed>.*`` columns."""
    rows = []
    prefix, suffix = "inverted.", ".precision"
    for col in (c for c in fg.columns if c.startswith(prefix) and c.endswith(suffix)):
        label, seed = col[len(prefix) : -len(suffix)].rsplit(".", 1)
        chance = f"{prefix}{label}.{seed}.chance_precision"
        for _, rec in fg.iterrows():
            if pd.notna(rec[col]):
                rows.append(
                    {
                        "dataset": rec["dataset"],
                        "teacher": rec["teacher"],
                        "method": label,
                        "seed": int(seed.removeprefix("seed")),
                        "precision_pct": 100.0 * float(rec[col]),
                        "chance_pct": 100.0 * float(rec.get(chance, np.nan)),
                    }
                )
    return pd.DataFrame(rows, columns=[*index, "seed", "precision_pct", "chance_pct"])


def _saliency_notes(fg: pd.DataFrame) -> list[str]:
    """The inverted-image columns' definition and the proxy's check on real images."""
    if fg.empty or "saliency_proxy_precision" not in fg:
        return []
    check = ", ".join(
        f"{r['teacher']}: {100 * r['saliency_proxy_precision']:.1f} % (chance {100 * r['saliency_proxy_chance']:.1f} %)"
        for _, r in fg.iterrows()
        if pd.notna(r.get("saliency_proxy_precision"))
    )
    return [
        "Inverted: share of an inverted image's kept patches inside its saliency region (the k patches with the "
        "largest input gradient of the target class, k = kept patches); images that keep every patch are "
        "stopped by CLS attention first. Sparse images were optimised on their kept patches only, so compare "
        "with smi-random, the control. Chance: k / N.",
        f"Saliency proxy on real test images (share of the most salient patches that are object): {check}.",
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
