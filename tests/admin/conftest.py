"""REST fixtures: a started proxy with nothing configured and a pytest-aiohttp client on it."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from amqpprox.admin.app import make_admin_app
from amqpprox.runtime import Runtime
from tests.conftest import make_settings

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
API = "/api/v1"


@pytest.fixture
async def runtime(tmp_socket_dir: str) -> AsyncIterator[Runtime]:
    rt = Runtime(make_settings(tmp_socket_dir))
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


@pytest.fixture
async def client(runtime: Runtime, aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    return await aiohttp_client(make_admin_app(runtime.ctx))


@contextlib.contextmanager
def reserve_port() -> Iterator[int]:
    """A port nobody else can take, yet ours to listen on.

    A socket bound with SO_REUSEADDR but not listening keeps the port out of everyone
    else's hands (no race), while our listener (also SO_REUSEADDR) may still bind it.
    """
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("0.0.0.0", 0))
    try:
        yield int(holder.getsockname()[1])
    finally:
        holder.close()


@pytest.fixture
def reserved_port() -> Iterator[int]:
    with reserve_port() as port:
        yield port
