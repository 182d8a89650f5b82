"""Warm start (smi.warm): a command forked from the server behaves exactly like a plain one.

The workflow-level check (a whole small DAG, warm against cold, bit-identical outputs) is
tests/test_determinism.py; these tests cover the command line contract and the server key.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smi import warm

REPO = Path(__file__).resolve().parents[1]


def smi(module: str, *args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, **kwargs
    )


@pytest.mark.parametrize("config", ["ok", "missing"])
def test_warm_command_gives_the_same_output_and_status_as_a_plain_one(tmp_path: Path, config: str) -> None:
    # A relative path: the child must run in the client's working directory.
    if config == "ok":
        (tmp_path / "ok").write_text((REPO / "config" / "ci.yaml").read_text())
    cold = smi("smi", "check-config", config, cwd=tmp_path)
    hot = smi("smi.warm", "check-config", config, cwd=tmp_path)
    assert (hot.returncode, hot.stdout, hot.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    assert cold.returncode == (0 if config == "ok" else 2)


def test_warm_command_writes_files_with_the_client_umask_and_environment(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env_marker = {"SMI_TEST_MARKER": "1"}  # an import-time prefix: a server of its own, started here
    proc = subprocess.run(
        [
            "sh",
            "-c",
            f"umask 077 && {sys.executable} -m smi.warm bench-inversion --model vit_tiny_patch16_224 "
            f"--img-size 32 --batch-size 2 --iterations 8 --schedule 1 2 3 4 --repeats 1 --out {out.name}",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), **env_marker},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and "per_round_speedups" in proc.stdout  # the command's stdout reached the client
    assert out.stat().st_mode & 0o077 == 0  # the client's umask, not the server's


def test_interrupting_the_client_interrupts_the_command(tmp_path: Path) -> None:
    assert smi("smi.warm", "check-config", "nothing", cwd=tmp_path).returncode == 2  # the server is up
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smi.warm",
            "bench-inversion",
            "--model",
            "vit_tiny_patch16_224",
            "--img-size",
            "32",
            "--batch-size",
            "2",
            "--iterations",
            "100000",
            "--repeats",
            "1",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a job started in the background of a shell would ignore SIGINT.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(3)  # let the command start its loop
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr


def test_server_key_follows_the_code_and_the_import_time_environment(tmp_path: Path) -> None:
    (tmp_path / "smi").mkdir()
    source = tmp_path / "smi" / "a.py"
    source.write_text("x = 1\n")
    before = warm.source_fingerprint(tmp_path)
    assert warm.source_fingerprint(tmp_path) == before
    source.write_text("x = 22\n")  # another size: a new fingerprint whatever the clock's resolution
    after = warm.source_fingerprint(tmp_path)
    assert after != before

    env = {"PYTHONPATH": "/a", "HF_HUB_OFFLINE": "1", "SOME_JOB_VARIABLE": "x"}
    key = warm.server_key("python", env, after)
    assert warm.server_key("python", {**env, "SOME_JOB_VARIABLE": "y"}, after) == key
    assert warm.server_key("python", {**env, "HF_HUB_OFFLINE": "0"}, after) != key
    assert warm.server_key("python", {**env, "PYTHONPATH": "/b"}, after) != key
    assert warm.server_key("python", env, before) != key
    assert warm.server_key("python3", env, after) != key


def test_client_runs_cold_at_once_where_local_sockets_are_refused(tmp_path: Path) -> None:
    # A sandbox that refuses every socket connection, local ones included: no server can be
    # reached, so the command must run in the client's own process instead of waiting for one.
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import socket\n"
        "def _refuse(*args, **kwargs):\n"
        "    raise OSError('sockets are blocked here')\n"
        "socket.socket.connect = _refuse\n"
    )
    (tmp_path / "ok").write_text((REPO / "config" / "ci.yaml").read_text())
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{REPO}"}
    proc = subprocess.run(
        [sys.executable, "-m", "smi.warm", "check-config", "ok"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # a client waiting for a server it cannot reach would hang here
    )
    assert proc.returncode == 0 and "no problem found" in proc.stdout + proc.stderr, proc.stderr
