"""Table 4, ``shapes``: where the kept patches lie, and the background-shortcut gap.

On the synthetic ``shapes`` dataset: how often kept patches lie on the object (against randomly
kept patches) and the student's correlated-vs-decorrelated test gap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from smi.errors import SMIError
from smi.report.render import HIGHER, LOWER, Column, Table
from smi.report.stats import fill_keys
from smi.report.tables._common import empty_table, kind_records, seed_cells, seed_note, sorted_rows

SHAPES_DATASET = "shapes"
# A foreground record scores SMI's CLS-attention stopping against random stopping on real
# images; records that do not name a method are labelled with this one.
FOREGROUND_DEFAULT_METHOD = "smi"


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
    dist = kind_records(summary, "distillation", (*index, "student"))
    if not dist.empty:
        dist = dist[(dist["dataset"] == SHAPES_DATASET)]
        if "decorrelation_gap" in dist:
            dist = dist[pd.to_numeric(dist["decorrelation_gap"], errors="coerce").notna()]
        else:
            dist = dist.iloc[0:0]
    inv = _inverted_foreground(fg, index)
    if fg.empty and dist.empty:
        return empty_table(
            "shapes", title, index, "no foreground records and no shapes distillation records in this run."
        )
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
            cells.append(seed_cells(fg, index, value, col.label))
    if not inv.empty:
        for value, col in (
            ("precision_pct", Column("Inverted: FG precision vs saliency (%)", HIGHER, 1)),
            ("chance_pct", Column("Inverted: chance (%)", None, 1)),
        ):
            columns.append(col)
            cells.append(seed_cells(inv, index, value, col.label))
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
                cells.append(seed_cells(part, index, value, col.label))
    both = pd.concat([f[list(index)] for f in (fg, inv, dist) if not f.empty], ignore_index=True)
    notes = [
        seed_note(pd.concat([f for f in (fg, inv, dist) if not f.empty], ignore_index=True)),
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
        sorted_rows(both, index, "method"),
        pd.concat(cells, ignore_index=True),
        group=group,
        notes=notes,
    )


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
