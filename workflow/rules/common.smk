# Shared helpers: config lookups, cross-reference checks, JSON arguments and target lists.

import json
import os
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError

from smi.errors import SMIError
from smi.validate import check_workflow_config, exit_config_error, jobs_run_here, machine_checks_enabled

RUN = config["run"]
R = f"results/{RUN}"
# The same interpreter that runs Snakemake runs the jobs, on a laptop and on a cluster node.
# Jobs that run on this machine start warm (smi.warm: forked from a server that imported torch
# and timm once, ~5 s saved per job); jobs sent to a cluster start plainly.
_WARM = config["warm_start"] and jobs_run_here(sys.argv, os.environ)
SMI = f"{shlex.quote(sys.executable)} -m {'smi.warm' if _WARM else 'smi'}"
DEVICE = config["device"]
THREADS = config["threads"]
MEM_MB = config["mem_mb"]
GPU = 1 if DEVICE.startswith("cuda") else 0
PROGRESS = "" if config["progress"] else "--no-progress"
EXTERNAL = config.get("external_methods", {})
BITS = [tuple(b) for b in config["quantization"]["bits"]]
# One range estimator or a list; each gets its own records, min/max in the historical w<W>a<A> folders.
_ESTIMATORS = config["quantization"]["range_estimator"]
ESTIMATORS = [_ESTIMATORS] if isinstance(_ESTIMATORS, str) else list(_ESTIMATORS)
STUDENTS = config["distillation"]["students"]
TIMING = config.get("timing", {})
# A teacher instance is one trained teacher: the teacher id for teacher seed 0 (so that runs
# with one teacher seed keep their paths), "<id>.tseed<k>" for teacher seed k.
TEACHER_SEED_SUFFIX = ".tseed"
_INSTANCE = re.compile(rf"^(?P<id>.+){re.escape(TEACHER_SEED_SUFFIX)}(?P<seed>[0-9]+)$")

# Every result path, said once. A pattern names its rule's wildcards; a rule writes it (multiext
# adds the extensions of a group of files), a later rule reads it as rules.<name>.output, and the
# target lists fill it in with fill().
TEACHER = f"{R}/teachers/{{dataset}}/{{teacher}}"  # .pt weights, .json record
IMAGE_SET = f"{R}/images/{{dataset}}/{{teacher}}/{{method}}/seed{{seed}}"  # .pt images, .json record, .png grid
QUANT_RECORD = f"{R}/quant/{{dataset}}/{{teacher}}/{{method}}/{{quant}}/seed{{seed}}.json"  # {quant}: quant_dir()
KD_RECORD = f"{R}/kd/{{dataset}}/{{teacher}}/{{student}}/{{method}}/seed{{seed}}.json"
FOREGROUND_RECORD = f"{R}/foreground/{{dataset}}/{{teacher}}.json"
TESTBED_RECORD = f"{R}/testbed/{{dataset}}/{{teacher}}.json"
TIMING_RECORD = f"{R}/timing/{{dataset}}/{{teacher}}.json"
STUDENT = f"{R}/students/{{student}}/{{dataset}}"  # .pt pretrained checkpoint, .json record
WEIGHTS = f"{R}/weights"  # timm's pretrained weights, fetched once
WEIGHTS_FILE = f"{WEIGHTS}/{{model}}.pth"


def fill(pattern, **wildcards):
    """One file of a path pattern: every wildcard given a value."""
    return pattern.format(**wildcards)


def quant_dir(w, a, estimator):
    """The folder of one bits x estimator pair (min/max keeps the historical w<W>a<A>)."""
    return f"w{w}a{a}" if estimator == "minmax" else f"w{w}a{a}-{estimator}"


def _check_config():
    """Cross-references the JSON schema cannot express, each with a fix in the message."""
    for exp in config["experiments"]:
        where = f"experiment (dataset={exp['dataset']!r}, teacher={exp['teacher']!r})"
        if exp["dataset"] not in config["datasets"]:
            raise WorkflowError(f"{where}: unknown dataset id; define it under 'datasets' ({sorted(config['datasets'])}).")
        if exp["teacher"] not in config["teachers"]:
            raise WorkflowError(f"{where}: unknown teacher id; define it under 'teachers' ({sorted(config['teachers'])}).")
        known = set(config["methods"]) | set(EXTERNAL)
        for label in exp["methods"] + exp.get("distill", []):
            if label not in known:
                raise WorkflowError(f"{where}: unknown method label {label!r}; define it under 'methods' or 'external_methods' ({sorted(known)}).")
        if distill_methods(exp) and not STUDENTS:
            raise WorkflowError(f"{where}: distillation is requested but 'distillation: students:' is empty; add a student or set 'distill: []'.")
        unknown = sorted(set(exp.get("students", [])) - set(STUDENTS))
        if unknown:
            raise WorkflowError(f"{where}: unknown student id(s) {unknown}; define them under 'distillation: students:' ({sorted(STUDENTS)}).")
    overlap = set(config["methods"]) & set(EXTERNAL)
    if overlap:
        raise WorkflowError(f"method labels {sorted(overlap)} are both in 'methods' and 'external_methods'; rename one.")


def _check_teacher_ids():
    """Teacher ids must not look like teacher instances (paths would collide)."""
    for teacher_id in config["teachers"]:
        if _INSTANCE.match(teacher_id):
            raise WorkflowError(f"teacher id {teacher_id!r} ends like a teacher-seed suffix ({TEACHER_SEED_SUFFIX}<k>); rename it.")


def distill_methods(exp):
    """Labels distilled for an experiment (default: all of its methods)."""
    return exp["distill"] if "distill" in exp else exp["methods"]


def experiment_students(exp):
    """Student ids distilled for an experiment (default: all students)."""
    return exp.get("students") or list(STUDENTS)


def inversion_config(iterations=False):
    """The `--inversion-config` JSON of every job that inverts: the optimiser options and the protocol."""
    inv = config["inversion"]
    cfg = {**inv["options"], "protocol": inv["protocol"]}
    if iterations:
        cfg["iterations"] = inv["iterations"]
    return cfg


def as_json(value):
    """A shell-quoted JSON argument."""
    return shlex.quote(json.dumps(value, sort_keys=True))


def dataset_spec(dataset_id):
    spec = dict(config["datasets"][dataset_id])
    return {"name": spec["name"], "root": spec.get("root"), "options": spec.get("options", {})}


def teacher_spec(teacher_id, dataset_id):
    """The teacher's spec, with the experiment's recipe overrides for this dataset."""
    spec = {k: v for k, v in config["teachers"][teacher_id].items() if v is not None and v != {}}
    override = experiment(dataset_id, teacher_id).get("teacher_recipe")
    if override:
        spec["recipe"] = {**(spec.get("recipe") or {}), **override}
    return spec


def method_entry(label):
    entry = config["methods"][label]
    return entry.get("method") or label, entry.get("params", {})


def experiment(dataset_id, teacher_id):
    for exp in config["experiments"]:
        if exp["dataset"] == dataset_id and exp["teacher"] == teacher_id:
            return exp
    raise WorkflowError(f"no experiment for dataset {dataset_id!r} and teacher {teacher_id!r}")


def teacher_seeds(exp):
    """The experiment's teacher seeds: each trains its own teacher (default: one, seed 0)."""
    return exp.get("teacher_seeds") or [0]


def teacher_instance(teacher_id, teacher_seed):
    """The path name of the teacher trained with ``teacher_seed`` (see TEACHER_SEED_SUFFIX)."""
    return teacher_id if int(teacher_seed) == 0 else f"{teacher_id}{TEACHER_SEED_SUFFIX}{teacher_seed}"


def teacher_instances(exp):
    return [teacher_instance(exp["teacher"], s) for s in teacher_seeds(exp)]


def teacher_id(wildcards):
    """The config's teacher id of the ``{teacher}`` wildcard (a teacher instance)."""
    match = _INSTANCE.match(wildcards.teacher)
    return match["id"] if match else wildcards.teacher


def teacher_seed(wildcards):
    """The teacher seed of the ``{teacher}`` wildcard (0 without a suffix)."""
    match = _INSTANCE.match(wildcards.teacher)
    return int(match["seed"]) if match else 0


def num_images(wildcards):
    """Images per method and seed: the experiment's own count or the global one."""
    return experiment(wildcards.dataset, teacher_id(wildcards)).get("num_images") or config["inversion"]["num_images"]


def teacher_file(wildcards):
    """The teacher's weights file of a job's ``{dataset}`` and ``{teacher}`` wildcards."""
    return fill(TEACHER, dataset=wildcards.dataset, teacher=wildcards.teacher) + ".pt"


def label_pattern(labels):
    """A wildcard constraint matching exactly these method labels (none: matches nothing)."""
    return "|".join(re.escape(l) for l in sorted(labels)) or "(?!x)x"


def image_set_outputs():
    """The outputs of every rule that writes an image set (suite and external methods alike).

    The grid goes into the report under "Inverted images", whichever rule wrote it.
    """
    images, metrics, grid = multiext(IMAGE_SET, images=".pt", metrics=".json", grid=".png")
    # report() marks the grid in place (a bare report(...) line would read as the report: keyword)
    grid = report(
        grid,
        caption="../report/inversion_grid.rst",
        category="Inverted images",
        subcategory="{dataset} / {teacher}",
        labels={"method": "{method}", "seed": "{seed}"},
    )
    return [images, metrics, grid]


def image_set(wildcards, ext=".pt"):
    """The image set of a job's wildcards (``.pt`` images; ``.json`` its inversion record)."""
    return image_set_file(wildcards.dataset, wildcards.teacher, wildcards.method, wildcards.seed, ext)


def image_set_file(dataset, teacher, method, seed, ext=".pt"):
    """One image set's file (``.pt`` images, ``.json`` record, ``.png`` grid): IMAGE_SET filled in."""
    return fill(IMAGE_SET, dataset=dataset, teacher=teacher, method=method, seed=seed) + ext


def image_sets(ext=".pt"):
    """Every image set of the run (``.pt`` images; ``.json`` their inversion records)."""
    return [
        image_set_file(e["dataset"], t, m, s, ext)
        for e in config["experiments"] for t in teacher_instances(e) for m in e["methods"] for s in e["seeds"]
    ]


def teacher_pairs():
    """Every (dataset, teacher instance) of the run, each once, sorted."""
    return sorted({(e["dataset"], t) for e in config["experiments"] for t in teacher_instances(e)})


def teacher_metrics():
    return [fill(TEACHER, dataset=d, teacher=t) + ".json" for d, t in teacher_pairs()]


def quant_metrics():
    return [
        fill(QUANT_RECORD, dataset=e["dataset"], teacher=t, method=m, quant=quant_dir(w, a, est), seed=s)
        for e in config["experiments"] if e["quantize"] for t in teacher_instances(e)
        for m in e["methods"] for s in e["seeds"] for w, a in BITS for est in ESTIMATORS
    ]


def distill_metrics():
    return [
        fill(KD_RECORD, dataset=e["dataset"], teacher=t, student=st, method=m, seed=s)
        for e in config["experiments"] for t in teacher_instances(e)
        for m in distill_methods(e) for s in e["seeds"] for st in experiment_students(e)
    ]


def foreground_metrics():
    return [
        fill(FOREGROUND_RECORD, dataset=e["dataset"], teacher=t)
        for e in config["experiments"] if e["foreground"] for t in teacher_instances(e)
    ]


def timed_methods(exp):
    """Labels the timing job gets: the experiment's registered methods (it skips image sources
    such as noise and real data). External commands cannot be timed in its process."""
    return [m for m in exp["methods"] if m in config["methods"]]


def timing_metrics():
    """One timing record per experiment, on its first teacher seed (costs do not depend on the weights)."""
    return [
        fill(TIMING_RECORD, dataset=e["dataset"], teacher=teacher_instances(e)[0])
        for e in config["experiments"] if TIMING.get("enabled", True) and timed_methods(e)
    ]


def all_metrics():
    return (teacher_metrics() + image_sets(".json") + quant_metrics() + distill_metrics() + foreground_metrics()
            + timing_metrics())


def _validate():
    """Cross-references, then everything checkable from the config (smi.validate), before any job runs.

    The CUDA check runs only when the jobs run on this machine (smi.validate.jobs_run_here): a
    cluster login node has no GPU. SMI_SKIP_MACHINE_CHECKS=1 skips the checks of this machine (dataset
    folders, weights files, CUDA) to plan a run for another one. Jobs re-parsing this file on a cluster node skip the checks.
    """
    _check_config()
    _check_teacher_ids()
    if workflow.is_main_process:
        check_workflow_config(config, workflow.basedir, jobs_run_here(sys.argv, os.environ),
                              machine_checks_enabled(os.environ))


try:
    _validate()
except (WorkflowError, SMIError) as exc:
    exit_config_error(exc)

wildcard_constraints:
    dataset="[A-Za-z0-9_.-]+",
    teacher="[A-Za-z0-9_.-]+",
    method="[A-Za-z0-9_.-]+",
    student="[A-Za-z0-9_.-]+",
    seed="[0-9]+",
    wbits="[0-9]+",
    abits="[0-9]+",
