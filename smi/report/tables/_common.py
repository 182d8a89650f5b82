"""What every table builder shares: record selection, row order, seed cells and notes."""

from __future__ import annotations

import pandas as pd

from smi.report.render import Table
from smi.report.stats import MISSING_KEY, fill_keys, method_sort_key, seed_stats

# Real data is an upper reference, not a data-free competitor: never set in bold.
REFERENCE_METHODS: tuple[str, ...] = ("real",)
SEED_NOTE = "Cells are mean ± sample standard deviation over seeds (no ± for a single seed)."


def kind_records(summary: pd.DataFrame, kind: str, keys: tuple[str, ...]) -> pd.DataFrame:
    """Rows of one kind with every key column present and filled (NaN keys never match)."""
    if summary.empty or "kind" not in summary:
        return pd.DataFrame(columns=list(keys))
    return fill_keys(summary[summary["kind"] == kind], keys)


def empty_table(name: str, title: str, index: tuple[str, ...], reason: str) -> Table:
    """A table with no rows that says why (its files still get written, with the reason)."""
    return Table(
        name, title, index, [], pd.DataFrame(columns=[*index, "reference"]), pd.DataFrame(), empty_reason=reason
    )


def sorted_rows(frame: pd.DataFrame, index: tuple[str, ...], method_col: str) -> pd.DataFrame:
    """The distinct rows of ``index``, methods in table order within each group, reference rows marked."""
    rows = frame[list(index)].drop_duplicates()
    rows = rows.assign(_order=rows[method_col].map(method_sort_key))
    rows = rows.sort_values([*[c for c in index if c != method_col], "_order"], kind="stable")
    rows = rows.drop(columns="_order").reset_index(drop=True)
    return rows.assign(reference=rows[method_col].isin(REFERENCE_METHODS))


def seed_cells(frame: pd.DataFrame, index: tuple[str, ...], value: str, label: str) -> pd.DataFrame:
    """Cells (mean, std, seed count) of ``value`` per ``index`` row, in column ``label``."""
    stats = seed_stats(frame, index, value)
    return stats.assign(column=label, note="")


def seed_note(frame: pd.DataFrame) -> str:
    """The note that says what a cell pools: which seeds, and which teacher seeds."""
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


def teacher_seed_column(frame: pd.DataFrame) -> list[str]:
    """``["teacher_seed"]`` where the records name it: reference rows are one per teacher."""
    return ["teacher_seed"] if "teacher_seed" in frame and frame["teacher_seed"].notna().any() else []


def int_text(value: object) -> str:
    """``value`` as an integer, or ``?`` when it is missing."""
    return str(int(value)) if pd.notna(value) else "?"
