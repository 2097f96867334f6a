"""The control socket's path and ``amqpprox_ctl``, as real processes.

What may be at ``--controlSocket`` when the proxy starts: a regular file is never deleted
and a socket of another user is never taken (the start is refused, naming the path); a
refused second instance leaves the first one's socket alone. ``amqpprox_ctl`` talks only
to a socket owned by root or by its user, and a reader of its output that goes away
(``| head -1``) is not reported as an unreachable socket.

The owner checks ``chown`` a socket to uid 65534 (``nobody``): they need root, as in CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from amqpprox.runtime import Runtime
from tests.conftest import started_runtime
from tests.polling import until

PY = sys.executable
CTL = str(Path(sys.executable).with_name("amqpprox_ctl"))
NOBODY = 65534


def proxy_args(control: str, tmp: str) -> list[str]:
    return [
        PY, "-m", "amqpprox", "--controlSocket", control,
        "--logDirectory", os.path.join(tmp, "logs"), "--adminPort", "0",
    ]  # fmt: skip


def start_refused(control: str, tmp: str) -> subprocess.CompletedProcess[str]:
    """Run the proxy expecting it to refuse its start; its output."""
    return subprocess.run(
        proxy_args(control, tmp), capture_output=True, text=True, timeout=20, check=False
    )


def run_ctl(control: str, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CTL, control, *words], capture_output=True, text=True, timeout=20, check=False
    )


@contextlib.contextmanager
def foreign_socket(directory: str, *, listening: bool) -> Iterator[tuple[str, socket.socket]]:
    """A socket file owned by uid 65534, not by us; not listening, it looks left over."""
    if os.geteuid() != 0:
        pytest.fail("the owner checks chown a socket to another uid: run as root (as CI does)")
    path = os.path.join(directory, "ctl")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        if listening:
            server.listen()
        server.setblocking(False)
        os.chown(path, NOBODY, NOBODY)
        yield path, server


def test_a_regular_file_at_the_path_is_kept_and_the_start_refused(tmp_socket_dir: str) -> None:
    control = Path(tmp_socket_dir, "ctl")
    control.write_bytes(b"precious data\n")
    before = control.stat()
    result = start_refused(str(control), tmp_socket_dir)
    assert result.returncode != 0
    assert f"control socket path {control} exists and is not a socket" in result.stdout
    assert control.read_bytes() == b"precious data\n"
    after = control.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_socket_of_another_user_is_not_taken(tmp_socket_dir: str) -> None:
    # Nobody accepts on it: before the fix the proxy deleted it as stale and took the path.
    with foreign_socket(tmp_socket_dir, listening=False) as (path, _server):
        inode = os.lstat(path).st_ino
        result = start_refused(path, tmp_socket_dir)
        assert result.returncode != 0
        assert f"control socket {path} is owned by uid {NOBODY}" in result.stdout
        found = os.lstat(path)
        assert (found.st_ino, found.st_uid) == (inode, NOBODY)  # still there, still theirs


def test_ctl_refuses_a_socket_of_another_user_and_a_non_socket(tmp_socket_dir: str) -> None:
    with foreign_socket(tmp_socket_dir, listening=True) as (path, server):
        result = run_ctl(path, "VHOST", "PAUSE", "secret")
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr == (
            f"Exception: refusing control socket '{path}' is owned by uid {NOBODY}, "
            f"neither root nor you (uid {os.geteuid()})\n"
        )
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing was sent: not even a connection
    plain = Path(tmp_socket_dir, "plain")
    plain.write_text("x")
    result = run_ctl(str(plain), "HELP")
    assert result.returncode == 2
    assert result.stderr == f"Exception: refusing control socket '{plain}' is not a socket\n"


def test_a_refused_second_instance_leaves_the_first_ones_socket(tmp_socket_dir: str) -> None:
    control = os.path.join(tmp_socket_dir, "ctl")
    first = subprocess.Popen(
        proxy_args(control, tmp_socket_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert first.stdout is not None
        first.stdout.readline()  # "Starting amqpprox ..."
        deadline = time.monotonic() + 15
        while not os.path.exists(control):  # poll a condition with a deadline
            assert time.monotonic() < deadline, "control socket never appeared"
            time.sleep(0.02)
        assert run_ctl(control, "DATACENTER", "PRINT").stdout == "\n"
        inode = os.lstat(control).st_ino
        second = start_refused(control, tmp_socket_dir)
        assert second.returncode != 0
        assert f"another process serves the control socket {control}" in second.stdout
        assert os.lstat(control).st_ino == inode
        served = run_ctl(control, "HELP")
        assert served.returncode == 0 and served.stdout.startswith("AUTH (SERVICE")
        assert run_ctl(control, "EXIT").stdout == "Exiting.\n"
        first.communicate(timeout=20)
        assert first.returncode == 0
        assert not os.path.exists(control)  # the first removes its own socket
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()


@pytest.fixture
async def streaming_proxy(tmp_socket_dir: str) -> AsyncIterator[Runtime]:
    """A proxy publishing statistics every 50 ms, so STAT LISTEN keeps writing."""
    async with started_runtime(tmp_socket_dir, cleanup_interval_ms=50) as runtime:
        yield runtime


async def test_ctl_into_head_ends_quietly(streaming_proxy: Runtime) -> None:
    control = streaming_proxy.settings.control_socket
    script = '"$0" "$1" STAT LISTEN json overall | head -1; exit "${PIPESTATUS[0]}"'
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, CTL, control,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert err == b""  # never "cannot reach control socket", nor a traceback
    assert proc.returncode == 0  # amqpprox_ctl's own exit code
    assert out.count(b"\n") == 1 and out.startswith(b'{"pausedConnectionCount": 0, ')
    # The proxy noticed its reader went and stopped streaming to it.
    hub = streaming_proxy.ctx.stats
    await until(lambda: not hub.listeners, "the STAT listener to go")
