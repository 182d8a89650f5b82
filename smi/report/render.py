"""Paper-style rendering of result tables: Markdown, LaTeX (booktabs) and HTML.

A :class:`Table` holds numbers, not strings: one cell per (row, column) with the mean, sample
std and seed count. Rendering formats each cell as ``mean ± std``, sets the best value of each
column in bold within a row group (for example per teacher), and writes the notes under the
table. Keeping the numbers separate lets ``smi compare`` diff two runs cell by cell.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from smi.io import atomic_path

HIGHER, LOWER = "higher", "lower"
# Significant digits when a column does not fix its decimals (times and memory span decades).
AUTO_SIGNIFICANT = 3
INDEX_LABELS: dict[str, str] = {
    "dataset": "Dataset",
    "teacher": "Teacher",
    "student": "Student",
    "method": "Method",
    "calibration": "Calibration",
    "budget": "Image budget",
}
# Paper names of the methods this suite ships; any other name is shown as written.
METHOD_LABELS: dict[str, str] = {
    "noise": "Noise",
    "real": "Real data",
    "dense": "Dense (DMI)",
    "smi": "SMI",
    "smi-random": "SMI (random stop)",
    "pri": "PRI",
    "psaq": "PSAQ-ViT",
    "psaq-smi": "PSAQ-ViT + SMI",
}
REFERENCE_LABEL_COLUMNS = ("method", "calibration")
FORMATS = ("md", "tex", "html")


@dataclass(frozen=True)
class Column:
    """One value column of a table.

    Attributes:
        label: Header text, units included (e.g. ``"Time / image (s)"``).
        better: ``"higher"``, ``"lower"`` or None (no bold).
        decimals: Fixed decimals, or None for :data:`AUTO_SIGNIFICANT` significant digits.
    """

    label: str
    better: str | None = None
    decimals: int | None = 2


@dataclass
class Table:
    """A result table as numbers.

    Attributes:
        name: File stem (``efficiency``, ``quantization``, ...).
        title: Caption.
        index: Row-key column names, e.g. ``("dataset", "teacher", "method")``.
        columns: Value columns in display order.
        rows: Row keys in display order (columns ``index``) plus a bool ``reference`` column
            (reference rows such as the FP model are never bold).
        cells: Long frame with ``index`` columns, ``column`` (a label), ``mean``, ``std``, ``n``
            and an optional ``note`` (text appended to the cell, e.g. ``"(2/3)"``).
        group: Index columns within which the best value of a column is bold.
        notes: Sentences printed under the table.
        empty_reason: Why the table has no data (used instead of rendering).
    """

    name: str
    title: str
    index: tuple[str, ...]
    columns: list[Column]
    rows: pd.DataFrame
    cells: pd.DataFrame
    group: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    empty_reason: str = ""

    @property
    def empty(self) -> bool:
        """True when there is nothing to show."""
        return self.rows.empty or self.cells.empty


def _decimals(column: Column, values: Sequence[float]) -> int:
    if column.decimals is not None:
        return column.decimals
    finite = [abs(v) for v in values if isinstance(v, float) and math.isfinite(v) and v != 0]
    if not finite:
        return 2
    magnitude = math.floor(math.log10(min(finite)))
    return max(0, AUTO_SIGNIFICANT - 1 - magnitude)


def _format_number(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _cell_parts(mean: float, std: float, n: float, decimals: int) -> tuple[str, str | None]:
    """(mean text, std text or None) of one cell."""
    if not math.isfinite(mean):
        return "", None
    std_text = _format_number(std, decimals) if n > 1 and math.isfinite(std) else None
    return _format_number(mean, decimals), std_text


def _best_rows(table: Table, column: Column, lookup: dict) -> set[tuple]:
    """Row keys holding the best mean of ``column`` in their group (ties all bold)."""
    if column.better is None:
        return set()
    best: set[tuple] = set()
    group_pos = [table.index.index(g) for g in table.group]
    candidates: dict[tuple, list[tuple[tuple, float]]] = {}
    for row in table.rows.itertuples(index=False):
        row_d = row._asdict()
        if row_d.get("reference"):
            continue
        key = tuple(row_d[i] for i in table.index)
        cell = lookup.get((key, column.label))
        if cell is None or not math.isfinite(cell[0]):
            continue
        candidates.setdefault(tuple(key[p] for p in group_pos), []).append((key, cell[0]))
    for items in candidates.values():
        if len(items) < 2:
            continue  # a lone row is not "best" of anything
        values = [v for _, v in items]
        target = max(values) if column.better == HIGHER else min(values)
        decimals = _decimals(column, values)
        # Compare at displayed precision so that visually equal numbers are all bold.
        shown = [_format_number(v, decimals) for v in values]
        if len(set(shown)) == 1:
            continue  # all equal: nothing stands out
        best.update(k for (k, _), text in zip(items, shown) if text == _format_number(target, decimals))
    return best


def _label(index_col: str, value: object) -> str:
    if pd.isna(value):
        return ""
    text = str(value)
    if index_col in REFERENCE_LABEL_COLUMNS:
        return METHOD_LABELS.get(text, text)
    return text


def _constant_index(table: Table) -> list[str]:
    """Index columns with one value in every row: shown once in the caption, not per row."""
    if len(table.index) <= 1:
        return []
    return [c for c in table.index if c not in REFERENCE_LABEL_COLUMNS and table.rows[c].nunique(dropna=False) == 1]


def _grid(table: Table, style: str) -> tuple[list[str], list[list[str]], list[str]]:
    """Headers, body rows and caption extras for one output style (``md``, ``tex``, ``html``)."""
    lookup = {}
    for cell in table.cells.itertuples(index=False):
        d = cell._asdict()
        key = tuple(d[i] for i in table.index)
        note = d.get("note")
        lookup[(key, d["column"])] = (
            float(d["mean"]),
            float(d["std"]),
            float(d["n"]),
            "" if pd.isna(note) else str(note),
        )
    decimals = {
        c.label: _decimals(c, [v[0] for (k, lbl), v in lookup.items() if lbl == c.label]) for c in table.columns
    }
    best = {c.label: _best_rows(table, c, lookup) for c in table.columns}
    constant = _constant_index(table)
    shown_index = [c for c in table.index if c not in constant]
    pm = {"md": " ± ", "tex": r" $\pm$ ", "html": " ± "}[style]
    headers = [INDEX_LABELS.get(c, c) for c in shown_index] + [c.label for c in table.columns]
    body = []
    for row in table.rows.itertuples(index=False):
        row_d = row._asdict()
        key = tuple(row_d[i] for i in table.index)
        out = [_escape(_label(c, row_d[c]), style) for c in shown_index]
        for column in table.columns:
            cell = lookup.get((key, column.label))
            if cell is None:
                out.append("")
                continue
            mean_text, std_text = _cell_parts(cell[0], cell[1], cell[2], decimals[column.label])
            text = mean_text + (pm + std_text if std_text else "")
            if text and key in best[column.label]:
                text = _bold(text, style)
            note = _escape(cell[3], style)
            out.append(f"{text} {note}".strip())
        body.append(out)
    extras = [f"{INDEX_LABELS.get(c, c)}: {_label(c, table.rows[c].iloc[0])}" for c in constant]
    return headers, body, extras


def _bold(text: str, style: str) -> str:
    if style == "md":
        return f"**{text}**"
    if style == "tex":
        return rf"\textbf{{{text}}}"
    return f"<b>{text}</b>"


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "→": r"$\rightarrow$",
    "×": r"$\times$",
    "≥": r"$\geq$",
    "−": r"$-$",
}


def _escape(text: str, style: str) -> str:
    if style == "tex":
        return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)
    if style == "html":
        return html.escape(text)
    return text.replace("|", r"\|")


def render_markdown(table: Table) -> str:
    """The table as a GitHub-flavoured Markdown document (title, table, notes)."""
    if table.empty:
        return f"## {table.title}\n\nNo data: {table.empty_reason or 'no matching records in this run.'}\n"
    headers, body, extras = _grid(table, "md")
    align = ["left"] * (len(headers) - len(table.columns)) + ["right"] * len(table.columns)
    lines = [f"## {table.title}", ""]
    if extras:
        lines += ["; ".join(extras), ""]
    lines += [tabulate(body, headers=headers, tablefmt="pipe", colalign=align, disable_numparse=True), ""]
    lines += [f"- {note}" for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def render_latex(table: Table) -> str:
    """The table as a LaTeX ``table`` float with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""
    caption = _escape(table.title, "tex")
    if table.empty:
        return f"% {caption}: no data ({_escape(table.empty_reason or 'no matching records', 'tex')})\n"
    headers, body, extras = _grid(table, "tex")
    headers = [_escape(h, "tex") for h in headers]
    align = ["left"] * (len(headers) - len(table.columns)) + ["right"] * len(table.columns)
    # latex_raw keeps our markup (\textbf, $\pm$); its \hline rules become booktabs rules.
    raw = tabulate(body, headers=headers, tablefmt="latex_raw", colalign=align, disable_numparse=True)
    rules = iter([r"\toprule", r"\midrule", r"\bottomrule"])
    tabular = "\n".join(next(rules) if line.strip() == r"\hline" else line for line in raw.splitlines())
    if extras:
        caption += " (" + _escape("; ".join(extras), "tex") + ")"
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{caption}}}", rf"\label{{tab:{table.name}}}", tabular]
    if table.notes:
        notes = " ".join(_escape(n, "tex") for n in table.notes)
        lines.append(rf"\par\smallskip{{\footnotesize {notes}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def render_html(table: Table) -> str:
    """The table as a small standalone HTML page (for the Snakemake report, which embeds HTML)."""
    title = html.escape(table.title)
    style = (
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "th,td{padding:2px 8px}thead{border-top:2px solid;border-bottom:1px solid}"
        "tbody{border-bottom:2px solid}td.num{text-align:right}</style>"
    )
    if table.empty:
        body_html = f"<p>No data: {html.escape(table.empty_reason or 'no matching records in this run.')}</p>"
    else:
        headers, body, extras = _grid(table, "html")
        n_index = len(headers) - len(table.columns)
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        rows = "".join(
            "<tr>"
            + "".join(f'<td class="{"num" if i >= n_index else "key"}">{v}</td>' for i, v in enumerate(r))
            + "</tr>"
            for r in body
        )
        parts = [f"<p>{html.escape('; '.join(extras))}</p>"] if extras else []
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        if table.notes:
            parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in table.notes) + "</ul>")
        body_html = "".join(parts)
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>{style}</head>'
        f"<body><h3>{title}</h3>{body_html}</body></html>\n"
    )


RENDERERS = {"md": render_markdown, "tex": render_latex, "html": render_html}


def write_table(table: Table, out_dir: str | os.PathLike[str], formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``<out_dir>/<name>.<fmt>`` for each format, atomically; returns the paths."""
    written = []
    for fmt in formats:
        path = Path(out_dir) / f"{table.name}.{fmt}"
        with atomic_path(path) as tmp:
            tmp.write_text(RENDERERS[fmt](table), encoding="utf-8")
        written.append(path)
    return written
