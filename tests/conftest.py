"""Shared fixtures: the real broker's address and an in-process proxy in front of it.

The proxy runs on the test's own event loop (ports bound to 0 and read back);
blocking clients such as pika run in a worker thread via ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlparse

import pika
import pytest
import uvloop

from amqpprox.core.context import Settings
from amqpprox.core.model import ListenerSpec
from amqpprox.runtime import Runtime, SimpleMode

BROKER_URL = os.environ.get("AMQPPROX_TEST_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
_parsed = urlparse(BROKER_URL)
BROKER_HOST = _parsed.hostname or "127.0.0.1"
BROKER_PORT = _parsed.port or 5672
BROKER_USER = _parsed.username or "guest"
BROKER_PASSWORD = _parsed.password or "guest"


@dataclass
class RunningProxy:
    runtime: Runtime
    port: int
    control_socket: str

    @property
    def ctx(self):  # type: ignore[no-untyped-def]
        return self.runtime.ctx

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.runtime.admin_port}"

    def url(
        self, vhost: str = "/", user: str = BROKER_USER, password: str = BROKER_PASSWORD
    ) -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/{quote(vhost, safe='')}"


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The loop the proxy runs on in production (``runtime`` uses uvloop): the tests' too,
    so that a difference between the two loops shows here first."""
    return {"uvloop": uvloop.new_event_loop}


async def ctl(path: str, line: str, timeout: float = 10.0) -> str:
    """Send one command line to a control socket and read the reply until it closes."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
    try:
        writer.write(line.encode() + b"\n")
    except RuntimeError as error:  # uvloop: the server closed the socket already
        raise ConnectionResetError(str(error)) from error
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout)
    writer.close()
    return data.decode()


@pytest.fixture
def tmp_socket_dir() -> Iterator[str]:
    # Unix socket paths are limited to ~100 bytes: keep them short.
    with tempfile.TemporaryDirectory(prefix="apx") as path:
        yield path


def make_settings(tmp_socket_dir: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "control_socket": os.path.join(tmp_socket_dir, "ctl"),
        "log_directory": os.path.join(tmp_socket_dir, "logs"),
        "admin_port": 0,
        # Finished sessions stay listed until a test calls runtime.cleanup_once().
        "cleanup_interval_ms": 3_600_000,
        "client_handshake_timeout": 2.0,
        "connect_timeout": 2.0,
        "broker_handshake_timeout": 5.0,
        "graceful_close_timeout": 2.0,
        "drain_timeout": 2.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def started_runtime(tmp_socket_dir: str, **overrides: object) -> AsyncIterator[Runtime]:
    """A started Runtime (``make_settings`` plus ``overrides``), nothing configured, stopped
    on exit."""
    runtime = Runtime(make_settings(tmp_socket_dir, **overrides))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@contextlib.asynccontextmanager
async def running_proxy(
    tmp_socket_dir: str, *, simple: bool = True, **overrides: object
) -> AsyncIterator[RunningProxy]:
    """A started Runtime (``make_settings`` plus ``overrides``), stopped on exit.

    ``simple``: in simple mode in front of the real broker; else nothing configured but
    one plain listener.
    """
    async with started_runtime(tmp_socket_dir, **overrides) as runtime:
        if simple:
            port = await runtime.configure_simple(SimpleMode(0, BROKER_HOST, BROKER_PORT))
        else:
            port = await runtime.listeners.start(ListenerSpec(0))
        yield RunningProxy(runtime, port, runtime.settings.control_socket)


@pytest.fixture
async def proxy(tmp_socket_dir: str) -> AsyncIterator[RunningProxy]:
    """A proxy in simple mode in front of the real broker."""
    async with running_proxy(tmp_socket_dir) as running:
        yield running


@pytest.fixture
async def bare_proxy(tmp_socket_dir: str) -> AsyncIterator[RunningProxy]:
    """A proxy with nothing configured but one listener."""
    async with running_proxy(tmp_socket_dir, simple=False) as running:
        yield running


def free_closed_port() -> int:
    """A local port with nothing listening (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(proc: subprocess.Popen[str], port: int, timeout: float = 10.0) -> None:
    """Poll until the proxy ``proc`` accepts on 127.0.0.1:``port`` (it must stay alive)."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "the proxy never listened"
            time.sleep(0.02)


async def promtool_check_metrics(text: str) -> None:
    """Prometheus's own linter (Debian's prometheus package; .ci/run installs it) passes
    the text exposition ``text``."""
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool missing: apt-get install prometheus (as .ci/run does)"
    checked = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(checked.communicate(text.encode()), 30)
    assert checked.returncode == 0, output.decode()


def pika_params(port: int, host: str = "127.0.0.1", **extra: object) -> pika.ConnectionParameters:
    """The broker's user on vhost / at ``host:port``, failing fast: one attempt, 5 s reads."""
    return pika.ConnectionParameters(
        host,
        port,
        "/",
        pika.PlainCredentials(BROKER_USER, BROKER_PASSWORD),
        connection_attempts=1,
        socket_timeout=5,
        **extra,  # type: ignore[arg-type]
    )


def pika_round_trip(port: int, body: bytes, host: str = "127.0.0.1") -> bytes:
    """Publish ``body`` to a fresh exclusive queue through ``host:port`` with pika and get
    it back (blocking: run it in a thread from async tests)."""
    conn = pika.BlockingConnection(pika_params(port, host))
    try:
        channel = conn.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, body)
        for _ in range(100):
            _method, _props, got = channel.basic_get(queue, auto_ack=True)
            if got is not None:
                return bytes(got)
            conn.process_data_events(0.05)
        raise AssertionError("the message never came back")
    finally:
        conn.close()


# What every listener's JSON (REST, definitions) says of an AMQP listener.
AMQP_LISTENER = {"protocol": "amqp", "node": None}
