"""Shared fixtures: the real broker's address and an in-process proxy in front of it.

The proxy runs on the test's own event loop (ports bound to 0 and read back);
blocking clients such as pika run in a worker thread via ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sysconfig
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest

from amqpprox import _build
from amqpprox.core.context import Settings
from amqpprox.core.model import ListenerSpec
from amqpprox.runtime import Runtime, SimpleMode


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run against a compiled module older than its source.

    A compiled module is imported in preference to its ``.py``: after an edit, the tests
    would otherwise exercise the old code. ``make test`` compiles again first.
    """
    del config
    if _build.pure_python_requested():
        return
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    # A rebuild may leave a module's shim untouched: the code is in the group's library.
    library = Path(_build.native_library())
    built_at = library.stat().st_mtime if library.is_file() else 0.0
    stale = []
    for name in _build.COMPILED_MODULES:
        base = _build.module_base(name)
        compiled, source = Path(base + suffix), Path(base + ".py")
        if compiled.is_file() and source.stat().st_mtime > max(compiled.stat().st_mtime, built_at):
            stale.append(name)
    if stale:
        raise pytest.UsageError(
            f"compiled modules older than their source: {', '.join(stale)}; "
            "run `make venv` (or set AMQPPROX_PURE_PYTHON=1)"
        )


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


async def ctl(path: str, line: str, timeout: float = 10.0) -> str:
    """Send one command line to a control socket and read the reply until it closes."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
    writer.write(line.encode() + b"\n")
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
async def running_proxy(
    tmp_socket_dir: str, *, simple: bool = True, **overrides: object
) -> AsyncIterator[RunningProxy]:
    """A started Runtime (``make_settings`` plus ``overrides``), stopped on exit.

    ``simple``: in simple mode in front of the real broker; else nothing configured but
    one plain listener.
    """
    runtime = Runtime(make_settings(tmp_socket_dir, **overrides))
    await runtime.start()
    try:
        if simple:
            port = await runtime.configure_simple(SimpleMode(0, BROKER_HOST, BROKER_PORT))
        else:
            port = await runtime.listeners.start(ListenerSpec(0))
        yield RunningProxy(runtime, port, runtime.settings.control_socket)
    finally:
        await runtime.stop()


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
