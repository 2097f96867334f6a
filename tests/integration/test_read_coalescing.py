"""Read coalescing (``--coalesceReadsMs``) with real clients and the real broker.

A consumer that only receives, and a publisher that only sends, are one-way streams:
their sockets are left unread for the window between reads, and every message still
arrives, whole and in order. A request/reply client alternates sides and is not held, so
even a window of 1 s costs its round trips nothing. With the setting off (the default)
nothing waits. The rule itself, read by read, is in tests/unit/test_coalescing.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from amqpprox.proxy import coalescing
from bench.rawamqp import Target
from bench.scenarios import Params, run_throughput
from tests.conftest import BROKER_HOST, BROKER_PORT, RunningProxy, running_proxy
from tests.integration.test_statistics import scrape, value

pytestmark = pytest.mark.broker

BODY_SIZE = 2048  # deliveries of about 2 KiB: reads the coalescing rule can hold
MESSAGES = 3000


@contextlib.contextmanager
def _channel(port: int | None = None) -> Iterator[BlockingChannel]:
    """A pika channel through the proxy on ``port`` (named for ``_session_named``), or
    straight to the broker; its connection closes on exit (waiting for CloseOk)."""
    if port is None:
        params = pika.ConnectionParameters(BROKER_HOST, BROKER_PORT)
    else:
        params = pika.ConnectionParameters(
            "127.0.0.1",
            port,
            "/",
            pika.PlainCredentials("guest", "guest"),
            connection_attempts=1,
            socket_timeout=5,
            client_properties={"connection_name": "coalescing-test"},
        )
    conn = pika.BlockingConnection(params)
    try:
        yield conn.channel()
    finally:
        conn.close()


def _body(index: int) -> bytes:
    return index.to_bytes(4, "big") * (BODY_SIZE // 4)


def _index(body: bytes) -> int:
    return int.from_bytes(body[:4], "big")


def _fill_queue_directly(queue: str, count: int) -> None:
    """Declare ``queue`` on the broker (not through the proxy) and put ``count`` messages in it."""
    with _channel() as ch:
        ch.queue_declare(queue, auto_delete=False, arguments={"x-expires": 60_000})
        ch.confirm_delivery()
        for index in range(count):
            ch.basic_publish("", queue, _body(index))


def _consume_no_ack(port: int, queue: str, count: int) -> list[int]:
    """Through the proxy: consume ``count`` messages without acks (the broker only sends)."""
    with _channel(port) as ch:
        seen: list[int] = []
        for method, _props, body in ch.consume(queue, auto_ack=True, inactivity_timeout=10):
            if method is None:
                break
            assert body == _body(_index(body))
            seen.append(_index(body))
            if len(seen) == count:
                break
        ch.cancel()
        ch.queue_delete(queue)
        return seen


def _request_reply(port: int, rounds: int, size: int) -> float:
    """Publish one message, wait for its delivery, ``rounds`` times; the seconds it took."""
    with _channel(port) as ch:
        queue = ch.queue_declare("", exclusive=True).method.queue
        started = time.monotonic()
        for index in range(rounds):
            ch.basic_publish("", queue, index.to_bytes(4, "big") * (size // 4))
            got = None
            deadline = time.monotonic() + 5
            while got is None and time.monotonic() < deadline:
                method, _props, body = ch.basic_get(queue, auto_ack=True)
                if method is not None:
                    got = body
            assert got is not None and _index(got) == index
        return time.monotonic() - started


def _publish_no_confirms(port: int, queue: str, count: int) -> None:
    """Through the proxy: publish ``count`` messages, no confirms (the client only sends).

    Returns once the connection's Close is answered: the broker has read every publish."""
    with _channel(port) as ch:
        for index in range(count):
            ch.basic_publish("", queue, _body(index))


def _drain_directly(queue: str, count: int) -> list[int]:
    with _channel() as ch:
        seen: list[int] = []
        while len(seen) < count:
            method, _props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                break
            seen.append(_index(body))
        ch.queue_delete(queue)
        return seen


async def _session_named(proxy: RunningProxy, name: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{proxy.admin_url}/api/v1/sessions", params={"page_size": "500"}) as resp,
    ):
        assert resp.status == 200
        items = (await resp.json())["items"]
    matching = [s for s in items if s.get("connection_name") == name]
    assert matching, f"no session named {name} in {items}"
    return matching[-1]


async def test_a_streaming_consumer_is_read_in_batches_and_gets_every_message(
    tmp_socket_dir: str,
) -> None:
    # The benchmark's load generator: a producer and a no-ack consumer, each a process of
    # its own, through the proxy. It fails unless the consumer counts every delivery.
    count, size = 40_000, 1024
    async with running_proxy(tmp_socket_dir, coalesce_reads_ms=1) as proxy:
        target = Target("127.0.0.1", proxy.port)
        result = await asyncio.to_thread(run_throughput, target, count, size, Params.quick())
        consumer = max(proxy.ctx.sessions, key=lambda s: s.out_bytes)
        waits, reads, received = (
            consumer.out_coalesce_waits,
            consumer.out_packets,
            consumer.out_bytes,
        )
        in_waits = sum(s.in_coalesce_waits for s in proxy.ctx.sessions)
        out_waits = sum(s.out_coalesce_waits for s in proxy.ctx.sessions)
        samples = await scrape(proxy.admin_url)
    assert result["messages"] == count
    # The deliveries streamed: the broker's socket was left unread between reads, and
    # each read carried many deliveries.
    assert waits > 0
    assert received > count * size
    assert reads < count // 4, f"{reads} reads for {count} deliveries"
    # Prometheus sums the waits per vhost, backend and direction.
    labels = {"vhost": "/", "backend": "default-backend"}
    metric = "amqpprox_coalesce_waits_total"
    assert value(samples, metric, direction="broker_to_client", **labels) == out_waits >= waits
    assert value(samples, metric, direction="client_to_broker", **labels) == in_waits


async def test_deliveries_stay_whole_and_in_order_through_a_coalescing_proxy(
    tmp_socket_dir: str,
) -> None:
    queue = f"coalesce-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(_fill_queue_directly, queue, MESSAGES)
    async with running_proxy(tmp_socket_dir, coalesce_reads_ms=2) as proxy:
        seen = await asyncio.to_thread(_consume_no_ack, proxy.port, queue, MESSAGES)
    assert seen == list(range(MESSAGES))


async def test_a_publisher_stream_is_read_in_batches_and_every_message_lands(
    tmp_socket_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pika publishes from Python and writes a publish's frames in pieces (the body apart
    # from the method and header): on a busy machine its writes come more than the 300 us
    # apart that make a stream, and some are under 1 KiB. What is tested here is the rule
    # batching a publisher's stream, not pika's speed: a gap and a size any publisher loop
    # keeps to (the proxy runs in this process, so its module constants are the test's).
    monkeypatch.setattr(coalescing, "STREAMING_GAP", 0.01)
    monkeypatch.setattr(coalescing, "MIN_READ", 16)
    queue = f"coalesce-pub-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(_fill_queue_directly, queue, 0)
    async with running_proxy(tmp_socket_dir, coalesce_reads_ms=2) as proxy:
        await asyncio.to_thread(_publish_no_confirms, proxy.port, queue, MESSAGES)
        session = await _session_named(proxy, "coalescing-test")
    assert session["in_coalesce_waits"] > 0
    assert session["in_packets"] < MESSAGES
    assert await asyncio.to_thread(_drain_directly, queue, MESSAGES) == list(range(MESSAGES))


async def test_request_reply_is_not_held_even_with_a_long_window(tmp_socket_dir: str) -> None:
    """The window is 1 s, so that a wrongly held round trip costs a second where a right
    one costs milliseconds: the bound below cannot be missed by a slow machine, and is
    missed by any defect. The count of waits says it exactly: none."""
    rounds = 20
    async with running_proxy(tmp_socket_dir, coalesce_reads_ms=1000) as proxy:
        elapsed = await asyncio.to_thread(_request_reply, proxy.port, rounds, 4096)
        session = await _session_named(proxy, "coalescing-test")
    assert (session["in_coalesce_waits"], session["out_coalesce_waits"]) == (0, 0), session
    # Held once per round trip, 20 round trips would take at least 20 s.
    assert elapsed < 10.0, f"{rounds} round trips took {elapsed:.2f} s"


async def test_off_by_default_nothing_waits(proxy: RunningProxy) -> None:
    queue = f"coalesce-off-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(_fill_queue_directly, queue, 500)
    seen = await asyncio.to_thread(_consume_no_ack, proxy.port, queue, 500)
    assert seen == list(range(500))
    session = await _session_named(proxy, "coalescing-test")
    assert session["out_coalesce_waits"] == 0
    assert session["in_coalesce_waits"] == 0
