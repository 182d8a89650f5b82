"""Warm start: run ``smi`` commands in processes forked from a server that has imported torch.

Every workflow job is one ``smi`` command, and importing torch, timm and scikit-learn takes
about 5 s per process on a laptop CPU: on the embedded default's hundred-odd small jobs that
is a fifth of all the work. ``python -m smi.warm COMMAND ...`` behaves exactly like
``python -m smi COMMAND ...`` (same arguments, output, files and exit status) but runs the
command in a child forked from a local server that paid those imports once, the way
multiprocessing's ``forkserver`` and torch's fork-based data-loader workers do:

- The client (this module; standard library only, so it starts in milliseconds) connects to
  the server's Unix socket, starting the server if there is none. It sends its arguments,
  working directory, environment and umask, and passes its stdin, stdout and stderr as file
  descriptors, so the command writes straight into the job's log.
- The server forks one child per command. The child takes over the client's descriptors,
  directory, environment and umask, runs :func:`smi.cli.main` and reports the exit status.
  Nothing of one command outlives it: every command gets a fresh process, and seeds, thread
  counts and devices are set by the command itself, as in a plain process. Fork happens before
  any tensor work or CUDA initialisation in the server.
- A server is keyed by the interpreter, the environment variables libraries read at import
  (:data:`IMPORT_TIME_ENV_PREFIXES`: ``PYTHONPATH``, hub caches, offline modes, thread
  settings) and the size and modification time of every source file of the suite, so a change
  to the code or to such a setting starts a new server instead of running stale code. A server
  exits after :data:`IDLE_EXIT_S` seconds without a command.
- SIGINT, SIGTERM and SIGHUP sent to the client are forwarded to the child, and a child whose
  client has gone (killed) stops. Should the server fail to start, or local sockets be refused,
  the client runs the command in its own process (and a failed start is remembered, so later
  commands do not wait for it again): warm start only ever saves time.

The workflow uses it for jobs that run on this machine (``warm_start: true``, the default);
jobs sent to a cluster start plainly. Results are bit-identical either way
(``tests/test_warm.py``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

#: Modules the server imports once, before it forks: the expensive part of every command.
PRELOAD: tuple[str, ...] = (
    "torch",
    "timm",
    "sklearn.datasets",
    "sklearn.model_selection",
    "smi.cli._common",
    "smi.cli.invert",
    "smi.cli.quantize",
    "smi.cli.distill",
    "smi.cli.train_teacher",
)
#: A server with no command for this long exits (seconds).
IDLE_EXIT_S = 120.0
#: How long a client waits for a server it started to accept commands (seconds).
START_TIMEOUT_S = 120.0
#: Source folders whose files key the server (a change starts a new one).
SOURCE_PACKAGES: tuple[str, ...] = ("smi", "baselines")
#: Environment variables that libraries may read once, at import (hub caches, offline modes,
#: thread and device settings): a server serves only clients that agree on all of them.
IMPORT_TIME_ENV_PREFIXES: tuple[str, ...] = (
    "PYTHON",
    "HF_",
    "HUGGINGFACE",
    "TORCH",
    "PYTORCH",
    "TIMM",
    "CUDA",
    "NVIDIA",
    "OMP_",
    "MKL",
    "KMP_",
    "OPENBLAS",
    "SMI_",
    "XDG_CACHE_HOME",
    "HOME",
)
#: Signals the client forwards to the command.
FORWARDED_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_LENGTH = struct.Struct("!I")
_STATUS = struct.Struct("!i")


def source_fingerprint(root: Path) -> str:
    """A digest of the name, size and modification time of every ``.py`` file of the suite.

    Args:
        root: The folder holding the source packages (the repository root).

    Returns:
        A hex digest that changes whenever a source file is added, removed or edited.
    """
    digest = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def server_key(executable: str, environ: dict[str, str], fingerprint: str) -> str:
    """The short name of the server for one interpreter, import-time environment and source state."""
    relevant = sorted((k, v) for k, v in environ.items() if k.startswith(IMPORT_TIME_ENV_PREFIXES))
    return hashlib.sha256(json.dumps([executable, relevant, fingerprint]).encode()).hexdigest()[:20]


def socket_path(environ: dict[str, str] | None = None) -> Path:
    """Where this interpreter's server for the current source state listens."""
    environ = dict(os.environ if environ is None else environ)
    root = Path(__file__).resolve().parent.parent
    key = server_key(sys.executable, environ, source_fingerprint(root))
    # A private folder per user: the socket runs code as whoever connects to it.
    folder = Path(tempfile.gettempdir()) / f"smi-warm-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"{key}.sock"


# ----------------------------------------------------------------------------- wire format


def _send_message(conn: socket.socket, payload: dict, fds: Sequence[int] = ()) -> None:
    data = json.dumps(payload).encode()
    header = _LENGTH.pack(len(data))
    if fds:
        socket.send_fds(conn, [header], list(fds))
    else:
        conn.sendall(header)
    conn.sendall(data)


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks = b""
    while len(chunks) < size:
        chunk = conn.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed")
        chunks += chunk
    return chunks


def _recv_message(conn: socket.socket, max_fds: int = 3) -> tuple[dict, list[int]]:
    header, fds, _, _ = socket.recv_fds(conn, _LENGTH.size, max_fds)
    if len(header) < _LENGTH.size:
        header += _recv_exact(conn, _LENGTH.size - len(header))
    (size,) = _LENGTH.unpack(header)
    return json.loads(_recv_exact(conn, size)), fds


# ----------------------------------------------------------------------------- server


def serve(path: Path) -> None:
    """Import :data:`PRELOAD`, then fork one child per command until idle (the server process)."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    # Children are reaped by the kernel: the server never waits for a command.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = path.with_suffix(f".{os.getpid()}.tmp")
    listener.bind(str(staging))
    listener.listen(64)
    os.replace(staging, path)  # clients see the socket only once it accepts
    listener.settimeout(IDLE_EXIT_S)
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                break
            if os.fork() == 0:
                listener.close()
                _run_child(conn)  # never returns
            conn.close()
    finally:
        listener.close()
        _unlink_if_dead(path)


def _unlink_if_dead(path: Path) -> None:
    """Remove a socket nobody listens on any more."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        path.unlink(missing_ok=True)
    except OSError:
        pass  # cannot tell: leave it (a client that cannot connect runs cold)
    finally:
        probe.close()


def _run_child(conn: socket.socket) -> None:
    """Become the client's command: its descriptors, directory, environment, then ``smi.cli.main``."""
    status = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        request, fds = _recv_message(conn)
        for target, fd in zip(request["fds"], fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.umask(request["umask"])
        sys.argv = ["smi", *request["argv"]]
        # A fresh interpreter's signal handling: Ctrl-C raises KeyboardInterrupt (the CLI's one-line
        # exit 130), whatever the server inherited (a server started from a background job ignores
        # SIGINT). Only the client's forwarding reaches this process (it has its own session).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        conn.sendall(_STATUS.pack(os.getpid()))
        # If the client disappears (killed), the command has no one to report to: stop it.
        threading.Thread(target=_exit_when_closed, args=(conn,), daemon=True).start()
        from smi.cli import main

        status = main(request["argv"])
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # report anything else as a plain process would, then exit
        import traceback

        traceback.print_exception(exc)
        status = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        try:
            conn.sendall(_STATUS.pack(int(status)))
        except OSError:
            pass
        os._exit(int(status) & 0xFF)


def _exit_when_closed(conn: socket.socket) -> None:
    try:
        while conn.recv(1):
            pass
    except OSError:
        pass
    os._exit(128 + signal.SIGTERM)


# ----------------------------------------------------------------------------- client


class _NoWarmStart(Exception):
    """Local sockets do not work here: run the command cold, without waiting."""


def _connect(path: Path) -> socket.socket | None:
    """A connection to the server at ``path``, or ``None`` if none listens there."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        conn.close()
        return None
    except OSError as exc:  # sockets refused by the system or a sandbox: no warm start at all
        conn.close()
        raise _NoWarmStart(str(exc)) from exc
    return conn


def _start_server(path: Path) -> socket.socket | None:
    """Start the server for ``path`` unless another client is already doing so; then connect.

    A start that fails (the server exits, or has not listened within :data:`START_TIMEOUT_S`)
    leaves a ``.failed`` marker beside the socket, so that the next commands run cold at once
    instead of each waiting for a server that will not come.
    """
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter; the others wait here, then connect
        if path.with_suffix(".failed").exists():
            return None
        conn = _connect(path)
        if conn is not None:
            return conn
        path.unlink(missing_ok=True)
        with open(path.with_suffix(".log"), "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "smi.warm", "--serve", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # not in the job's process group: it outlives the job
                close_fds=True,
            )
        # The server moves its socket into place only once it listens: wait for the file.
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None and not path.exists():
            time.sleep(0.05)
        conn = _connect(path) if path.exists() else None
        if conn is None:
            path.with_suffix(".failed").touch()
        return conn


def run_warm(argv: Sequence[str]) -> int | None:
    """Run ``smi argv`` in a forked child of the server; ``None`` if no server could be reached."""
    path = socket_path()
    if path.with_suffix(".failed").exists():
        return None
    try:
        conn = _connect(path) or _start_server(path)
    except _NoWarmStart:
        return None
    if conn is None:
        return None
    # Signals the client would act on go to the command; one that comes before the command's
    # pid is known is held and sent as soon as it is.
    child: list[int] = []
    pending: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if child:
            _forward(child[0], signum)
        else:
            pending.append(signum)

    for signum in FORWARDED_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, forward)
    with conn:
        fds = [fd for fd in (0, 1, 2) if _is_open(fd)]
        request = {
            "argv": list(argv),
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "umask": _current_umask(),
            "fds": fds,
        }
        _send_message(conn, request, fds=fds)
        try:
            (pid,) = _STATUS.unpack(_recv_exact(conn, _STATUS.size))
        except ConnectionError:
            return None  # the server went away before forking: run plainly
        child.append(pid)
        for signum in pending:
            _forward(pid, signum)
        try:
            (status,) = _STATUS.unpack(_recv_exact(conn, _STATUS.size))
        except ConnectionError:
            return 1  # the child died without reporting (killed)
    return status


def _forward(child: int, signum: int) -> None:
    try:
        os.kill(child, signum)
    except ProcessLookupError:
        pass


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m smi.warm COMMAND ...``: like ``python -m smi``, warm (see the module doc)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "--serve":
        serve(Path(argv[1]))
        return 0
    status = run_warm(argv)
    if status is None:  # no server: the plain, cold way
        from smi.cli import main as cold_main

        return cold_main(argv)
    return status


if __name__ == "__main__":
    sys.exit(main())
