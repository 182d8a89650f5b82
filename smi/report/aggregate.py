"""Aggregation of per-job metrics records into one tidy table and long-format curve tables.

Every workflow job writes one metrics JSON (its ``kind`` one of :data:`smi.records.KINDS`;
see ``docs/architecture.md``). This module flattens them into
``summary.csv`` (one row per record, nested dicts as ``parent.child`` columns) and moves the
per-iteration and per-epoch lists into long tables beside it, so the summary stays one
scalar per cell and the curves stay plottable:

- ``curves.csv``: distillation curves (``epoch``, ``train_loss``, ``test_top1``, ...);
- ``active_tokens.csv``: active patch tokens per sample at each inversion iteration;
- ``loss_curves.csv``: the inversion loss at each iteration;
- ``activation_ranges.csv``: the calibrated range of each activation quantizer (quantization).

A timing record (``kind`` = timing, ``smi time-inversions``) times several methods in one job;
it becomes one summary row per timed method (its ``timings`` list), each with the record's
shared keys, so that the tables find a method's isolated time where they find its other rows.

Unknown keys are kept, missing optional keys become empty cells, unknown kinds are kept as
rows that no table reads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from smi.errors import SMIError
from smi.io import atomic_path
from smi.records import KINDS

# Columns that identify a record; they lead the summary and are copied into the long tables.
KEY_COLUMNS: tuple[str, ...] = (
    "kind",
    "dataset",
    "teacher",
    "teacher_seed",
    "model_name",
    "method",
    "calibration",
    "student",
    "seed",
)
# Records that hold several measurements as a list of dicts under this key: kind -> key. Each
# entry becomes its own summary row (record keys + entry keys; lists in an entry as JSON text).
ROW_LISTS: dict[str, str] = {"timing": "timings"}
SOURCE_COLUMN = "source"
INTEGER_COLUMNS: tuple[str, ...] = (
    "seed",
    "teacher_seed",
    "w_bits",
    "a_bits",
    "calib_size",
    "epochs",
    "num_images",
    "iterations",
    "batch_size",
)
# Top-level list keys written as long tables: key -> (file name, index column, value column).
# ``curve`` holds dicts (one per epoch), so its value column is None: the dict keys become columns.
LONG_TABLES: dict[str, tuple[str, str, str | None]] = {
    "curve": ("curves.csv", "epoch", None),
    "active_tokens": ("active_tokens.csv", "iteration", "active_tokens"),
    "loss_curve": ("loss_curves.csv", "iteration", "loss"),
    "activation_ranges": ("activation_ranges.csv", "quantizer", None),
}
SUMMARY_NAME = "summary.csv"


@dataclass
class Aggregate:
    """The tidy summary and its long-format side tables.

    Attributes:
        summary: One row per metrics record (scalars only).
        long: Side table name (e.g. ``"curves.csv"``) -> long-format frame.
    """

    summary: pd.DataFrame
    long: dict[str, pd.DataFrame]

    def table(self, name: str) -> pd.DataFrame:
        """A side table by file name (empty frame if absent)."""
        return self.long.get(name, pd.DataFrame())


def is_record(data: Any) -> bool:
    """Whether parsed JSON is a metrics record: a known ``kind``, or any ``kind`` with provenance."""
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        return False
    return data["kind"] in KINDS or isinstance(data.get("provenance"), dict)


def find_metrics(root: str | os.PathLike[str]) -> list[Path]:
    """All ``*.json`` files below ``root`` that are metrics records (see :func:`is_record`).

    JSON files that are not records (configs, benchmark dumps, Snakemake metadata) are
    skipped silently, because a results folder legitimately holds them.
    """
    root = Path(root)
    if not root.is_dir():
        raise SMIError(f"results folder {root} does not exist; pass the folder the workflow wrote (results/<run>).")
    found = []
    for path in sorted(root.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # hidden folders hold tool state, not results
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if is_record(data):
            found.append(path)
    return found


def load_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one metrics record, raising :class:`SMIError` if it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SMIError(f"metrics file {path} does not exist; run the job that writes it first.") from exc
    except (OSError, ValueError) as exc:
        raise SMIError(f"metrics file {path} is not readable JSON ({exc}); rerun the job that writes it.") from exc
    if not isinstance(data, dict) or "kind" not in data:
        raise SMIError(f"metrics file {path} has no 'kind' key; it is not a metrics record of this suite.")
    return data


def _flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``a.b`` keys; lists nested inside dicts become JSON strings."""
    flat: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping):
            flat.update(_flatten(item, f"{name}."))
        elif isinstance(item, (list, tuple)):
            flat[name] = json.dumps(list(item))
        else:
            flat[name] = item
    return flat


def _record_row(record: Mapping[str, Any], source: str) -> dict[str, Any]:
    # Top-level lists are per-iteration or per-epoch data: they belong in the long tables.
    scalars = {k: v for k, v in record.items() if not isinstance(v, (list, tuple))}
    row = _flatten(scalars)
    row[SOURCE_COLUMN] = source
    return row


def _long_rows(record: Mapping[str, Any], keys: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for key, (name, index, value_col) in LONG_TABLES.items():
        series = record.get(key)
        if not isinstance(series, (list, tuple)) or not series:
            continue
        rows = out.setdefault(name, [])
        for position, item in enumerate(series):
            if value_col is None:
                if isinstance(item, Mapping):
                    # Epochs are counted from 1 when the writer did not say.
                    rows.append(
                        {**keys, index: item.get(index, position + 1), **{k: v for k, v in item.items() if k != index}}
                    )
            else:
                rows.append({**keys, index: position, value_col: item})
    return out


def _row_entries(record: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The per-row records of a record kind in :data:`ROW_LISTS` (``None`` for other kinds)."""
    key = ROW_LISTS.get(str(record.get("kind")))
    if key is None or not isinstance(record.get(key), (list, tuple)):
        return None
    shared = {k: v for k, v in record.items() if k != key}
    entries = []
    for entry in record[key]:
        if isinstance(entry, Mapping):
            lists = {k: json.dumps(list(v)) for k, v in entry.items() if isinstance(v, (list, tuple))}
            entries.append({**shared, **entry, **lists})
    return entries


def aggregate(records: Iterable[tuple[str, Mapping[str, Any]]]) -> Aggregate:
    """Flatten records into the summary and the long tables.

    Args:
        records: ``(source, record)`` pairs; ``source`` is stored in the ``source`` column.

    Returns:
        The :class:`Aggregate`; every side table of :data:`LONG_TABLES` is present (maybe empty).
    """
    rows: list[dict[str, Any]] = []
    long_rows: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in LONG_TABLES.values()}
    for source, record in records:
        entries = _row_entries(record)
        if entries is not None:
            rows.extend(_record_row(entry, source) for entry in entries)
            continue
        row = _record_row(record, source)
        rows.append(row)
        keys = {k: row.get(k) for k in (*KEY_COLUMNS, SOURCE_COLUMN) if k in row}
        for name, extra in _long_rows(record, keys).items():
            long_rows[name].extend(extra)
    summary = _ordered(pd.DataFrame(rows))
    long = {name: _ordered(pd.DataFrame(items)) for name, items in long_rows.items()}
    return Aggregate(summary=_typed(summary), long={k: _typed(v) for k, v in long.items()})


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Key columns first, then the rest alphabetically, provenance and source last."""
    keys = [c for c in KEY_COLUMNS if c in frame]
    tail = sorted(c for c in frame if c.startswith("provenance."))
    if SOURCE_COLUMN in frame:
        tail.append(SOURCE_COLUMN)
    rest = sorted(c for c in frame if c not in keys and c not in tail)
    return frame[keys + rest + tail]


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Integer columns as nullable integers, so a missing seed does not turn 0 into 0.0."""
    frame = frame.copy()
    for col in INTEGER_COLUMNS:
        if col in frame:
            numeric = pd.to_numeric(frame[col], errors="coerce")
            if numeric.dropna().mod(1).eq(0).all():
                frame[col] = numeric.astype("Int64")
    return frame


def aggregate_files(paths: Iterable[str | os.PathLike[str]], root: str | os.PathLike[str] | None = None) -> Aggregate:
    """Load and aggregate metrics files; ``source`` is relative to ``root`` when given."""
    records = []
    for path in paths:
        path = Path(path)
        source = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else str(path)
        records.append((source, load_record(path)))
    if not records:
        raise SMIError(
            "no metrics records to aggregate; check --inputs or that --root holds the workflow's JSON files."
        )
    return aggregate(records)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_aggregate(agg: Aggregate, summary_path: str | os.PathLike[str]) -> list[Path]:
    """Write ``summary_path`` and the long tables next to it (atomically); returns the paths."""
    summary_path = Path(summary_path)
    written = [summary_path]
    _write_csv(agg.summary, summary_path)
    for name, frame in agg.long.items():
        path = summary_path.parent / name
        _write_csv(frame, path)
        written.append(path)
    return written


def read_aggregate(summary_path: str | os.PathLike[str]) -> Aggregate:
    """Read a summary written by :func:`write_aggregate` and its side tables (if present).

    Args:
        summary_path: ``summary.csv``, or a results folder holding it.
    """
    path = Path(summary_path)
    if path.is_dir():
        path = path / SUMMARY_NAME
    if not path.is_file():
        raise SMIError(f"summary table {path} does not exist; run `smi aggregate` for this run first.")
    summary = _read_csv(path)
    long = {}
    for name, _, _ in LONG_TABLES.values():
        side = path.parent / name
        long[name] = _read_csv(side) if side.is_file() else pd.DataFrame()
    return Aggregate(summary=summary, long=long)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (OSError, ValueError) as exc:
        raise SMIError(f"cannot read table {path} ({exc}); rerun `smi aggregate`.") from exc
    return _typed(frame)
