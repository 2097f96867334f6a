"""aio-pika (asyncio) through the proxy, on the same loop as the proxy itself."""

from __future__ import annotations

import asyncio

import aio_pika
import aiormq.exceptions
import pytest

from amqpprox.core import operations as ops
from tests.conftest import BROKER_PORT, RunningProxy, free_closed_port

pytestmark = pytest.mark.broker


async def _roundtrip(url: str, count: int, size: int) -> list[bytes]:
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(exclusive=True)
        for i in range(count):
            await channel.default_exchange.publish(
                aio_pika.Message(bytes([i % 251]) * size), routing_key=queue.name
            )
        got: list[bytes] = []
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    got.append(message.body)
                if len(got) == count:
                    break
        return got


async def test_publish_with_confirms_and_consume(proxy: RunningProxy) -> None:
    got = await asyncio.wait_for(_roundtrip(proxy.url(), 300, 100), 30)
    assert got == [bytes([i % 251]) * 100 for i in range(300)]


async def test_one_mebibyte_messages(proxy: RunningProxy) -> None:
    got = await asyncio.wait_for(_roundtrip(proxy.url(), 4, 1024 * 1024), 30)
    assert [len(b) for b in got] == [1024 * 1024] * 4


async def test_bad_password_is_refused(proxy: RunningProxy) -> None:
    """The broker's 403 arrives in answer to Open (the proxy only learns the vhost there).

    aiormq reports a Close in answer to Open as an invalid frame rather than an
    authentication error; pika and the wire-level tests show the 403 itself.
    """
    with pytest.raises(aiormq.exceptions.AMQPError) as info:
        await aio_pika.connect(proxy.url(password="wrong"), timeout=10)
    assert "Connection.Close" in str(info.value)


async def test_unknown_broker_vhost_fails_as_it_does_direct(proxy: RunningProxy) -> None:
    """aiormq reports a Close in answer to Open the same way through the proxy as direct."""
    direct_url = f"amqp://guest:guest@127.0.0.1:{BROKER_PORT}/nope-not-on-broker"
    with pytest.raises(aiormq.exceptions.AMQPError) as direct:
        await aio_pika.connect(direct_url, timeout=10)
    with pytest.raises(aiormq.exceptions.AMQPError) as proxied:
        await aio_pika.connect(proxy.url(vhost="nope-not-on-broker"), timeout=10)
    assert type(proxied.value) is type(direct.value)
    assert "Connection.Close" in str(proxied.value)


async def test_dead_first_farm_member_fails_over_to_second(bare_proxy: RunningProxy) -> None:
    ctx = bare_proxy.ctx
    await ops.add_backend(ctx, "dead", "dc1", "127.0.0.1", free_closed_port())
    await ops.add_backend(ctx, "alive", "dc1", "127.0.0.1", BROKER_PORT)
    ops.set_farm(ctx, "pair", ["dead", "alive"])
    ops.map_vhost_to_farm(ctx, "/", "pair")
    connection = await aio_pika.connect(bare_proxy.url(), timeout=10)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(exclusive=True)
    [session] = [s for s in ctx.sessions if s.backend_name is not None]
    assert session.backend_name == "alive"
    assert session.connect_failures == 1
