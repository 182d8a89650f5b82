"""The paper's configuration, executed end to end at smoke scale on a CPU.

``config/paper.yaml`` is loaded as it is and only its scale is turned down: iterations (the
stopping schedules shrink with them), images, epochs, seeds, calibration size, batch sizes,
device and threads, and the input side of the larger ViTs (timm resamples their position
embedding; depth, width and heads stay real, DeiT-T stays at 224 px). Every dataset, teacher,
method, bit-width and student of the paper config runs, so renaming or adding one there can
never go untested. Inputs are fixture datasets in the real layouts (tests/layouts.py) and
random-weight timm checkpoints; the student's pretrained weights come through the
``fetch_weights`` rule from a stand-in hub cache, with the network blocked.

The numbers are meaningless (random teachers, 8 iterations, shared cores); only that every
rule runs and every table gets its rows is checked.
"""

from __future__ import annotations

import copy
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import timm
import torch
import yaml

from smi.methods.synthesize import balanced_targets
from smi.report.names import FIGURE_NAMES
from smi.report.render import METHOD_LABELS
from tests.layouts import BUILDERS, CLASS_COUNTS
from tests.standin_hub import add_to_cache, offline_env, random_state_dict
from tests.workflow_cmd import snakemake_argv

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config" / "paper.yaml"
RUN = "paper-smoke"

# ---------------------------------------------------------------- the smoke scale
ITERATIONS = 10  # room for four stops two iterations apart (the official loop's minimum gap)
NUM_IMAGES = 2
EPOCHS = 1
BATCH_SIZE = 2
EVAL_BATCH_SIZE = 16
THREADS = 1
CORES = 2
MEM_MB = 2000
# Models that keep their real input side; every other teacher ViT runs at SMALL_IMG_SIZE.
FULL_SIZE_MODELS = ("deit_tiny_patch16_224",)
SMALL_IMG_SIZE = 64
# Teacher sources that start from pretrained weights (given here as random local files).
PRETRAINED_SOURCES = ("pretrained", "finetune")
# Smallest gap between two stopping iterations of a rescaled schedule.
MIN_STOP_GAP = 2
TIMEOUT_S = 3600  # a hang guard: about 10 min on 2 idle cores, far longer on shared ones


def rescale_schedule(stops: list[int], old_total: int, new_total: int) -> list[int]:
    """Stopping iterations moved proportionally from ``old_total`` to ``new_total`` iterations.

    They stay strictly increasing, at least 1 and below ``new_total``.
    """
    out: list[int] = []
    for t in stops:
        scaled = max(MIN_STOP_GAP, round(t * new_total / old_total))
        out.append(max(scaled, out[-1] + MIN_STOP_GAP) if out else scaled)
    if out and out[-1] >= new_total:
        raise ValueError(f"{len(stops)} stops do not fit in {new_total} iterations; raise ITERATIONS.")
    return out


def _rescale_iterations(node: Any, old_total: int) -> None:
    """Rescale every ``iterations: [t1, ...]`` schedule found anywhere under ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "iterations" and isinstance(value, list) and all(isinstance(v, int) for v in value):
                node[key] = rescale_schedule(value, old_total, ITERATIONS)
            else:
                _rescale_iterations(value, old_total)
    elif isinstance(node, list):
        for item in node:
            _rescale_iterations(item, old_total)


def smoke_config(
    paper: dict[str, Any], roots: dict[str, str], weights: dict[str, str], checkpoints: dict[str, str] | None = None
) -> dict[str, Any]:
    """The paper config with only its scale changed (see the module docstring).

    Args:
        paper: The loaded paper config.
        roots: Fixture root per dataset id.
        weights: Random-weight checkpoint per timm model name (the teachers' pretrained files).
        checkpoints: Random-weight file per ``source: checkpoint`` teacher id (written by the caller
            with :func:`checkpoint_teachers`' shapes).
    """
    cfg = copy.deepcopy(paper)
    cfg.update(run=RUN, device="cpu", threads=THREADS, mem_mb=MEM_MB, progress=False)
    inversion = cfg.setdefault("inversion", {})
    old_total = inversion.get("iterations", ITERATIONS)
    inversion.update(num_images=NUM_IMAGES, batch_size=BATCH_SIZE, iterations=ITERATIONS)
    inversion.setdefault("options", {})["warmup_iterations"] = 1
    _rescale_iterations(cfg.get("methods", {}), old_total)
    _rescale_iterations(cfg.get("foreground", {}), old_total)
    for label, entry in cfg.get("methods", {}).items():
        params = entry.get("params") or {}
        if (entry.get("method") or label) == "psaq" and params.get("protocol") == "official":
            # PSAQ-ViT's own two-stage schedule (2 x 500 iterations) shrinks with the run.
            params.update(stages=[ITERATIONS // 2] * 2, warmup=1)
    cfg["timing"] = {**cfg.get("timing", {}), "rounds": 1, "iterations": ITERATIONS}
    if "foreground" in cfg:
        cfg["foreground"]["num_images"] = NUM_IMAGES
    for dataset_id, dataset in cfg["datasets"].items():
        dataset["root"] = roots[dataset_id]
    for teacher in cfg["teachers"].values():
        if teacher["model"] not in FULL_SIZE_MODELS:
            teacher["model_kwargs"] = {**(teacher.get("model_kwargs") or {}), "img_size": SMALL_IMG_SIZE}
        if teacher["source"] in PRETRAINED_SOURCES and not teacher.get("checkpoint"):
            teacher["pretrained_file"] = weights[teacher["model"]]
    for teacher_id, path in (checkpoints or {}).items():
        cfg["teachers"][teacher_id]["checkpoint"] = path
    for teacher in cfg["teachers"].values():
        if teacher.get("recipe"):
            teacher["recipe"].update(
                epochs=EPOCHS, batch_size=BATCH_SIZE, eval_batch_size=EVAL_BATCH_SIZE, num_workers=0
            )
    for exp in cfg["experiments"]:
        exp["seeds"] = exp["seeds"][:1]
        if exp.get("num_images"):
            exp["num_images"] = NUM_IMAGES
        if "epochs" in (exp.get("teacher_recipe") or {}):
            exp["teacher_recipe"]["epochs"] = EPOCHS
    quantization = cfg.setdefault("quantization", {})
    quantization["calib_size"] = min(quantization.get("calib_size", NUM_IMAGES), NUM_IMAGES)
    distillation = cfg.setdefault("distillation", {})
    recipe = distillation.setdefault("recipe", {})
    recipe.update(epochs=EPOCHS, batch_size=BATCH_SIZE, eval_batch_size=EVAL_BATCH_SIZE)
    if "images_per_epoch" in recipe:  # the official protocol synthesises into its pool every epoch
        recipe["images_per_epoch"] = NUM_IMAGES
    for student in distillation.get("students", {}).values():
        if student.get("init") == "checkpoint":
            student["checkpoint"] = weights[student["model"]]
    return cfg


def checkpoint_teachers(cfg: dict[str, Any]) -> dict[str, tuple[str, int, dict[str, Any]]]:
    """``source: checkpoint`` teachers: id -> (timm model, class count of its dataset, model kwargs)."""
    classes = {e["teacher"]: CLASS_COUNTS[cfg["datasets"][e["dataset"]]["name"]] for e in cfg["experiments"]}
    return {
        t: (spec["model"], classes[t], dict(spec.get("model_kwargs") or {}))
        for t, spec in cfg["teachers"].items()
        if spec["source"] == "checkpoint" and t in classes
    }


def needed_classes(cfg: dict[str, Any], dataset_id: str) -> list[int]:
    """Classes whose training images the ``real`` source draws for this dataset's experiments."""
    count = CLASS_COUNTS[cfg["datasets"][dataset_id]["name"]]
    classes: set[int] = set()
    for exp in cfg["experiments"]:
        if exp["dataset"] == dataset_id:
            n = exp.get("num_images") or cfg["inversion"]["num_images"]
            for seed in exp["seeds"]:
                classes |= set(balanced_targets(n, count, seed).tolist())
    return sorted(classes)


def teacher_models(cfg: dict[str, Any]) -> set[str]:
    """timm models that need a pretrained file (teachers) or a checkpoint (students)."""
    models = {t["model"] for t in cfg["teachers"].values() if t["source"] in PRETRAINED_SOURCES}
    students = cfg.get("distillation", {}).get("students", {}).values()
    return models | {s["model"] for s in students if s.get("init") == "checkpoint"}


@pytest.fixture(scope="module")
def paper_smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], float]:
    """The paper DAG run once at smoke scale; returns the run folder, the config and the wall time."""
    work = tmp_path_factory.mktemp("paper-smoke")
    paper = yaml.safe_load(PAPER.read_text())
    weights = {}
    for model in sorted(teacher_models(paper)):
        path = work / "pretrained" / f"{model}.pth"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(random_state_dict(model), path)
        weights[model] = str(path)
    roots = {d: str(work / "data" / d) for d in paper["datasets"]}
    files = {t: str(work / "checkpoints" / f"{t}.pth") for t in checkpoint_teachers(paper)}
    cfg = smoke_config(paper, roots, weights, files)
    for teacher_id, (model, num_classes, kwargs) in checkpoint_teachers(cfg).items():
        # A fine-tuned teacher's file as the official code loads it: a plain state dict, its own head.
        Path(files[teacher_id]).parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(
            timm.create_model(model, pretrained=False, num_classes=num_classes, **kwargs).state_dict(),
            files[teacher_id],
        )
    for dataset_id, dataset in cfg["datasets"].items():
        name = dataset["name"]
        if name not in BUILDERS:
            pytest.fail(f"no fixture layout for dataset '{name}' of the paper config; add one to tests/layouts.py")
        classes = needed_classes(cfg, dataset_id)
        BUILDERS[name](Path(roots[dataset_id]), train_classes=classes, test_classes=classes)
    # Students with init 'pretrained' get their weights through the fetch_weights rule, from a
    # stand-in hub cache, with the network blocked.
    cache = work / "hub-cache"
    for student in cfg["distillation"].get("students", {}).values():
        if student.get("init") == "pretrained" and not student.get("checkpoint"):
            add_to_cache(cache, student["model"])
    config_file = work / "paper-smoke.yaml"
    config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    start, cpu_start = time.perf_counter(), _children_cpu_s()
    proc = subprocess.run(
        snakemake_argv(work, "--cores", str(CORES), "--configfile", str(config_file)),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=offline_env(cache),
    )
    wall, cpu = time.perf_counter() - start, _children_cpu_s() - cpu_start
    if proc.returncode != 0:
        raise AssertionError(f"paper smoke run failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    # CPU seconds are what the run costs whatever else shares the cores; wall time is not.
    print(f"paper smoke DAG: {wall:.0f} s wall with {CORES} cores, {cpu:.0f} CPU seconds in its processes")
    return work / "results" / RUN, cfg, wall


def _children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished child processes (and theirs)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _rows(path: Path) -> list[list[str]]:
    """Body rows of a Markdown table file (cells stripped)."""
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([c.strip().strip("*") for c in line.strip("|").split("|")])  # bold marks the best cell
    return rows[1:]  # the first row is the header


def test_every_rule_of_the_paper_dag_ran(paper_smoke) -> None:
    run, cfg, _ = paper_smoke
    summary = pd.read_csv(run / "summary.csv")
    pairs = {(e["dataset"], e["teacher"]) for e in cfg["experiments"]}
    teachers = summary[summary["kind"] == "teacher"]
    assert set(zip(teachers["dataset"], teachers["teacher"])) == pairs
    for exp in cfg["experiments"]:
        inv = summary[
            (summary["kind"] == "inversion")
            & (summary["dataset"] == exp["dataset"])
            & (summary["teacher"] == exp["teacher"])
        ]
        assert set(inv["method"]) == set(exp["methods"]), exp
    quant = summary[summary["kind"] == "quantization"]
    expected_quant = {
        (e["teacher"], m, w, a)
        for e in cfg["experiments"]
        if e.get("quantize", True)
        for m in e["methods"]
        for w, a in cfg["quantization"]["bits"]
    }
    assert set(zip(quant["teacher"], quant["calibration"], quant["w_bits"], quant["a_bits"])) == expected_quant
    kd = summary[summary["kind"] == "distillation"]
    expected_kd = {
        (e["dataset"], e["teacher"], m, s)
        for e in cfg["experiments"]
        for m in e.get("distill", e["methods"])
        for s in e.get("students", cfg["distillation"]["students"])
    }
    assert set(zip(kd["dataset"], kd["teacher"], kd["method"], kd["student"])) == expected_kd
    # DeiT-T ran at its real 224 px: 196 patches.
    tiny = [t for t, spec in cfg["teachers"].items() if spec["model"] in FULL_SIZE_MODELS]
    tiny_inv = summary[(summary["kind"] == "inversion") & summary["teacher"].isin(tiny)]
    assert not tiny_inv.empty and set(tiny_inv["num_patches"]) == {196}
    # The student's pretrained weights were fetched once into the run's weights folder.
    for student in cfg["distillation"]["students"].values():
        if student.get("init") == "pretrained":
            assert (run / "weights" / f"{student['model']}.pth").stat().st_size > 1_000_000


def test_every_table_has_a_row_per_method_and_teacher(paper_smoke) -> None:
    run, cfg, _ = paper_smoke
    synthesizing = {"noise", "real"}  # no inversion cost: not in the efficiency table
    efficiency = _rows(run / "tables" / "efficiency.md")
    for exp in cfg["experiments"]:
        for method in exp["methods"]:
            if method in synthesizing:
                continue
            hits = [r for r in efficiency if exp["teacher"] in r and _label(method) in r]
            assert hits, f"efficiency table lacks {exp['teacher']} / {method}"
    quant_text = (run / "tables" / "quantization.md").read_text()
    quant_rows = {r[0] for r in _rows(run / "tables" / "quantization.md")}
    for exp in cfg["experiments"]:
        if exp.get("quantize", True):
            assert exp["teacher"] in quant_text, f"quantization table lacks the column of {exp['teacher']}"
            for method in exp["methods"]:
                assert _label(method) in quant_rows, f"quantization table lacks a row for {method}"
    distillation = _rows(run / "tables" / "distillation.md")
    for exp in cfg["experiments"]:
        for method in exp.get("distill", exp["methods"]):
            hits = [r for r in distillation if exp["teacher"] in r and _label(method) in r]
            assert hits, f"distillation table lacks {exp['teacher']} / {method}"
    counts = {
        name: len(_rows(run / "tables" / f"{name}.md")) for name in ("efficiency", "quantization", "distillation")
    }
    print(f"table rows: {counts}")
    for figure in FIGURE_NAMES:
        assert (run / "figures" / f"{figure}.png").stat().st_size > 1000


def test_stopping_schedules_fit_the_smoke_iterations() -> None:
    assert rescale_schedule([50, 100, 200, 300], 4000, 10) == [2, 4, 6, 8]
    assert rescale_schedule([1000, 2000, 3000], 4000, 10) == [2, 5, 8]
    with pytest.raises(ValueError):
        rescale_schedule(list(range(1, 10)), 10, 10)
    paper = yaml.safe_load(PAPER.read_text())
    cfg = smoke_config(paper, {d: "x" for d in paper["datasets"]}, {m: "w" for m in teacher_models(paper)})
    assert cfg["inversion"]["iterations"] == ITERATIONS and all(len(e["seeds"]) == 1 for e in cfg["experiments"])
    assert set(cfg["methods"]) == set(paper["methods"]) and set(cfg["teachers"]) == set(paper["teachers"])
    assert [e["teacher"] for e in cfg["experiments"]] == [e["teacher"] for e in paper["experiments"]]
    assert cfg["quantization"]["bits"] == paper["quantization"]["bits"]
