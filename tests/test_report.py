"""Aggregation, tables, figures and run comparison, checked on committed fixture metrics.

The fixture numbers are chosen so every expected value can be worked out by hand
(tests/fixtures/metrics): e.g. dense takes 2.0 s/image and SMI 1.0 s/image for seed 0, so
that seed's speed-up is exactly 2.00.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from smi.cli import main
from smi.errors import SMIError
from smi.imageset import ImageSet
from smi.report.aggregate import aggregate, aggregate_files, find_metrics, read_aggregate, write_aggregate
from smi.report.compare import CHANGED, ONLY_B, SAME, Tolerance, compare_runs
from smi.report.grids import choose_classes, image_grid_figure
from smi.report.names import FIGURE_NAMES, SUMMARY_FIGURE_NAMES
from smi.report.render import render_latex, render_markdown
from smi.report.stats import method_sort_key, ratios_to_dense
from smi.report.tables import build_tables, shapes_table

FIXTURES = Path(__file__).parent / "fixtures" / "metrics"
NUM_RECORDS = 31  # JSON records under FIXTURES; config.json is not a record


@pytest.fixture(scope="module")
def agg():
    return aggregate_files(find_metrics(FIXTURES), root=FIXTURES)


@pytest.fixture(scope="module")
def tables(agg):
    return build_tables(agg)


def cell(table, column, **keys):
    """(mean, std, n, note) of one table cell."""
    cells = table.cells[table.cells["column"] == column]
    for key, value in keys.items():
        cells = cells[cells[key] == value]
    assert len(cells) == 1, f"expected one cell for {keys} / {column}, found {len(cells)}"
    row = cells.iloc[0]
    return float(row["mean"]), float(row["std"]), int(row["n"]), row.get("note", "")


# --- aggregation ---------------------------------------------------------------------------


def test_find_metrics_skips_non_records():
    paths = find_metrics(FIXTURES)
    assert len(paths) == NUM_RECORDS
    assert FIXTURES / "config.json" not in paths


def test_summary_is_tidy_scalars_with_flattened_dicts(agg):
    summary = agg.summary
    assert len(summary) == NUM_RECORDS
    assert list(summary.columns[:3]) == ["kind", "dataset", "teacher"]
    for list_key in ("active_tokens", "loss_curve", "curve"):
        assert list_key not in summary
    assert "provenance.config_hash" in summary and "method_params.ratio" in summary
    assert "extra_key_from_a_newer_writer" in summary  # unknown keys are kept
    assert summary["seed"].dtype == "Int64"
    assert summary["kind"].value_counts().to_dict() == {
        "inversion": 9,
        "quantization": 13,
        "distillation": 5,
        "foreground": 3,
        "teacher": 1,
    }


def test_long_tables_hold_the_curves(agg):
    curves = agg.table("curves.csv")
    assert len(curves) == 5 * 4  # five distillation runs of four epochs
    smi0 = curves[(curves["method"] == "smi") & (curves["seed"] == 0)].sort_values("epoch")
    assert smi0["test_top1"].tolist() == [40.0, 57.0, 61.0, 64.0]
    assert smi0["epoch"].tolist() == [1, 2, 3, 4]
    active = agg.table("active_tokens.csv")
    assert len(active) == 6 * 6  # six shapes inversions with six iterations (digits has no list)
    smi_tokens = active[(active["method"] == "smi") & (active["seed"] == 1)].sort_values("iteration")
    assert smi_tokens["active_tokens"].tolist() == [16, 16, 11, 11, 8, 8]


def test_write_and_read_round_trip(agg, tmp_path):
    written = write_aggregate(agg, tmp_path / "summary.csv")
    assert {p.name for p in written} == {
        "summary.csv",
        "curves.csv",
        "active_tokens.csv",
        "loss_curves.csv",
        "activation_ranges.csv",
    }
    back = read_aggregate(tmp_path)
    assert back.summary.shape == agg.summary.shape
    assert back.summary["seed"].dtype == "Int64"
    assert len(back.table("curves.csv")) == 20
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(SMIError, match="does not exist"):
        aggregate_files([tmp_path / "missing.json"])
    (tmp_path / "x.json").write_text(json.dumps({"top1": 3}))
    with pytest.raises(SMIError, match="no 'kind' key"):
        aggregate_files([tmp_path / "x.json"])
    with pytest.raises(SMIError, match="smi aggregate"):
        read_aggregate(tmp_path)


# --- statistics and order ------------------------------------------------------------------


def test_method_order_puts_reference_and_paper_methods_first():
    names = ["pri", "zeta", "smi", "acme", "dense", "real", "noise"]
    assert sorted(names, key=method_sort_key) == ["noise", "real", "dense", "smi", "acme", "pri", "zeta"]


def test_speedup_is_matched_per_seed(agg):
    inv = agg.summary[agg.summary["kind"] == "inversion"]
    ratios = ratios_to_dense(inv).set_index(["dataset", "method", "seed"])
    assert ratios.loc[("shapes", "smi", 0), "speedup"] == pytest.approx(2.0)  # 2.0 s vs 1.0 s
    assert ratios.loc[("shapes", "smi", 1), "speedup"] == pytest.approx(2.5)  # 2.2 s vs 0.88 s
    assert ratios.loc[("shapes", "smi", 0), "flops_reduction_pct"] == pytest.approx(75.0)
    assert ratios.loc[("shapes", "smi", 0), "memory_reduction_pct"] == pytest.approx(60.0)
    assert not ratios.loc[("digits", "smi", 0), "has_dense"]
    assert math.isnan(ratios.loc[("digits", "smi", 0), "speedup"])


# --- tables ---------------------------------------------------------------------------------


def test_efficiency_table_numbers(tables):
    table = tables["efficiency"]
    mean, std, n, _ = cell(table, "Speed-up (×)", dataset="shapes", method="smi")
    assert (mean, n) == (pytest.approx(2.25), 2)
    assert std == pytest.approx(math.sqrt(0.125))  # sample std of 2.0 and 2.5
    assert cell(table, "Speed-up (×)", dataset="shapes", method="dense")[0] == pytest.approx(1.0)
    assert cell(table, "FLOPs reduction (%)", dataset="shapes", method="pri")[0] == pytest.approx(80.0)
    assert cell(table, "Peak memory (MiB)", dataset="shapes", method="smi")[0] == pytest.approx(40.0)
    assert math.isnan(cell(table, "Speed-up (×)", dataset="digits", method="smi")[0])

    text = render_markdown(table)
    rows = {(p[0], p[1]): p for p in md_row_all(text)}
    assert rows[("shapes", "SMI")][2:] == [
        "0.940 ± 0.085",
        "2.25 ± 0.35",
        "2.50 ± 0.00",
        "75.00 ± 0.00",
        "**40.0 ± 0.0**",
        "**60.00 ± 0.00**",
        "**25.0 ± 0.0**",
        "**75.00 ± 0.00**",
    ]
    assert rows[("shapes", "PRI")][-1] == "70.00"  # 30 MiB after the last stop vs dense's 100 MiB
    assert rows[("shapes", "acme")][3] == "**4.00**"  # external method appears and wins speed-up
    assert rows[("digits", "SMI")][3] == ""  # no dense run for digits: left empty ...
    assert "no dense run matches (digits/vit-t seed 0)" in text  # ... with a note
    order = [key[1] for key in rows if key[0] == "shapes"]
    assert order == ["Dense (DMI)", "SMI", "acme", "PRI"]  # noise and real run no inversion: not listed
    assert "Teacher: vit-t" in text  # a constant index column moves to the caption


def md_row_all(text: str) -> list[list[str]]:
    """All body rows of the first Markdown table in ``text``."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[p.strip() for p in line.strip().strip("|").split("|")] for line in lines[2:]]


def test_quantization_table_layout_and_numbers(tables):
    table = tables["quantization"]
    text = render_markdown(table)
    header = [h.strip() for h in text.splitlines()[2].strip("|").split("|")]
    assert header == ["Calibration", "vit-t W8/A8 (%)", "vit-t W4/A8 (%)"]
    rows = md_row_all(text)
    assert [r[0] for r in rows] == ["FP (reference)", "Noise", "Real data", "Dense (DMI)", "SMI", "acme"]
    by_name = {r[0]: r[1:] for r in rows}
    assert by_name["FP (reference)"] == ["80.00", "80.00"]
    assert by_name["SMI"] == ["**78.50 ± 0.00**", "**67.50 ± 0.71**"]  # best data-free source
    assert by_name["Real data"] == ["79.00", "70.00"]  # real data is a reference, never bold
    assert by_name["acme"] == ["", "50.00"]
    assert cell(table, "vit-t W4/A8 (%)", calibration="dense")[:3] == (
        pytest.approx(65.5),
        pytest.approx(math.sqrt(0.5)),
        2,
    )


def test_distillation_table_epochs_to_reach(tables):
    table = tables["distillation"]
    label = "Epochs to 95% of dense"
    # dense final top-1 = mean(62, 58) = 60 -> threshold 57: smi reaches it at epochs 2 and 3.
    assert cell(table, label, method="smi")[:3] == (pytest.approx(2.5), pytest.approx(math.sqrt(0.5)), 2)
    assert cell(table, label, method="dense")[:3] == (pytest.approx(3.0), pytest.approx(0.0), 2)
    assert cell(table, label, method="acme")[3] == "not reached"
    rows = {r[0]: r[1:] for r in md_row_all(render_markdown(table))}
    assert list(rows) == ["Teacher (reference)", "Dense (DMI)", "SMI", "acme"]
    assert rows["SMI"] == ["**63.50 ± 0.71**", "**2.5 ± 0.7**"]
    assert rows["Teacher (reference)"] == ["90.00", ""]
    assert rows["acme"] == ["40.00", "not reached"]


def test_distillation_target_fraction_changes_threshold(agg):
    table = build_tables(agg, target_fraction=0.5)["distillation"]  # threshold 30
    assert cell(table, "Epochs to 50% of dense", method="acme")[0] == pytest.approx(3.0)
    with pytest.raises(SMIError, match="target fraction"):
        build_tables(agg, target_fraction=1.5)


def test_shapes_table(tables, agg):
    table = tables["shapes"]
    assert cell(table, "FG precision (%)", method="smi")[:2] == (pytest.approx(75.0), pytest.approx(math.sqrt(50.0)))
    assert cell(table, "Gap (pp)", method="smi")[0] == pytest.approx(11.0)  # (74-64 + 75-63) / 2
    assert cell(table, "Gap (pp)", method="dense")[0] == pytest.approx(19.0)
    rows = {r[0]: r[1:] for r in md_row_all(render_markdown(table))}
    assert rows["SMI"][0] == "**75.0 ± 7.1**"
    assert rows["Dense (DMI)"][0] == ""  # no foreground record for dense
    bad = agg.summary.copy()
    bad.loc[bad["kind"] == "foreground", "precision"] = 75.0
    with pytest.raises(SMIError, match="fractions"):
        shapes_table(bad)


def test_latex_uses_booktabs_and_escapes(tables):
    tex = render_latex(tables["efficiency"])
    assert tex.count(r"\toprule") == tex.count(r"\midrule") == tex.count(r"\bottomrule") == 1
    assert r"\hline" not in tex
    assert r"FLOPs reduction (\%)" in tex
    assert r"\textbf{4.00}" in tex and r"2.25 $\pm$ 0.35" in tex
    assert r"\label{tab:efficiency}" in tex


def test_empty_tables_get_no_data_files(tmp_path):
    (tmp_path / "run").mkdir()
    shutil.copy(FIXTURES / "teachers" / "shapes" / "vit-t.json", tmp_path / "run" / "teacher.json")
    assert main(["aggregate", "--root", str(tmp_path / "run"), "--out", str(tmp_path / "run" / "summary.csv")]) == 0
    assert main(["tables", "--summary", str(tmp_path / "run" / "summary.csv"), "--out-dir", str(tmp_path / "t")]) == 0
    for name in ("efficiency", "quantization", "distillation", "shapes"):
        assert "No data" in (tmp_path / "t" / f"{name}.md").read_text()
        assert "no data" in (tmp_path / "t" / f"{name}.tex").read_text()
        assert (tmp_path / "t" / f"{name}.html").is_file()


# --- comparison ----------------------------------------------------------------------------


def _run_from(records_dir: Path, out: Path) -> Path:
    assert main(["aggregate", "--root", str(records_dir), "--out", str(out / "summary.csv")]) == 0
    return out


def test_compare_reports_changed_and_new_cells(tmp_path, capsys):
    run_a = _run_from(FIXTURES, tmp_path / "a")
    changed = tmp_path / "records_b"
    shutil.copytree(FIXTURES, changed)
    smi0 = changed / "images" / "shapes" / "vit-t" / "smi" / "seed0.json"
    record = json.loads(smi0.read_text())
    record["time_per_image_s"] = 0.5  # speed-up of seed 0 becomes 4.0
    smi0.write_text(json.dumps(record))
    new = dict(record, method="newbase", time_per_image_s=1.0)
    (changed / "images" / "shapes" / "vit-t" / "newbase.json").write_text(json.dumps(new))
    run_b = _run_from(changed, tmp_path / "b")

    same = compare_runs(run_a, run_a)
    assert (same["status"] == SAME).all()
    diff = compare_runs(run_a, run_b).set_index(["table", "row", "column"])
    speed = diff.loc[("efficiency", "shapes / vit-t / smi", "Speed-up (×)")]
    assert speed["status"] == CHANGED
    assert speed["a"] == pytest.approx(2.25) and speed["b"] == pytest.approx(3.25)
    assert speed["diff"] == pytest.approx(1.0)
    assert diff.loc[("efficiency", "shapes / vit-t / newbase", "Speed-up (×)"), "status"] == ONLY_B
    assert diff.loc[("quantization", "smi", "vit-t W8/A8 (%)"), "status"] == SAME
    loose = compare_runs(run_a, run_b, Tolerance(atol=0.0, rtol=0.5)).set_index(["table", "row", "column"])
    assert loose.loc[("efficiency", "shapes / vit-t / smi", "Speed-up (×)"), "status"] == SAME

    assert main(["compare", str(run_a), str(run_b), "--out", str(tmp_path / "diff.csv")]) == 0
    out = capsys.readouterr().out
    assert "== efficiency ==" in out and "changed" in out and "only in B" in out
    assert len(pd.read_csv(tmp_path / "diff.csv")) == len(diff)


# --- figures -------------------------------------------------------------------------------


def _image_set(method: str, targets: list[int], keep_ratio: float, seed: int = 0) -> ImageSet:
    gen = torch.Generator().manual_seed(seed)
    m = len(targets)
    masks = torch.rand(m, 4, 4, generator=gen) < keep_ratio
    images = torch.rand(m, 3, 16, 16, generator=gen)
    images = images * masks.repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None]
    return ImageSet(images, masks, torch.tensor(targets), {"method": method, "seed": seed})


def test_grid_chooses_shared_classes_and_orders_rows():
    sets = [
        _image_set("smi", [0, 1, 2, 3], 0.3),
        _image_set("real", [1, 2, 3, 4], 1.0),
        _image_set("dense", [2, 3, 5], 1.0),
    ]
    assert choose_classes(sets, 2) == [2, 3]  # in all three sets
    fig = image_grid_figure(sets, num_classes=3)
    labels = [ax.get_ylabel() for ax in fig.axes[::3]]
    assert [label.split("\n")[0] for label in labels] == ["Real data", "Dense (DMI)", "SMI"]
    with pytest.raises(SMIError, match="no image sets"):
        image_grid_figure([])


def test_figures_cli_writes_png_and_svg(tmp_path):
    run = _run_from(FIXTURES, tmp_path / "run")
    paths = []
    for i, (method, ratio) in enumerate((("real", 1.0), ("dense", 1.0), ("smi", 0.3))):
        path = tmp_path / f"{method}.pt"
        _image_set(method, [0, 1, 2, 0], ratio, seed=i).save(path)
        paths.append(str(path))
    out = tmp_path / "figures"
    assert main(["figures", "--summary", str(run / "summary.csv"), "--out-dir", str(out), "--image-sets", *paths]) == 0
    for name in FIGURE_NAMES:
        for ext in ("png", "svg"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000, name
    svg = (out / "speedup.svg").read_text()
    assert "Speed-up over dense" in svg
    again = tmp_path / "again"
    assert main(["figures", "--summary", str(run / "summary.csv"), "--out-dir", str(again)]) == 0
    for name in SUMMARY_FIGURE_NAMES:  # reruns are byte-identical (no jitter, no dates, fixed SVG ids)
        for ext in ("png", "svg"):
            assert (again / f"{name}.{ext}").read_bytes() == (out / f"{name}.{ext}").read_bytes(), name


def test_records_missing_optional_keys_still_render():
    from smi.report.aggregate import aggregate
    from smi.report.figures import build_figures

    records = [
        ("a", {"kind": "inversion", "method": "ext", "time_per_image_s": 1.0}),
        (
            "b",
            {
                "kind": "inversion",
                "dataset": "d",
                "teacher": "t",
                "method": "dense",
                "seed": 0,
                "time_per_image_s": 2.0,
                "active_tokens": [4, 4],
            },
        ),
        (
            "c",
            {
                "kind": "quantization",
                "calibration": "smi",
                "top1": 50,
                "activation_ranges": [{"quantizer": "blocks.0.attn.qkv.act_in", "lo": -1.5, "hi": 2.0}],
            },
        ),
        (
            "d",
            {"kind": "distillation", "method": "smi", "final_top1": 3, "curve": [{"test_top1": 1}, {"test_top1": 3}]},
        ),
        ("e", {"kind": "foreground", "precision": 0.5}),
        ("f", {"kind": "something_new", "x": [1]}),
    ]
    agg = aggregate(records)
    assert agg.table("curves.csv")["epoch"].tolist() == [1, 2]  # epochs counted from 1 when absent
    ranges = agg.table("activation_ranges.csv")
    assert ranges[["source", "calibration", "quantizer", "lo", "hi"]].values.tolist() == [
        ["c", "smi", "blocks.0.attn.qkv.act_in", -1.5, 2.0]
    ]
    assert "activation_ranges" not in " ".join(agg.summary.columns)  # a list: long table only
    tables = build_tables(agg)
    assert cell(tables["efficiency"], "Time / image (s)", method="ext")[0] == pytest.approx(1.0)
    assert cell(tables["quantization"], "n/a W?/A? (%)", calibration="smi")[0] == pytest.approx(50.0)
    assert "no dense-inversion student" in render_markdown(tables["distillation"])
    assert set(build_figures(agg)) == {"speedup", "accuracy_vs_gflops", "distillation_curves", "active_patches"}


def test_budgeted_distillation_and_unnamed_foreground(agg):
    summary = agg.summary.copy()
    is_kd = summary["kind"] == "distillation"
    summary.loc[is_kd, "budget_gflops"] = 20.0
    summary.loc[summary["kind"] == "foreground", "method"] = None
    tables = build_tables(type(agg)(summary, agg.long))
    table = tables["distillation"]
    assert "budget" in table.index
    assert cell(table, "Top-1 (%)", method="smi", budget="20 GFLOPs of inversion")[0] == pytest.approx(63.5)
    assert "Image budget: 20 GFLOPs of inversion" in render_markdown(table)
    # a foreground record without a method scores SMI's attention policy
    assert cell(tables["shapes"], "FG precision (%)", method="smi")[0] == pytest.approx(
        190.0 / 3.0
    )  # (80 + 70 + 40) / 3


# --- isolated timing and teacher seeds ----------------------------------------------------------


def timing_record(dataset: str = "shapes", teacher: str = "vit-t", **per_image_s: list[float]) -> dict:
    """A timing record as `smi time-inversions` writes it (per-image times of each round)."""
    dense = per_image_s.get("dense")
    rows = []
    for method, times in per_image_s.items():
        speedups = [d / t for d, t in zip(dense, times)] if dense else []
        rows.append(
            {
                "method": method,
                "method_name": method,
                "batch_size": 4,
                "images_per_round": 4,
                "time_per_image_s": sorted(times)[len(times) // 2],
                "time_per_round_s": [4 * t for t in times],
                "speedup": sorted(speedups)[len(speedups) // 2] if speedups else None,
                "speedup_per_round": speedups,
            }
        )
    return {
        "kind": "timing",
        "dataset": dataset,
        "teacher": teacher,
        "teacher_seed": 0,
        "model_name": "vit_tiny_patch16_224",
        "seed": 0,
        "time_protocol": "interleaved",
        "rounds": 3,
        "timed_iterations": 3,
        "full_iterations": 6,
        "reference": "dense" if dense else None,
        "timings": rows,
        "not_timed": {},
        "provenance": {"threads": 1, "seed": 0},
    }


def with_records(tmp_path: Path, records: dict[str, dict]) -> Path:
    """A copy of the fixtures with extra records (relative path -> record)."""
    root = tmp_path / "metrics"
    shutil.copytree(FIXTURES, root)
    for rel, record in records.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps(record))
    return root


def test_timing_record_becomes_one_row_per_timed_method():
    record = timing_record(dense=[2.0, 2.2, 2.4], smi=[0.5, 1.1, 0.8])
    summary = aggregate([("timing/shapes/vit-t.json", record)]).summary
    assert summary["kind"].tolist() == ["timing", "timing"]
    assert summary["method"].tolist() == ["dense", "smi"]
    smi = summary[summary["method"] == "smi"].iloc[0]
    assert smi["time_per_image_s"] == pytest.approx(0.8)  # median of the rounds
    assert smi["speedup"] == pytest.approx(3.0)  # median of the per-round ratios 4.0, 2.0, 3.0
    assert json.loads(smi["speedup_per_round"]) == pytest.approx([4.0, 2.0, 3.0])
    assert smi["rounds"] == 3 and smi["teacher_seed"] == 0


def test_efficiency_table_takes_time_and_speedup_from_the_timing_job(tmp_path):
    root = with_records(
        tmp_path,
        {"timing/shapes/vit-t.json": timing_record(dense=[2.0, 2.0, 2.0], smi=[0.5, 0.5, 0.4], pri=[0.25, 0.25, 0.25])},
    )
    table = build_tables(aggregate_files(find_metrics(root), root=root))["efficiency"]
    assert cell(table, "Speed-up (×)", dataset="shapes", method="smi")[:3] == (
        pytest.approx(4.0),
        pytest.approx(math.nan, nan_ok=True),
        1,
    )
    assert cell(table, "Time / image (s)", dataset="shapes", method="smi")[0] == pytest.approx(0.5)
    assert cell(table, "Speed-up (×)", dataset="shapes", method="pri")[0] == pytest.approx(8.0)
    # FLOPs and memory still come from the inversion jobs, per seed.
    assert cell(table, "FLOPs reduction (%)", dataset="shapes", method="smi")[0] == pytest.approx(75.0)
    # Methods of the table without a timing row: no time cells, named in the notes.
    timed = table.cells[table.cells["column"] == "Speed-up (×)"]
    assert set(timed["method"]) == {"dense", "smi", "pri"}
    notes = " ".join(table.notes)
    assert "interleaved rounds" in notes and "3 of the run's 6 iterations" in notes
    assert "shapes/vit-t/acme" in notes and "digits/vit-t/smi" in notes
    assert "not isolated" not in notes


def test_efficiency_table_without_timing_says_times_are_not_isolated(tables):
    assert "not isolated" in " ".join(tables["efficiency"].notes)


def test_ratios_and_cells_are_per_teacher_seed(tmp_path):
    # A second teacher (teacher seed 1) of shapes/vit-t with the same inversion seed 0: its SMI
    # must be paired with its own dense run, and the table's cells pool both teachers.
    def inversion(method: str, gflops: float) -> dict:
        return {
            "kind": "inversion",
            "dataset": "shapes",
            "teacher": "vit-t",
            "teacher_seed": 1,
            "method": method,
            "seed": 0,
            "time_per_image_s": 1.0,
            "gflops_per_image": gflops,
            "peak_memory_bytes": 2**20,
            "peak_memory_after_last_stop_bytes": 2**20,
            "memory_kind": "cpu_saved_activations",
        }

    fg = json.loads((FIXTURES / "foreground/shapes/vit-t/smi/seed0.json").read_text())
    root = with_records(
        tmp_path,
        {
            "images/shapes/vit-t.tseed1/dense/seed0.json": inversion("dense", 8.0),
            "images/shapes/vit-t.tseed1/smi/seed0.json": inversion("smi", 4.0),
            "foreground/shapes/vit-t.tseed1/smi/seed0.json": {**fg, "teacher_seed": 1, "precision": 0.6},
        },
    )
    agg = aggregate_files(find_metrics(root), root=root)
    inv = agg.summary[agg.summary["kind"] == "inversion"]
    ratios = ratios_to_dense(inv)
    second = ratios[(ratios["teacher_seed"] == 1) & (ratios["method"] == "smi")]
    assert second["flops_reduction_pct"].tolist() == [pytest.approx(50.0)]  # 4 vs its own dense's 8, not 10
    tables = build_tables(agg)
    mean, _, n, _ = cell(tables["efficiency"], "FLOPs reduction (%)", dataset="shapes", method="smi")
    assert n == 3 and mean == pytest.approx((75.0 + 75.0 + 50.0) / 3)
    mean, std, n, _ = cell(tables["shapes"], "FG precision (%)", dataset="shapes", method="smi")
    assert n == 3  # two inversion seeds of teacher 0 and one of teacher 1
    assert std > 0  # the second teacher's lower precision is in the spread
    assert "Teacher seeds: 0, 1" in " ".join(tables["efficiency"].notes)
