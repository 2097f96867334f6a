"""Traces against the real broker, with pika, aio-pika and a raw-socket client: what a
trace shows of a session, which sessions it follows, and that it stops by itself."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aio_pika
import pika
import pytest

from amqpprox.amqp.frames import FrameReader
from tests.conftest import RunningProxy, ctl, pika_params
from tests.polling import until
from tests.rawamqp import CHANNEL_OPEN, OPEN_CLIENTS, RawClient
from tests.trace.helpers import events, first, methods, rest

pytestmark = pytest.mark.broker


def _newest_session(proxy: RunningProxy) -> int:
    return max(s.id for s in proxy.ctx.sessions if not s.finished)


async def test_session_traces_show_publish_and_delivery(proxy: RunningProxy) -> None:
    exchange = f"trace-{uuid.uuid4().hex}"
    consumer = await aio_pika.connect(proxy.url(), timeout=10)
    try:
        consumer_id = _newest_session(proxy)
        started = await rest(proxy, "POST", "/traces", {"session": consumer_id}, status=201)
        assert started["state"] == "running" and started["filter"] == {"session": consumer_id}
        channel = await consumer.channel()
        await channel.set_qos(prefetch_count=10)
        ex = await channel.declare_exchange(exchange, "direct", auto_delete=True)
        queue = await channel.declare_queue("", exclusive=True)
        await queue.bind(ex, "orders.created")
        got: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        await queue.consume(got.put)

        publisher = await asyncio.to_thread(pika.BlockingConnection, pika_params(proxy.port))
        try:
            publisher_id = _newest_session(proxy)
            traced = await rest(proxy, "POST", "/traces", {"session": publisher_id}, status=201)

            def publish() -> None:
                ch = publisher.channel()
                ch.exchange_declare(exchange, "direct", passive=True)
                props = pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=2,
                    headers={"tenant": "acme", "attempt": 3},
                    correlation_id="corr-7",
                    reply_to="replies",
                )
                ch.basic_publish(exchange, "orders.created", b'{"id": 1}', props, mandatory=True)
                ch.close()

            await asyncio.to_thread(publish)
            message = await asyncio.wait_for(got.get(), 10)
            await message.ack()
            await channel.close()
            await until(lambda: len(proxy.ctx.traces.get(1).buffer) >= 20, "consumer frames")
        finally:
            await asyncio.to_thread(publisher.close)

        pub = await events(proxy, traced["id"])
        assert {e["session"] for e in pub} == {publisher_id}
        names = methods(pub)
        assert names[0] == "Channel.Open" and "Channel.Close" in names
        assert "Exchange.Declare" in names
        publish_event = first(pub, "Basic.Publish")
        assert publish_event["direction"] == "client_to_broker"
        assert publish_event["arguments"]["exchange"] == exchange
        assert publish_event["arguments"]["routing_key"] == "orders.created"
        assert publish_event["arguments"]["mandatory"] is True
        header = next(e for e in pub if e["type"] == "header")
        assert header["body_size"] == len(b'{"id": 1}')
        assert header["properties"] == {
            "content_type": "application/json",
            "delivery_mode": 2,
            "headers": {"tenant": "acme", "attempt": 3},
            "correlation_id": "corr-7",
            "reply_to": "replies",
        }
        body = next(e for e in pub if e["type"] == "body")
        assert body["body_size"] == 9 and "body_base64" not in body  # bodies are off

        con = await events(proxy, started["id"])
        names = methods(con)
        for expected in ("Channel.Open", "Exchange.Declare", "Queue.Declare", "Basic.Consume"):
            assert expected in names
        deliver = first(con, "Basic.Deliver")
        assert deliver["direction"] == "broker_to_client"
        args: dict[str, Any] = deliver["arguments"]
        assert args["exchange"] == exchange and args["routing_key"] == "orders.created"
        assert args["delivery_tag"] == 1 and args["redelivered"] is False
        assert args["consumer_tag"]
        ack = first(con, "Basic.Ack")
        assert ack["direction"] == "client_to_broker" and ack["arguments"]["delivery_tag"] == 1
        assert first(con, "Basic.Qos")["arguments"]["prefetch_count"] == 10
        assert "Channel.Close" in names
    finally:
        await consumer.close()


async def test_vhost_trace_follows_a_session_opened_later(proxy: RunningProxy) -> None:
    reply = await ctl(proxy.control_socket, "TRACE START VHOST / BODIES")
    assert reply == "Trace 1 started\n"
    conn = await asyncio.to_thread(pika.BlockingConnection, pika_params(proxy.port))
    try:
        session_id = _newest_session(proxy)

        def work() -> None:
            ch = conn.channel()
            q = ch.queue_declare("", exclusive=True).method.queue
            ch.basic_publish("", q, b"traced body")
            ch.close()

        await asyncio.to_thread(work)
    finally:
        await asyncio.to_thread(conn.close)
    found = await events(proxy, 1)
    assert {e["session"] for e in found} == {session_id}
    body = next(e for e in found if e["type"] == "body")
    assert body["body_base64"] == "dHJhY2VkIGJvZHk=" and body["body_truncated"] is False
    printed = await ctl(proxy.control_socket, "TRACE PRINT")
    assert printed.startswith("id=1 filter=VHOST:/ state=running frames=")
    assert "bodies=Y" in printed
    assert (await ctl(proxy.control_socket, "TRACE STOP 1")).startswith("Trace 1 stopped: ")
    state = await rest(proxy, "GET", "/traces/1")
    assert state["state"] == "stopped" and state["stop_reason"] == "requested"
    assert state["sessions"] == [session_id]


async def _raw_client(port: int, host: str) -> RawClient:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))
    client = RawClient(reader, writer, FrameReader(1 << 20))
    OPEN_CLIENTS.append(client)
    return client


async def test_source_trace_ignores_other_clients_whose_bytes_are_untouched(
    proxy: RunningProxy,
) -> None:
    traced = await rest(proxy, "POST", "/traces", {"source": "127.0.0.2"}, status=201)
    other = await _raw_client(proxy.port, "127.0.0.1")
    mine = await _raw_client(proxy.port, "127.0.0.2")
    replies: list[bytes] = []
    for client in (other, mine):
        assert type(await client.open()).__name__ == "ConnectionOpenOk"
        await client.send(CHANNEL_OPEN)
        frame = await client.read_frame()
        replies.append(frame.payload)
    # The same request got the same bytes back, traced or not.
    assert replies[0] == replies[1] == b"\x00\x14\x00\x0b\x00\x00\x00\x00"
    sessions = {s.client[0]: s for s in proxy.ctx.sessions}
    untraced, tapped = sessions["127.0.0.1"], sessions["127.0.0.2"]
    # The untraced session reads straight into the relay: exactly today's hot path.
    assert untraced.client_side.on_data == untraced.relay.client_data
    assert untraced.broker_side.on_data == untraced.relay.broker_data
    assert tapped.client_side.on_data != tapped.relay.client_data
    found = await events(proxy, traced["id"])
    assert {e["session"] for e in found} == {tapped.id}
    assert methods(found) == ["Channel.Open", "Channel.OpenOk"]
    await rest(proxy, "DELETE", f"/traces/{traced['id']}")
    # Stopped: the session is back on the relay's own entry points.
    assert tapped.client_side.on_data == tapped.relay.client_data


async def test_max_frames_and_max_seconds_stop_a_trace(proxy: RunningProxy) -> None:
    counted = await rest(proxy, "POST", "/traces", {"vhost": "/", "max_frames": 3}, status=201)
    timed = await rest(proxy, "POST", "/traces", {"vhost": "/", "max_seconds": 0.2}, status=201)
    client = await _raw_client(proxy.port, "127.0.0.1")
    await client.open()
    for channel in range(1, 4):
        await client.send(CHANNEL_OPEN[:1] + channel.to_bytes(2, "big") + CHANNEL_OPEN[3:])
        await client.read_frame()
    state = await rest(proxy, "GET", f"/traces/{counted['id']}")
    assert (state["state"], state["stop_reason"], state["frames"]) == ("stopped", "max_frames", 3)
    assert state["stopped_at"] >= state["started_at"]
    traces = proxy.ctx.traces

    await until(lambda: not traces.get(timed["id"]).running, "the max_seconds stop", 5)
    state = await rest(proxy, "GET", f"/traces/{timed['id']}")
    assert (state["state"], state["stop_reason"]) == ("stopped", "max_seconds")
    listed = await rest(proxy, "GET", "/traces")
    assert [t["id"] for t in listed["items"]] == [counted["id"], timed["id"]]
    assert not proxy.runtime.plane.taps  # no trace left running: no session is tapped


async def test_a_session_trace_ends_with_its_session(proxy: RunningProxy) -> None:
    client = await _raw_client(proxy.port, "127.0.0.1")
    await client.open()
    session_id = _newest_session(proxy)
    traced = await rest(proxy, "POST", "/traces", {"session": session_id}, status=201)
    await client.close()
    client.writer.close()
    trace = proxy.ctx.traces.get(traced["id"])
    await until(lambda: not trace.running, "the trace to stop with its session")
    state = await rest(proxy, "GET", f"/traces/{traced['id']}")
    assert state["stop_reason"] == "session_ended"
    assert methods(await events(proxy, traced["id"])) == ["Connection.Close", "Connection.CloseOk"]
