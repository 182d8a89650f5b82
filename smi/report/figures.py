"""Figures of a run (seaborn, PNG and SVG), after those of Sparse Model Inversion (Hu et al., ICML 2024).

- ``speedup``: speed-up, FLOPs reduction and memory reduction of each method over dense
  inversion (bars: mean over seeds, error bars: sample std, dots: single seeds);
- ``accuracy_vs_gflops``: downstream top-1 against inversion GFLOPs per image, one point per
  method and seed, with the Pareto front (cheaper and at least as accurate);
- ``distillation_curves``: student test top-1 and training loss per epoch, per method;
- ``active_patches``: active patch tokens per sample and inversion loss per iteration.

Figures are built on :class:`matplotlib.figure.Figure` objects (no pyplot state), so they are
safe in worker processes; the Agg backend is selected for anything that does touch pyplot.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: the workflow runs on machines without a display

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from smi.io import atomic_path
from smi.report.aggregate import Aggregate
from smi.report.render import METHOD_LABELS
from smi.report.stats import (
    DENSE,
    REFERENCE_SOURCES,
    TIMING_KEYS,
    fill_keys,
    isolated_timings,
    ordered_methods,
    ratios_to_dense,
)
from smi.report.tables import BUDGET_COLUMN, budget_labels

FORMATS: tuple[str, ...] = ("png", "svg")
DPI = 150
PANEL_SIZE = (4.2, 3.2)  # inches per panel: readable at paper column width
MAX_PANEL_COLUMNS = 4
PALETTE = "colorblind"
ERRORBAR = "sd"  # seed spread, as in the tables
SVG_HASH_SALT = "smi-report"


def method_palette(methods: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One fixed colour per method (in table order), shared by every figure of a run."""
    ordered = ordered_methods(methods)
    colours = sns.color_palette(PALETTE, n_colors=max(len(ordered), 1))
    return dict(zip(ordered, colours))


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _panels(count: int, ncols: int | None = None) -> tuple[Figure, list]:
    ncols = ncols or min(count, MAX_PANEL_COLUMNS)
    nrows = math.ceil(count / ncols)
    fig = Figure(figsize=(PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


@dataclass(frozen=True)
class _Panel:
    """One panel of a settings x metrics grid: its axes and the rows it plots."""

    ax: Any
    setting: str
    part: pd.DataFrame  # the rows of this setting
    order: list[str]  # their methods, in table order
    value: str  # the column plotted on y
    ylabel: str
    last_column: bool  # panels of a row share the legend of the last one

    def by_method(self, palette: dict) -> dict[str, Any]:
        """What every panel's seaborn plot shares: its rows and y, one colour per method, seed spread as error."""
        return {
            "data": self.part,
            "y": self.value,
            "hue": "method",
            "hue_order": self.order,
            "palette": palette,
            "errorbar": ERRORBAR,
            "ax": self.ax,
        }


def _setting_panels(series: Sequence[tuple[pd.DataFrame, str, str]]) -> tuple[Figure, list[_Panel]]:
    """A figure with one row per ``setting`` (in order of appearance) and one column per series.

    Args:
        series: ``(frame, value column, y label)`` per column; every frame has a ``setting``
            and a ``method`` column.
    """
    settings = list(dict.fromkeys(s for frame, _, _ in series for s in frame["setting"]))
    fig, axes = _panels(len(settings) * len(series), ncols=len(series))
    panels = []
    for row, setting in enumerate(settings):
        for col, (frame, value, ylabel) in enumerate(series):
            part = frame[frame["setting"] == setting]
            ax = axes[row * len(series) + col]
            panels.append(
                _Panel(ax, setting, part, ordered_methods(part["method"]), value, ylabel, col == len(series) - 1)
            )
    return fig, panels


def placeholder(title: str, reason: str) -> Figure:
    """A figure that says why it is empty (keeps the workflow's output names stable)."""
    fig = Figure(figsize=PANEL_SIZE, layout="constrained")
    ax = fig.subplots()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, f"No data:\n{reason}", ha="center", va="center", wrap=True)
    return fig


# Keys every plotted frame needs; records that lack one get MISSING_KEY instead of a KeyError.
FIGURE_KEYS: tuple[str, ...] = ("dataset", "teacher", "method", "calibration", "student")
NUMERIC: tuple[str, ...] = ("w_bits", "a_bits", "seed")


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    frame = fill_keys(frame, FIGURE_KEYS)
    for col in NUMERIC:
        if col not in frame:
            frame[col] = pd.NA
    return frame


def _kind(summary: pd.DataFrame, kind: str) -> pd.DataFrame:
    if summary.empty or "kind" not in summary:
        return pd.DataFrame()
    return _keyed(summary[summary["kind"] == kind])


def _relabel_legend(ax, show: bool = True) -> None:
    """Paper names in the legend; ``show=False`` drops it (panels of a row share one legend)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles and show:
        ax.legend(handles, [_label(lbl) for lbl in labels], title="Method", fontsize="small")
    elif ax.get_legend() is not None:
        ax.get_legend().remove()


def speedup_figure(summary: pd.DataFrame, palette: dict | None = None) -> Figure:
    """Bars of speed-up, FLOPs reduction and memory reduction over dense inversion."""
    title = "Inversion cost relative to dense inversion"
    inv = _kind(summary, "inversion")
    if inv.empty or "method" not in inv:
        return placeholder(title, "no inversion records.")
    frame = ratios_to_dense(inv)
    timing = isolated_timings(summary)
    if not timing.empty:
        # The isolated timing job's speed-ups, as in the efficiency table (job wall times shared the machine).
        timed = timing[list(TIMING_KEYS) + ["speedup"]].drop_duplicates(list(TIMING_KEYS))
        frame = frame.drop(columns="speedup").merge(timed, on=list(TIMING_KEYS), how="left")
    frame = frame[frame["has_dense"] & ~frame["method"].isin((DENSE, *REFERENCE_SOURCES))]
    if frame.empty:
        return placeholder(title, "no method has a matching dense run.")
    frame = frame.assign(setting=frame["dataset"].astype(str) + " / " + frame["teacher"].astype(str))
    palette = palette or method_palette(frame["method"])
    metrics = [
        ("speedup", "Speed-up over dense (×)"),
        ("flops_reduction_pct", "FLOPs reduction (%)"),
        ("memory_reduction_pct", "Peak-memory reduction (%)"),
        ("memory_after_stop_reduction_pct", "Memory reduction after last stop (%)"),
    ]
    fig, panels = _setting_panels([(frame, value, ylabel) for value, ylabel in metrics])
    for p in panels:
        sns.barplot(x="method", order=p.order, capsize=0.2, legend=False, **p.by_method(palette))
        # No jitter: random jitter would make reruns produce different files.
        sns.stripplot(p.part, x="method", y=p.value, order=p.order, color="black", size=3, jitter=False, ax=p.ax)
        if p.value == "speedup":
            p.ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        p.ax.set_xticks(range(len(p.order)), [_label(m) for m in p.order], rotation=30, ha="right")
        p.ax.set(xlabel="", ylabel=p.ylabel, title=p.setting)
    fig.suptitle(f"{title} (bars: mean over seeds, error bars: std, dots: seeds)")
    return fig


def _pareto(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Points not beaten by a cheaper (or equally cheap) and at least as accurate point."""
    ordered = points.sort_values([x, y], ascending=[True, False])
    best = -np.inf
    keep = []
    for idx, value in zip(ordered.index, ordered[y]):
        if value > best:
            keep.append(idx)
            best = value
    return ordered.loc[keep]


def _downstream(summary: pd.DataFrame) -> pd.DataFrame:
    """Downstream top-1 per (setting, method, seed) with the inversion GFLOPs of those images."""
    parts = []
    dist = _kind(summary, "distillation")
    if not dist.empty and "final_top1" in dist:
        budget = " (" + budget_labels(dist) + ")" if BUDGET_COLUMN in dist else ""
        parts.append(dist.assign(setting="KD → " + dist["student"] + budget, top1=dist["final_top1"]))
    quant = _kind(summary, "quantization")
    if not quant.empty and "top1" in quant:
        bits = "W" + quant["w_bits"].astype("string").fillna("?") + "/A" + quant["a_bits"].astype("string").fillna("?")
        parts.append(quant.assign(setting="PTQ " + bits, method=quant["calibration"]))
    if not parts:
        return pd.DataFrame()
    down = pd.concat(parts, ignore_index=True)[["dataset", "teacher", "seed", "method", "setting", "top1"]]
    down["top1"] = pd.to_numeric(down["top1"], errors="coerce")
    inv = _kind(summary, "inversion")
    if inv.empty or "gflops_per_image" not in inv:
        return down.assign(gflops_per_image=np.nan)
    inv = inv[~inv["method"].isin(REFERENCE_SOURCES)]  # no inversion cost: drawn as reference lines
    cost = inv.groupby(["dataset", "teacher", "seed", "method"], dropna=False)["gflops_per_image"].mean().reset_index()
    return down.merge(cost, on=["dataset", "teacher", "seed", "method"], how="left")


def accuracy_vs_gflops_figure(summary: pd.DataFrame, palette: dict | None = None) -> Figure:
    """Downstream top-1 against inversion GFLOPs per image, with the Pareto front per panel."""
    title = "Accuracy vs inversion cost"
    down = _downstream(summary)
    if down.empty or down["gflops_per_image"].notna().sum() == 0:
        return placeholder(title, "no downstream record whose images have inversion FLOPs.")
    down["panel"] = down["dataset"].astype(str) + " / " + down["teacher"].astype(str) + ": " + down["setting"]
    panels = [p for p in dict.fromkeys(down["panel"]) if down.loc[down["panel"] == p, "gflops_per_image"].notna().any()]
    palette = palette or method_palette(down["method"])
    fig, axes = _panels(len(panels))
    for ax, panel in zip(axes, panels):
        part = down[down["panel"] == panel]
        points = part.dropna(subset=["gflops_per_image", "top1"])
        order = ordered_methods(points["method"])
        sns.scatterplot(
            points,
            x="gflops_per_image",
            y="top1",
            hue="method",
            hue_order=order,
            palette=palette,
            style="method",
            style_order=order,
            s=60,
            ax=ax,
        )
        front = _pareto(points, "gflops_per_image", "top1")
        ax.step(
            front["gflops_per_image"],
            front["top1"],
            where="post",
            color="grey",
            linewidth=1,
            linestyle=":",
            label="Pareto front",
        )
        # Sources without an inversion cost (noise, real data) are references, drawn as lines.
        refs = part[part["gflops_per_image"].isna()].groupby("method")["top1"].mean()
        for method, value in refs.items():
            ax.axhline(
                value,
                color=palette.get(method, "grey"),
                linestyle="--",
                linewidth=1,
                label=f"{_label(method)} (no inversion)",
            )
        ax.set(xlabel="Inversion cost (GFLOPs / image)", ylabel="Top-1 (%)", title=panel)
        _relabel_legend(ax)
    fig.suptitle(f"{title}: one point per method and seed")
    return fig


def distillation_curves_figure(summary: pd.DataFrame, curves: pd.DataFrame, palette: dict | None = None) -> Figure:
    """Student test top-1 and training loss per epoch (line: mean over seeds, band: std)."""
    title = "Knowledge transfer curves"
    if curves.empty or "epoch" not in curves or "method" not in curves:
        return placeholder(title, "no distillation curves (curves.csv is empty).")
    curves = curves.copy()
    curves["setting"] = curves["dataset"] + " / " + curves["teacher"] + " → " + curves["student"]
    dist = _kind(summary, "distillation")
    if BUDGET_COLUMN in dist and "source" in curves and "source" in dist:
        budgets = dict(zip(dist["source"], budget_labels(dist)))
        curves["setting"] += " (" + curves["source"].map(budgets).fillna("fixed image count") + ")"
    palette = palette or method_palette(curves["method"])
    metrics = [m for m in (("test_top1", "Test top-1 (%)"), ("train_loss", "Training loss")) if m[0] in curves]
    fig, panels = _setting_panels([(curves, value, ylabel) for value, ylabel in metrics])
    for p in panels:
        sns.lineplot(x="epoch", marker="o", **p.by_method(palette))
        p.ax.set(xlabel="Epoch", ylabel=p.ylabel, title=p.setting)
        p.ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _relabel_legend(p.ax, show=p.last_column)
    fig.suptitle(f"{title} (line: mean over seeds, band: std)")
    return fig


def active_patches_figure(active: pd.DataFrame, losses: pd.DataFrame, palette: dict | None = None) -> Figure:
    """Active patch tokens per sample and inversion loss against the iteration."""
    title = "Inversion progress"
    series = [
        (f, v, lbl)
        for f, v, lbl in ((active, "active_tokens", "Active patches per image"), (losses, "loss", "Inversion loss"))
        if not f.empty and v in f
    ]
    if not series:
        return placeholder(title, "no per-iteration inversion records.")
    palette = palette or method_palette(pd.concat([f["method"] for f, _, _ in series]))
    series = [
        (f.assign(setting=f["dataset"].astype(str) + " / " + f["teacher"].astype(str)), v, y) for f, v, y in series
    ]
    fig, panels = _setting_panels(series)
    for p in panels:
        # Patch counts change in steps at the stopping iterations: draw them (and the band) as steps.
        steps = {"drawstyle": "steps-post", "err_kws": {"step": "post"}} if p.value == "active_tokens" else {}
        sns.lineplot(x="iteration", **p.by_method(palette), **steps)
        p.ax.set(xlabel="Iteration", ylabel=p.ylabel, title=p.setting)
        _relabel_legend(p.ax, show=p.last_column)
    fig.suptitle(f"{title} (mean over seeds)")
    return fig


def save_figure(
    fig: Figure, out_dir: str | os.PathLike[str], name: str, formats: Sequence[str] = FORMATS
) -> list[Path]:
    """Save ``<out_dir>/<name>.<fmt>`` atomically for each format; returns the paths."""
    written = []
    for fmt in formats:
        path = Path(out_dir) / f"{name}.{fmt}"
        # SVG carries a date and random element ids by default; fix both so reruns give identical files.
        metadata = {"Date": None} if fmt == "svg" else None
        with atomic_path(path) as tmp, matplotlib.rc_context({"svg.hashsalt": SVG_HASH_SALT}):
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata=metadata)
        written.append(path)
    return written


def build_figures(agg: Aggregate) -> dict[str, Figure]:
    """Every summary-based figure of a run, keyed by :data:`smi.report.names.SUMMARY_FIGURE_NAMES`."""
    summary = agg.summary
    methods = [m for col in ("method", "calibration") if col in summary for m in summary[col].dropna()]
    palette = method_palette(methods)
    builders: dict[str, Callable[[], Figure]] = {
        "speedup": lambda: speedup_figure(summary, palette),
        "accuracy_vs_gflops": lambda: accuracy_vs_gflops_figure(summary, palette),
        "distillation_curves": lambda: distillation_curves_figure(summary, _keyed(agg.table("curves.csv")), palette),
        "active_patches": lambda: active_patches_figure(
            _keyed(agg.table("active_tokens.csv")), _keyed(agg.table("loss_curves.csv")), palette
        ),
    }
    with sns.axes_style("whitegrid"):
        return {name: build() for name, build in builders.items()}
