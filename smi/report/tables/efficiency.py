"""Table 1, ``efficiency``: inversion time, speed-up, FLOPs and memory per teacher and method.

Laid out like the efficiency table of Sparse Model Inversion (Hu et al., ICML 2024): each method
against dense inversion of the same teacher and seed.
"""

from __future__ import annotations

import pandas as pd

from smi.report.render import HIGHER, LOWER, Column, Table
from smi.report.stats import MISSING_KEY, REFERENCE_SOURCES, isolated_timings, ratios_to_dense
from smi.report.tables._common import empty_table, int_text, kind_records, seed_cells, seed_note, sorted_rows

BYTES_PER_MIB = 2**20
MEMORY_KINDS: dict[str, str] = {
    "cuda_peak_allocated": "peak CUDA memory allocated during inversion",
    "cpu_saved_activations": "bytes autograd saves for backward at the peak iteration (CPU runs; the "
    "device-independent part of memory)",
}


def efficiency_table(summary: pd.DataFrame) -> Table:
    """Table 1: inversion cost per teacher and method, relative to dense inversion.

    Time per image and speed-up come from the isolated timing job of each teacher (``kind`` =
    timing, :func:`smi.report.stats.isolated_timings`) when the run has one; otherwise from the
    inversion jobs' own wall times, which the notes then say were not isolated. FLOPs and memory
    come from the inversion jobs (exact counts).
    """
    index = ("dataset", "teacher", "method")
    title = "Inversion efficiency per image (relative to dense inversion)"
    inv = kind_records(summary, "inversion", index)
    inv = inv[~inv["method"].isin(REFERENCE_SOURCES)]
    if inv.empty:
        return empty_table("efficiency", title, index, "no inversion records in this run.")
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
            seed_cells(frame, index, "time_per_image_s", time_col.label),
            seed_cells(frame, index, "speedup", speedup_col.label),
        ]
        time_notes = [
            "Times: each inversion job's own wall time; jobs ran beside other jobs, so times and speed-ups "
            "are not isolated (enable `timing` for isolated ones)."
        ]
    else:
        time_cells = [
            seed_cells(timing, index, "time_per_image_s", time_col.label),
            seed_cells(timing, index, "speedup", speedup_col.label),
        ]
        time_notes = [_timing_note(timing, frame)]
    cells = pd.concat(
        [*time_cells, *(seed_cells(frame, index, value, col.label) for value, col in specs)], ignore_index=True
    )
    notes = [
        seed_note(frame),
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
        sorted_rows(frame, index, "method"),
        cells,
        group=("dataset", "teacher"),
        notes=notes,
    )


def _timing_note(timing: pd.DataFrame, frame: pd.DataFrame) -> str:
    """How the isolated times were taken, and which listed methods they do not cover."""

    def values(col: str) -> str:
        found = sorted(
            {int_text(v) for v in pd.to_numeric(timing.get(col, pd.Series(dtype=float)), errors="coerce").dropna()}
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
