"""Child-process plumbing: worker processes, the proxy / forwarder servers.

Every child is tied to our lifetime twice: explicitly (terminated in
``finally`` blocks) and via ``PR_SET_PDEATHSIG`` so that even a SIGKILL of
the benchmark does not leave orphans behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from bench.rawamqp import AmqpError, Target, open_connection

_PR_SET_PDEATHSIG = 1
MP = multiprocessing.get_context("fork")


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to signal us when our parent dies (Linux only, best effort)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def free_port() -> int:
    """An ephemeral TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------------------
# Worker processes (fork) talking back over a Pipe
# --------------------------------------------------------------------------

WorkerFn = Callable[..., None]


def _worker_entry(
    fn: WorkerFn, conn: multiprocessing.connection.Connection, args: tuple[Any, ...]
) -> None:
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and cleans up
    try:
        fn(conn, *args)
    except BaseException as exc:  # report everything, the parent decides
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class Worker:
    """A forked process running ``fn(pipe, *args)``; messages are tuples."""

    def __init__(self, fn: WorkerFn, *args: Any) -> None:
        parent, child = MP.Pipe()
        self.pipe = parent
        self.proc: BaseProcess = MP.Process(
            target=_worker_entry, args=(fn, child, args), daemon=True
        )
        self.proc.start()
        child.close()

    def recv(self, deadline: float, expect: str) -> Any:
        """Wait for a ``(expect, value)`` message; raise on error/timeout/death."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not self.pipe.poll(remaining):
            raise AmqpError(f"worker timed out waiting for {expect!r}")
        try:
            kind, value = self.pipe.recv()
        except EOFError as exc:
            raise AmqpError(
                f"worker died (exit code {self.proc.exitcode}) before {expect!r}"
            ) from exc
        if kind == "error":
            raise AmqpError(f"worker failed: {value}")
        if kind != expect:
            raise AmqpError(f"worker sent {kind!r}, expected {expect!r}")
        return value

    def send(self, msg: Any) -> None:
        """Send a message to the worker."""
        self.pipe.send(msg)

    def stop(self) -> None:
        """Terminate (then kill) if still running; always reap."""
        if self.proc.is_alive():
            self.proc.join(0.5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2.0)
        self.pipe.close()


@contextlib.contextmanager
def workers(specs: Sequence[tuple[WorkerFn, tuple[Any, ...]]]) -> Iterator[list[Worker]]:
    """Start workers and guarantee they are stopped on exit."""
    started: list[Worker] = []
    try:
        for fn, args in specs:
            started.append(Worker(fn, *args))
        yield started
    finally:
        for w in started:
            w.stop()


# --------------------------------------------------------------------------
# Long-running servers (the proxy under test, the reference forwarder)
# --------------------------------------------------------------------------


def wait_amqp_ready(target: Target, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Poll until a full AMQP open through ``target`` succeeds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last = "never tried"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AmqpError(f"process exited with code {proc.returncode} before becoming ready")
        try:
            open_connection(target, timeout=min(2.0, max(0.1, deadline - time.monotonic()))).close(
                2.0
            )
            return
        except (OSError, AmqpError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    raise AmqpError(f"{target} not ready after {timeout:.0f}s (last error: {last})")


class Server:
    """A child server process (own session, dies with us) with stderr in a file."""

    def __init__(self, name: str, argv: list[str], workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.stderr_path = workdir / f"{name}.stderr"
        self.stdout_path = workdir / f"{name}.stdout"
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, fork-safe
                cwd=os.getcwd(),
            )

    def stderr_text(self, limit: int = 4000) -> str:
        """The tail of the server's stderr (and stdout)."""
        chunks = []
        for path in (self.stdout_path, self.stderr_path):
            with contextlib.suppress(OSError):
                data = path.read_bytes()[-limit:]
                if data:
                    chunks.append(f"--- {path.name} ---\n" + data.decode("utf-8", "replace"))
        return "\n".join(chunks) or "(no output)"

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait, then SIGKILL the whole session."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        # anything the server itself forked lives in its session
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
