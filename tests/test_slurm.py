"""Cluster execution through the SLURM profile, on a real single-node SLURM.

A throwaway SLURM (munged, slurmctld and slurmd on loopback, started by
``tests/slurm/start.sh``) runs a workflow through
``snakemake --executor slurm --profile profiles/slurm``. The tests check that every job
went through ``sbatch`` (SLURM job ids in the Snakemake log, each with a ``squeue``
record in the partition the profile chose) and that the outputs equal those of a local
run of the same workflow. ``tests/slurm/stop.sh`` then stops every daemon by its PID.

What "equal" means (``compare_trees``): the same set of files under ``results/``; JSON,
``.pt`` and ``.csv`` files equal in their deterministic content, where tensors and floats
may differ by float round-off and keys or columns that hold wall times, speed-ups, dates,
hosts, recorded commands or provenance (``VOLATILE_KEY``) are ignored; any other file (tables, figures,
logs: they print timings) only has to exist on both sides, empty on both or on neither.

Without root or without the Debian packages (``tests/slurm/install.sh``) the tests skip
and say why; with ``SMI_REQUIRE_SLURM=1`` (as CI sets it) they fail instead.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "tests" / "slurm"
PROFILE = REPO / "profiles" / "slurm"
CI_CONFIG = REPO / "config" / "ci.yaml"
REQUIRE_ENV = "SMI_REQUIRE_SLURM"
# start.sh's exit status for "this machine cannot host the test cluster".
EXIT_UNAVAILABLE = 77
# The test cluster's partitions: the profile sends GPU rules to the second one, so that
# squeue shows which rules the profile treated as GPU rules.
CPU_PARTITION, GPU_PARTITION = "cpu", "gpu"
# The node has no GPU, so the profile's GPU rules request none (its SMI_SLURM_GPUS knob).
TEST_ENV = {
    "SMI_SLURM_GPUS": "0",
    "SMI_SLURM_PARTITION": CPU_PARTITION,
    "SMI_SLURM_GPU_PARTITION": GPU_PARTITION,
}
# Snakemake options for the test cluster on top of the profile: poll with squeue (there
# is no slurmdbd for sacct), start polling after 2 s instead of 40 s, no retries (a
# broken job should fail the test at once, not three times).
SLURM_TEST_OPTIONS = [
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--slurm-keep-successful-logs",
    "--retries",
    "0",
]
# Upper bound of one snakemake run (the CI workflow takes about 2 minutes on an idle
# 2-core machine; shared machines are slower). A hung run fails instead of blocking CI.
RUN_TIMEOUT_S = 900
# Tolerances for floats and float tensors: identical seeds and thread counts give
# identical numbers, but nothing promises bitwise equality across processes.
RTOL, ATOL = 1e-5, 1e-6
# Keys (JSON, nested dicts in .pt files) and CSV columns whose values legitimately differ
# between two runs of the same job: provenance, anything timed, and recorded commands
# (they name files in the run's own work directory).
VOLATILE_KEY = re.compile(
    r"provenance|(^|_)(time|times|seconds|secs|s|ms|wall|speedup|throughput|timestamp|"
    r"date|host|hostname|duration|elapsed|command)(_|$)"
)
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+)")
# Snakemake prints "rule NAME:" for jobs it hands to the executor, "localrule NAME:"
# for jobs it runs itself.
REMOTE_JOB = re.compile(r"^rule (\w+):", re.MULTILINE)


def _unavailable(reason: str) -> None:
    """Skip, or fail when the environment requires SLURM (CI)."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"SLURM is required ({REQUIRE_ENV}=1) but unavailable: {reason}")
    pytest.skip(f"SLURM test cluster unavailable: {reason}")


@dataclass(frozen=True)
class Cluster:
    """A running test cluster.

    Attributes:
        state: Directory with the daemons' state, logs and PID files.
        cpus: CPUs of the one node (jobs may not ask for more).
    """

    state: Path
    cpus: int


def _pids(state: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in (state / "pids").glob("*.pid")}


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie, dead but not yet reaped by PID 1, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """Start the single-node SLURM for this module; stop it by PID afterwards."""
    if os.name != "posix" or os.geteuid() != 0:
        _unavailable("needs root to start slurmctld/slurmd and write /etc/slurm/slurm.conf")
    state = tmp_path_factory.mktemp("slurm-state")
    start = subprocess.run(
        ["bash", str(HARNESS / "start.sh"), str(state), CPU_PARTITION, GPU_PARTITION],
        capture_output=True,
        text=True,
    )
    try:
        started = _pids(state)
        if start.returncode == EXIT_UNAVAILABLE:
            _unavailable(start.stderr.strip())
        assert start.returncode == 0, f"start.sh failed:\n{start.stdout}{start.stderr}"
        yield Cluster(state=state, cpus=os.cpu_count() or 1)
    finally:
        stop = subprocess.run(["bash", str(HARNESS / "stop.sh"), str(state)], capture_output=True, text=True)
    assert stop.returncode == 0, f"stop.sh failed:\n{stop.stdout}{stop.stderr}"
    left = {name: pid for name, pid in started.items() if _alive(pid)}
    assert not left, f"daemons still running after stop.sh: {left}"


def _snakemake(args: list[str], workdir: Path, log: Path) -> str:
    """Run snakemake in ``workdir``; return its log, failing with the log's tail."""
    env = {**os.environ, **TEST_ENV}
    env.pop("SMI_SLURM_ACCOUNT", None)  # no accounting here: an account cannot validate
    # Jobs run `smi` and `python -m snakemake`: both must come from this environment.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "--directory", str(workdir), *args],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        log.write_text(out)
        pytest.fail(f"snakemake ran over {RUN_TIMEOUT_S} s; log tail:\n{out[-4000:]}")
    log.write_text(proc.stdout)
    assert proc.returncode == 0, f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}"
    return proc.stdout


def _profile() -> dict[str, Any]:
    """The SLURM profile as plain YAML (its YTE expressions left unevaluated)."""
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


def _gpu_rules() -> set[str]:
    """Rules that the SLURM profile gives a GPU request."""
    return {rule for rule, res in _profile()["set-resources"].items() if "gpu" in res}


def _profile_memory_mb(rule: str) -> int:
    """The memory the profile requests for a rule's first attempt."""
    expression = _profile()["set-resources"][rule]["mem_mb"]
    return int(eval(str(expression), {"attempt": 1}))  # the profile's own "N * attempt"


@dataclass(frozen=True)
class SlurmJob:
    """One job's squeue record."""

    job_id: str
    partition: str
    state: str
    rule: str
    min_memory: str
    tres_per_node: str


def _squeue(job_ids: list[str]) -> dict[str, SlurmJob]:
    """squeue records (finished jobs included: MinJobAge keeps them) of ``job_ids``."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%P|%T|%k|%m|%b"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jobs = {}
    for line in out.splitlines():
        job_id, partition, state, comment, memory, tres = line.split("|")
        # The plugin's --comment is rule_<rule>[_wildcards_<values>].
        rule = comment.removeprefix("rule_").split("_wildcards_")[0]
        jobs[job_id] = SlurmJob(job_id, partition, state, rule, memory, tres)
    return jobs


def check_went_through_slurm(log: str) -> dict[str, SlurmJob]:
    """Assert that every executor job of a snakemake log ran as a completed SLURM job.

    Returns:
        The squeue records by SLURM job id.
    """
    job_ids = SUBMITTED.findall(log)
    remote_rules = REMOTE_JOB.findall(log)
    assert job_ids, "no 'submitted with SLURM jobid' line in the snakemake log"
    assert len(job_ids) == len(remote_rules), (len(job_ids), remote_rules)
    jobs = _squeue(job_ids)
    assert sorted(jobs) == sorted(job_ids), f"squeue lacks some of {job_ids}: {jobs}"
    assert sorted(job.rule for job in jobs.values()) == sorted(remote_rules)
    gpu_rules = _gpu_rules()
    for job in jobs.values():
        assert job.state == "COMPLETED", job
        expected = GPU_PARTITION if job.rule in gpu_rules else CPU_PARTITION
        assert job.partition == expected, job
        assert job.tres_per_node == "N/A", f"SMI_SLURM_GPUS=0 but a GPU was requested: {job}"
        # The profile's memory for the rule, not what the rule itself declares, reached sbatch.
        assert job.min_memory == f"{_profile_memory_mb(job.rule)}M", job
    return jobs


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL) or (math.isnan(a) and math.isnan(b))


def compare_values(a: Any, b: Any, where: str = "") -> list[str]:
    """Differences between two loaded values (JSON or torch objects), volatile keys aside.

    Args:
        a: Value from the reference run.
        b: Value from the other run.
        where: Path of the value, for the messages.

    Returns:
        One message per difference; empty when equal.
    """
    if isinstance(a, dict) and isinstance(b, dict):
        keys = {k for k in a.keys() | b.keys() if not VOLATILE_KEY.search(str(k))}
        missing = sorted(str(k) for k in keys if (k in a) != (k in b))
        if missing:
            return [f"{where}: keys only on one side: {missing}"]
        return [d for k in sorted(keys, key=str) for d in compare_values(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in compare_values(x, y, f"{where}[{i}]")]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return [f"{where}: tensor {a.dtype}{list(a.shape)} != {b.dtype}{list(b.shape)}"]
        if a.is_floating_point() or a.is_complex():
            same = torch.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True)
        else:
            same = torch.equal(a, b)
        return [] if same else [f"{where}: tensors differ"]
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and _close(a, b):
            return []
        return [f"{where}: {a!r} != {b!r}"]
    return [] if type(a) is type(b) and a == b else [f"{where}: {a!r} != {b!r}"]


def _compare_csv(a: Path, b: Path) -> list[str]:
    frames = [pd.read_csv(p) for p in (a, b)]
    stable = [c for c in frames[0].columns if not VOLATILE_KEY.search(str(c))]
    if list(frames[1].columns) != list(frames[0].columns):
        return [f"columns differ: {list(frames[0].columns)} != {list(frames[1].columns)}"]
    try:
        pd.testing.assert_frame_equal(frames[0][stable], frames[1][stable], rtol=RTOL, atol=ATOL)
    except AssertionError as err:
        return [str(err)]
    return []


def compare_trees(reference: Path, other: Path) -> list[str]:
    """Differences between the ``results/`` trees of two runs (see the module docstring).

    Returns:
        One message per difference; empty when the runs agree.
    """
    files = [{p.relative_to(root) for p in root.rglob("*") if p.is_file()} for root in (reference, other)]
    diffs = [
        f"only in {root}: {sorted(map(str, extra))}"
        for root, extra in ((reference, files[0] - files[1]), (other, files[1] - files[0]))
        if extra
    ]
    for rel in sorted(files[0] & files[1]):
        a, b = reference / rel, other / rel
        if rel.suffix == ".json":
            found = compare_values(json.loads(a.read_text()), json.loads(b.read_text()))
        elif rel.suffix == ".pt":
            load = lambda p: torch.load(p, map_location="cpu", weights_only=False)  # noqa: E731
            found = compare_values(load(a), load(b))
        elif rel.suffix == ".csv":
            found = _compare_csv(a, b)
        else:  # tables, figures, logs: timings inside, so only empty vs non-empty counts
            found = [] if (a.stat().st_size > 0) == (b.stat().st_size > 0) else ["empty on one side"]
        diffs += [f"{rel}: {d}" for d in found]
    return diffs


def _run_both(
    snakefile: Path, tmp_path: Path, cpus: int, extra: list[str], local: Path | None = None
) -> tuple[Path, Path, str]:
    """Run a workflow locally and through SLURM in two directories.

    Args:
        local: A finished local run of the same workflow to compare against (else run one).

    Returns:
        The two work directories (local, SLURM) and the SLURM run's log.
    """
    cluster = tmp_path / "slurm"
    common = ["--snakefile", str(snakefile), *extra]
    if local is None:
        local = tmp_path / "local"
        _snakemake([*common, "--cores", str(cpus)], local, tmp_path / "local.log")
    log = _snakemake(
        [*common, "--profile", str(PROFILE), "--executor", "slurm", "--max-threads", str(cpus), *SLURM_TEST_OPTIONS],
        cluster,
        tmp_path / "slurm.log",
    )
    return local, cluster, log


# A throwaway workflow with two of the profile's rule names, flat so that it costs one
# round of SLURM jobs: a GPU rule writing a seeded image set and metrics (with a wall
# time and provenance, which differ between runs) and a CPU rule writing a table.
TOY_SNAKEFILE = textwrap.dedent(
    """
    import json, time

    RUN = config.get("run", "toy")
    SEEDS = [0, 1]

    rule all:
        input:
            expand(f"results/{RUN}/images/seed{{seed}}.pt", seed=SEEDS),
            f"results/{RUN}/tables/table.csv",

    rule invert:
        output:
            images=f"results/{RUN}/images/seed{{seed}}.pt",
            metrics=f"results/{RUN}/images/seed{{seed}}.json",
        threads: 1
        resources: gpu=1, mem_mb=1000, runtime=5
        run:
            import torch  # here, not at the top: the CPU rule's job need not load it

            torch.manual_seed(int(wildcards.seed))
            images = torch.rand(4, 3, 8, 8)
            torch.save({"images": images, "targets": torch.arange(4),
                        "keep_masks": images[:, 0] > 0.5,
                        "metadata": {"seed": int(wildcards.seed), "wall_time_s": time.time()}},
                       output.images)
            json.dump({"accuracy": float(images.mean()), "wall_time_s": time.time(),
                       "provenance": {"threads": threads}}, open(output.metrics, "w"))

    rule tables:
        output: f"results/{RUN}/tables/table.csv"
        threads: 1
        resources: mem_mb=500, runtime=5
        shell: "printf 'method,accuracy,wall_time_s\\ndense,0.5,%s\\n' $(date +%s.%N) > {output}"
    """
)


@pytest.mark.slurm
def test_toy_workflow_runs_through_slurm_like_locally(slurm_cluster: Cluster, tmp_path: Path) -> None:
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(TOY_SNAKEFILE)
    local, cluster, log = _run_both(snakefile, tmp_path, slurm_cluster.cpus, ["--config", "run=toy"])
    jobs = check_went_through_slurm(log)
    assert sorted(job.rule for job in jobs.values()) == ["invert", "invert", "tables"]
    assert compare_trees(local / "results", cluster / "results") == []


@pytest.mark.slurm
def test_ci_workflow_runs_through_slurm_like_locally(
    slurm_cluster: Cluster, tmp_path: Path, ci_local_run: Path
) -> None:
    local, cluster, log = _run_both(
        REPO / "Snakefile",
        tmp_path,
        slurm_cluster.cpus,
        ["--configfile", str(CI_CONFIG), "--config", "run=ci"],
        local=ci_local_run,  # the session's local run of the same config (shared with the workflow tests)
    )
    check_went_through_slurm(log)
    assert compare_trees(local / "results", cluster / "results") == []


def test_compare_trees_ignores_volatile_content_and_finds_real_differences(tmp_path: Path) -> None:
    def write(root: Path, accuracy: float, wall: float, image_shift: float) -> None:
        (root / "r").mkdir(parents=True)
        (root / "r" / "m.json").write_text(
            json.dumps({"accuracy": accuracy, "wall_time_s": wall, "provenance": {"host": str(wall)}})
        )
        torch.save({"images": torch.ones(2, 2) + image_shift, "targets": torch.tensor([1, 2])}, root / "r" / "i.pt")
        (root / "r" / "s.csv").write_text(f"seed,accuracy,time_s\n0,{accuracy},{wall}\n")
        (root / "r" / "table.md").write_text(f"| time | {wall} |\n")

    write(tmp_path / "a", 0.5, 1.0, 0.0)
    write(tmp_path / "b", 0.5, 2.0, 1e-9)
    assert compare_trees(tmp_path / "a", tmp_path / "b") == []
    write(tmp_path / "c", 0.25, 1.0, 0.1)
    (tmp_path / "c" / "extra.txt").write_text("x")
    diffs = "\n".join(compare_trees(tmp_path / "a", tmp_path / "c"))
    for expected in ("m.json: .accuracy", "i.pt: .images: tensors differ", "s.csv", "extra.txt"):
        assert expected in diffs


def test_profile_maps_cluster_settings_per_rule(tmp_path: Path) -> None:
    """The profile renders (dry run, no SLURM needed) with the cluster settings applied."""
    (tmp_path / "Snakefile").write_text(TOY_SNAKEFILE)
    env = {**os.environ, "SMI_SLURM_ACCOUNT": "acct", "SMI_SLURM_PARTITION": "short", "SMI_SLURM_GPU_PARTITION": "a100"}
    env.pop("SMI_SLURM_GPUS", None)
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", str(PROFILE), "-n", "--config", "run=toy"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    resources = dict(re.findall(r"^rule (\w+):.*?^\s+resources: (.*?)$", out, re.MULTILINE | re.DOTALL))
    assert "gpu=1" in resources["invert"] and "slurm_partition=a100" in resources["invert"]
    assert "mem_mb=16000" in resources["invert"]
    assert "gpu" not in resources["tables"] and "slurm_partition=short" in resources["tables"]
    assert all("slurm_account=acct" in r for r in resources.values())


def test_profile_covers_exactly_the_rules_of_the_workflow() -> None:
    if not (REPO / "Snakefile").exists() or not CI_CONFIG.exists():
        pytest.skip("the workflow (Snakefile, config/ci.yaml) does not exist yet")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--configfile",
            str(CI_CONFIG),
            "--list-rules",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Every rule that runs as a job has its own requests; `all` only collects targets.
    rules = set(out.split()) - {"all"}
    assert set(_profile()["set-resources"]) == rules
