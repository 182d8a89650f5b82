"""Seed statistics and ratios against dense inversion, as the SMI paper reports them.

Sparse Model Inversion (Hu et al., ICML 2024) reports speed-up, FLOPs reduction and memory
reduction of a sparse method *relative to dense inversion* on the same model and budget. Here
a ratio is taken per matched pair (same dataset, teacher and seed, measured in the same run)
and only then summarised over seeds as mean +/- sample standard deviation, so seed-to-seed
variation of the machine enters the spread instead of being averaged away first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

# Reference calibration sources first, then the paper's two methods; everything else
# (baselines, external methods) follows alphabetically so new methods appear without edits.
LEADING_METHODS: tuple[str, ...] = ("noise", "real", "dense", "smi")
DENSE = "dense"
# Image sources that run no inversion (zero FLOPs, no memory): references, not competitors
# in cost, so the efficiency table and the cost plots leave them out.
REFERENCE_SOURCES: tuple[str, ...] = ("noise", "real")
# Matched-pair key for ratios against dense (see the module docstring): the same teacher
# instance (id and teacher seed) and inversion seed.
PAIR_KEYS: tuple[str, ...] = ("dataset", "teacher", "teacher_seed", "seed")
# Shown for a key a record lacks: a NaN key would never match itself in a join or group.
MISSING_KEY = "n/a"


def fill_keys(frame: pd.DataFrame, keys: Iterable[str]) -> pd.DataFrame:
    """A copy with every key column present, as strings, missing values as :data:`MISSING_KEY`."""
    frame = frame.copy()
    for key in keys:
        column = frame[key].astype("string").fillna(MISSING_KEY) if key in frame else MISSING_KEY
        frame[key] = pd.Series(column, index=frame.index).astype(str) if len(frame) else pd.Series(dtype=str)
    return frame


def method_sort_key(method: object) -> tuple[int, str]:
    """Sort key putting noise, real, dense, smi first and the rest alphabetically."""
    name = str(method)
    if name in LEADING_METHODS:
        return (LEADING_METHODS.index(name), "")
    return (len(LEADING_METHODS), name.lower())


def ordered_methods(methods: Iterable[object]) -> list[str]:
    """Unique method names in table order."""
    return sorted({str(m) for m in methods if pd.notna(m)}, key=method_sort_key)


def seed_stats(frame: pd.DataFrame, keys: Sequence[str], value: str) -> pd.DataFrame:
    """Mean, sample std (ddof=1) and count of ``value`` over the rows sharing ``keys``.

    Args:
        frame: Tidy rows, one per job.
        keys: Columns identifying a table cell (seed excluded).
        value: The numeric column to summarise; NaNs are ignored.

    Returns:
        One row per key combination with columns ``*keys, mean, std, n``; ``std`` is NaN for a
        single seed and ``mean`` NaN where every value is missing.
    """
    keys = list(keys)
    if frame.empty or value not in frame:
        return pd.DataFrame(columns=[*keys, "mean", "std", "n"])
    values = pd.to_numeric(frame[value], errors="coerce")
    grouped = values.groupby([frame[k] for k in keys], dropna=False, sort=False)
    out = grouped.agg(["mean", "std", "count"]).rename(columns={"count": "n"}).reset_index()
    out.columns = [*keys, "mean", "std", "n"]
    return out


# Cost columns compared with dense inversion.
COST_COLUMNS: tuple[str, ...] = (
    "time_per_image_s",
    "gflops_per_image",
    "peak_memory_bytes",
    "peak_memory_after_last_stop_bytes",
)


def ratios_to_dense(inversion: pd.DataFrame) -> pd.DataFrame:
    """Per-record speed-up and reductions relative to the matched dense record.

    Args:
        inversion: Inversion rows with ``method``, the :data:`PAIR_KEYS` (a missing key matches
            only itself missing) and the :data:`COST_COLUMNS` (missing ones are treated as NaN).

    Returns:
        A copy of ``inversion`` with ``speedup`` (dense time / method time),
        ``flops_reduction_pct``, ``memory_reduction_pct`` (overall peak) and
        ``memory_after_stop_reduction_pct`` (peak after the last stopping step, the sparse
        phase), each 100 * (1 - method / dense), and ``has_dense`` (whether a matched dense
        record exists). Several dense records for one key (e.g. a repeated job) are averaged.
    """
    frame = inversion.copy()
    for col in COST_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce") if col in frame else np.nan
    # Match on filled text copies of the keys, so that a key a record lacks matches itself
    # and the caller's key columns keep their types.
    keys = [f"_pair_{k}" for k in PAIR_KEYS]
    filled = fill_keys(frame[[k for k in PAIR_KEYS if k in frame]], PAIR_KEYS)
    for key, original in zip(keys, PAIR_KEYS):
        frame[key] = filled[original].to_numpy()
    dense = frame[frame["method"] == DENSE]
    dense = dense.groupby(keys, dropna=False)[list(COST_COLUMNS)].mean().add_prefix("dense_").reset_index()
    merged = frame.merge(dense, on=keys, how="left", indicator=True).drop(columns=keys)
    merged["has_dense"] = merged.pop("_merge") == "both"
    merged["speedup"] = merged["dense_time_per_image_s"] / merged["time_per_image_s"]

    def reduction(col: str) -> pd.Series:
        return 100.0 * (1.0 - merged[col] / merged[f"dense_{col}"])

    merged["flops_reduction_pct"] = reduction("gflops_per_image")
    merged["memory_reduction_pct"] = reduction("peak_memory_bytes")
    merged["memory_after_stop_reduction_pct"] = reduction("peak_memory_after_last_stop_bytes")
    return merged.drop(columns=[c for c in merged if c.startswith("dense_")])


# The time protocol of a timing record (smi time-inversions): interleaved rounds in one job.
ISOLATED_PROTOCOL = "interleaved"
TIMING_KEYS: tuple[str, ...] = ("dataset", "teacher", "method")


def isolated_timings(summary: pd.DataFrame) -> pd.DataFrame:
    """The timing job's rows (one per timed method): ``time_per_image_s`` and ``speedup`` are
    the fastest of interleaved rounds, taken with the machine to the job alone.

    Returns:
        Rows of ``kind == "timing"`` with the :data:`TIMING_KEYS` filled (empty frame if none).
    """
    if summary.empty or "kind" not in summary:
        return pd.DataFrame(columns=[*TIMING_KEYS, "time_per_image_s", "speedup"])
    timing = fill_keys(summary[summary["kind"] == "timing"], TIMING_KEYS)
    for col in ("time_per_image_s", "speedup"):
        timing[col] = pd.to_numeric(timing[col], errors="coerce") if col in timing else np.nan
    return timing


def first_epoch_reaching(curve: pd.DataFrame, threshold: float) -> float:
    """The first epoch whose test top-1 reaches ``threshold`` (NaN if none does).

    Args:
        curve: Rows with ``epoch`` and ``test_top1`` of one distillation run.
        threshold: Top-1 (percent) to reach.
    """
    if curve.empty or not np.isfinite(threshold):
        return float("nan")
    ordered = curve.sort_values("epoch")
    reached = ordered[pd.to_numeric(ordered["test_top1"], errors="coerce") >= threshold]
    return float(reached["epoch"].iloc[0]) if len(reached) else float("nan")
