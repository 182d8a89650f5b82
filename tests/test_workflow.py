"""End to end: the CI config through the whole Snakemake DAG, caching, reruns and the report."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from smi.report.names import FIGURE_NAMES
from smi.report.render import METHOD_LABELS
from tests.workflow_cmd import snakemake_argv

REPO = Path(__file__).resolve().parents[1]
CI_CONFIG = REPO / "config" / "ci.yaml"
METHODS = ["noise", "real", "dense", "smi", "smi-random", "pri", "psaq", "psaq-smi", "toy-external"]

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run Snakemake in ``workdir`` and return the finished process."""
    proc = subprocess.run(snakemake_argv(workdir, *args), capture_output=True, text=True, timeout=1500)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(output: str) -> dict[str, int]:
    """Job counts per rule from a dry run's "Job stats" table."""
    counts: dict[str, int] = {}
    in_stats = False
    for line in output.splitlines():
        if line.startswith("Job stats"):
            in_stats = True
            continue
        if in_stats:
            match = re.match(r"^([A-Za-z_]+)\s+(\d+)$", line.strip())
            if match and match.group(1) != "total":
                counts[match.group(1)] = int(match.group(2))
            elif line.strip().startswith("total"):
                break
    return counts


@pytest.fixture(scope="module")
def ci_run(ci_local_run: Path) -> Path:
    return ci_local_run


def test_every_method_reaches_every_table(ci_run: Path) -> None:
    run = ci_run / "results" / "ci"
    summary = pd.read_csv(run / "summary.csv")
    inversions = summary[summary["kind"] == "inversion"]
    assert set(METHODS) <= set(inversions["method"])
    synthesizing = [m for m in METHODS if m not in ("noise", "real")]
    for table, expected in (("efficiency", synthesizing), ("quantization", METHODS), ("distillation", METHODS)):
        text = (run / "tables" / f"{table}.md").read_text()
        for method in expected:
            label = METHOD_LABELS.get(method, method)  # the tables print the paper's names
            assert label in text, f"{method} ({label}) missing from the {table} table"
    shapes = (run / "tables" / "shapes.md").read_text()
    assert "precision" in shapes.lower() and "Inverted: FG precision" in shapes
    testbed = (run / "tables" / "testbed.md").read_text()
    assert "Outlier ratio real" in testbed and "pretraining top-1" in testbed
    for figure in FIGURE_NAMES:
        assert (run / "figures" / f"{figure}.png").stat().st_size > 1000
        assert (run / "figures" / f"{figure}.svg").stat().st_size > 1000


def test_inversion_records_have_costs_and_provenance(ci_run: Path) -> None:
    import json

    record = json.loads((ci_run / "results/ci/images/digits/vit-xs/smi/seed0.json").read_text())
    assert record["kind"] == "inversion" and record["method"] == "smi"
    assert record["flops_total"] > 0 and record["wall_time_s"] > 0
    assert record["active_tokens"][0] == 16 and record["active_tokens"][-1] < 16
    assert {"git_commit", "torch", "timm", "device", "threads", "config_hash", "seed"} <= set(record["provenance"])
    dense = json.loads((ci_run / "results/ci/images/digits/vit-xs/dense/seed0.json").read_text())
    assert record["gflops_per_image"] < dense["gflops_per_image"]
    assert record["time_protocol"] == "job" and record["teacher_seed"] == 0


def test_isolated_timing_feeds_the_efficiency_table(ci_run: Path) -> None:
    import json

    run = ci_run / "results" / "ci"
    record = json.loads((run / "timing/digits/vit-xs.json").read_text())
    assert record["kind"] == "timing" and record["rounds"] == 3
    assert (record["timed_iterations"], record["full_iterations"]) == (10, 20)
    timed = {row["method"]: row for row in record["timings"]}
    assert set(timed) == {"dense", "smi", "smi-random", "pri", "psaq", "psaq-smi"}  # not noise, real, the external
    assert all(len(row["time_per_round_s"]) == 3 for row in timed.values())
    assert timed["dense"]["speedup"] == 1.0
    text = (run / "tables" / "efficiency.md").read_text()
    assert "interleaved rounds" in text and "digits/vit-xs/toy-external" in text


def test_teacher_seeds_train_their_own_teachers(ci_run: Path) -> None:
    import json

    run = ci_run / "results" / "ci"
    first = json.loads((run / "teachers/shapes/vit-xs.json").read_text())
    second = json.loads((run / "teachers/shapes/vit-xs.tseed1.json").read_text())
    assert (first["teacher"], first["teacher_seed"]) == ("vit-xs", 0)
    assert (second["teacher"], second["teacher_seed"]) == ("vit-xs", 1)
    assert (run / "teachers/shapes/vit-xs.pt").read_bytes() != (run / "teachers/shapes/vit-xs.tseed1.pt").read_bytes()
    smi = json.loads((run / "images/shapes/vit-xs.tseed1/smi/seed0.json").read_text())
    assert (smi["teacher"], smi["teacher_seed"]) == ("vit-xs", 1)
    foreground = json.loads((run / "foreground/shapes/vit-xs.tseed1.json").read_text())
    assert foreground["teacher_seed"] == 1
    assert "Teacher seeds: 0, 1" in (run / "tables" / "shapes.md").read_text()


def test_rerun_after_finish_does_nothing(ci_run: Path) -> None:
    proc = snakemake(ci_run, "-n", "--cores", "2", "--configfile", str(CI_CONFIG), "--config", "run=ci")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changing_one_method_reruns_only_its_dependents(ci_run: Path, tmp_path: Path) -> None:
    config = yaml.safe_load(CI_CONFIG.read_text())
    config["methods"]["smi"]["params"]["ratio"] = 0.5
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    proc = snakemake(ci_run, "-n", "--cores", "2", "--configfile", str(changed), "--config", "run=ci")
    jobs = planned_jobs(proc.stdout + proc.stderr)
    # smi runs on digits and on two shapes teachers (teacher seeds 0 and 1): three inversions,
    # quantizations and distillations, the timing job of each experiment, and the foreground job of
    # each shapes teacher, which scores the kept patches of every inverted set.
    assert jobs.get("invert") == 3, jobs
    assert jobs.get("quantize") == 3, jobs
    assert jobs.get("distill") == 3, jobs
    assert jobs.get("time_inversion") == 2, jobs
    assert jobs.get("foreground") == 2, jobs
    assert not {"train_teacher", "invert_external", "pretrain_student", "testbed"} & set(jobs), jobs


def test_interrupted_run_resumes_only_what_is_missing(ci_run: Path) -> None:
    # As after an interruption between a quantization job and the aggregation: one quantization
    # result and everything after it are missing. (A missing intermediate alone is not rebuilt
    # while everything downstream of it is up to date.)
    run = ci_run / "results/ci"
    targets = [run / "quant/digits/vit-xs/pri/w8a8/seed0.json", run / "summary.csv"]
    saved = [(t, t.read_bytes(), t.stat()) for t in targets]
    for target in targets:
        target.unlink()
    try:
        proc = snakemake(ci_run, "-n", "--cores", "2", "--configfile", str(CI_CONFIG), "--config", "run=ci")
        jobs = planned_jobs(proc.stdout + proc.stderr)
        assert jobs.get("quantize") == 1 and jobs.get("aggregate") == 1, jobs
        assert not {"invert", "invert_external", "train_teacher", "distill"} & set(jobs), jobs
    finally:
        for target, data, stat in saved:  # leave the shared run as it was
            target.write_bytes(data)
            os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_html_report_is_built(ci_run: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"  # outside results/: the SLURM test compares that tree
    snakemake(ci_run, "--configfile", str(CI_CONFIG), "--config", "run=ci", "--report", str(report))
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 10_000
    assert "efficiency" in html.lower() and "speed" in html.lower()
    # Every image grid is in the report, whichever rule wrote it (suite methods and external ones).
    grids = sorted(p.relative_to(ci_run).as_posix() for p in (ci_run / "results" / "ci" / "images").glob("*/*/*/*.png"))
    assert any("/toy-external/" in g for g in grids), grids
    missing = [g for g in grids if f'"{g}"' not in html]
    assert not missing, f"image grids missing from the report: {missing}"


def test_unknown_config_key_is_named(tmp_path: Path) -> None:
    config = yaml.safe_load(CI_CONFIG.read_text())
    config["inversion"]["iteratons"] = 5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "-n", "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    assert "iteratons" in proc.stdout + proc.stderr


def test_unknown_method_label_is_named(tmp_path: Path) -> None:
    config = yaml.safe_load(CI_CONFIG.read_text())
    config["experiments"][0]["methods"].append("smi-typo")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "-n", "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    assert "smi-typo" in proc.stdout + proc.stderr


def test_teacher_id_that_looks_like_a_teacher_seed_is_named(tmp_path: Path) -> None:
    config = yaml.safe_load(CI_CONFIG.read_text())
    config["teachers"]["vit-xs.tseed2"] = config["teachers"].pop("vit-xs")
    for exp in config["experiments"]:
        exp["teacher"] = "vit-xs.tseed2"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "-n", "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    assert "'vit-xs.tseed2'" in proc.stdout + proc.stderr and "rename it" in proc.stdout + proc.stderr


def test_timing_jobs_claim_every_core(tmp_path: Path) -> None:
    proc = snakemake(tmp_path, "-n", "--cores", "2", "--configfile", str(CI_CONFIG))
    jobs = planned_jobs(proc.stdout + proc.stderr)
    assert jobs["time_inversion"] == 2 and jobs["train_teacher"] == 3  # shapes has two teacher seeds
    blocks = (proc.stdout + proc.stderr).split("rule time_inversion:")[1:]
    assert len(blocks) == 2 and all("threads: 2" in block.split("\n\n")[0] for block in blocks)


def test_paper_config_dry_run_lists_the_full_dag(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SMI_SKIP_MACHINE_CHECKS", "1")  # planned here, run on GPU machines with the datasets
    proc = snakemake(tmp_path, "-n", "-p", "--configfile", str(REPO / "config" / "paper.yaml"))
    jobs = planned_jobs(proc.stdout + proc.stderr)
    assert jobs["invert"] == 2 * 4 * 3 + 4 * 2  # ImageNet: DeiT-T/B x 4 methods x 3 seeds; CIFAR KD: 4 teachers x 2
    assert jobs["quantize"] == 2 * 4 * 3  # one job per calibration set runs both bit-widths
    assert jobs["train_teacher"] == 6 and jobs["distill"] == 4 * 2  # one same-architecture student per KD teacher
    assert (proc.stdout + proc.stderr).count("distill --protocol official") == 8


def test_paper_extension_config_dry_run_lists_the_full_dag(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SMI_SKIP_MACHINE_CHECKS", "1")  # planned here, run on GPU machines with the datasets
    proc = snakemake(tmp_path, "-n", "-p", "--configfile", str(REPO / "config" / "paper_extension.yaml"))
    jobs = planned_jobs(proc.stdout + proc.stderr)
    assert jobs["invert"] == 4 * 8 * 3 + 4 * 4  # ImageNet: 4 teachers x 8 methods x 3 seeds; KD: 4 x 4
    assert jobs["quantize"] == 4 * 8 * 3  # one job per calibration set runs all 3 bit-widths
    assert jobs["train_teacher"] == 8 and jobs["distill"] == 16
    assert (proc.stdout + proc.stderr).count("distill --protocol suite") == 16
