"""Two backends in front of the one broker, for eviction and migration tests.

Each backend is a FaultyForwarder to the real RabbitMQ, so which backend a session is on
is the proxy's own record. ``proxy2``: backends b1 and b2, farms f1 [b1] and f2 [b2],
vhost "/" mapped to farm f1, farm changes evicting at 50/s. Import the fixtures
(``forwarders``, ``proxy2``) into a test module to use them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from amqpprox.amqp.methods import ConnectionClose, ConnectionOpenOk, decode_method
from amqpprox.core import operations as ops
from tests.conftest import BROKER_HOST, BROKER_PORT, RunningProxy, running_proxy
from tests.faults import FaultyForwarder
from tests.rawamqp import CHANNEL_OPEN, CHANNEL_OPEN_OK_IDS, RawClient


@pytest.fixture
async def forwarders() -> AsyncIterator[tuple[FaultyForwarder, FaultyForwarder]]:
    one = await FaultyForwarder((BROKER_HOST, BROKER_PORT)).start()
    two = await FaultyForwarder((BROKER_HOST, BROKER_PORT)).start()
    try:
        yield one, two
    finally:
        await one.stop()
        await two.stop()


async def configure_two_backends(
    running: RunningProxy, forwarders: tuple[FaultyForwarder, FaultyForwarder]
) -> None:
    ctx = running.ctx
    for name, forwarder in zip(("b1", "b2"), forwarders, strict=True):
        await ops.add_backend(ctx, name, "dc", "127.0.0.1", forwarder.port)
    ops.set_farm(ctx, "f1", ["b1"])
    ops.set_farm(ctx, "f2", ["b2"])
    ops.map_vhost_to_farm(ctx, "/", "f1")


@pytest.fixture
async def proxy2(
    tmp_socket_dir: str, forwarders: tuple[FaultyForwarder, FaultyForwarder]
) -> AsyncIterator[RunningProxy]:
    async with running_proxy(
        tmp_socket_dir, simple=False, farm_change_evict_per_second=50
    ) as running:
        await configure_two_backends(running, forwarders)
        yield running


async def open_clients(port: int, count: int) -> list[RawClient]:
    """``count`` raw clients through the handshake on vhost "/" (concurrently)."""

    async def one() -> RawClient:
        client = await RawClient.connect(port)
        assert isinstance(await client.open("/"), ConnectionOpenOk)
        return client

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def closed_at(client: RawClient, timeout: float = 20.0) -> tuple[float, ConnectionClose]:
    """Wait for the proxy's Connection.Close; answer CloseOk; when it came (loop clock)."""
    method = await client.read_method(timeout)
    at = asyncio.get_running_loop().time()
    assert isinstance(method, ConnectionClose), method
    await client.close_ok()
    return at, method


async def still_open(client: RawClient) -> None:
    """The client's connection still relays: a channel opens, and no Close came first."""
    await client.send(CHANNEL_OPEN)
    frame = await client.read_frame()
    assert (frame.type, frame.channel) == (1, 1), decode_method(frame.payload)
    method = decode_method(frame.payload)
    assert (method.class_id, method.method_id) == CHANNEL_OPEN_OK_IDS  # type: ignore[union-attr]


def session_ids(running: RunningProxy, clients: list[RawClient]) -> list[int]:
    """The session id of each client, by its local port."""
    by_port = {s.client[1]: s.id for s in running.ctx.sessions}
    return [by_port[c.writer.get_extra_info("sockname")[1]] for c in clients]


def on_backend(running: RunningProxy, backend: str) -> list[int]:
    return sorted(
        s.id for s in running.ctx.sessions if not s.finished and s.backend_name == backend
    )
