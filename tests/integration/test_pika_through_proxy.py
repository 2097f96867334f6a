"""Real clients (pika, blocking) through the proxy to the real RabbitMQ."""

from __future__ import annotations

import asyncio
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pika
import pika.exceptions
import pytest

from amqpprox.amqp.frames import (
    FRAME_HEARTBEAT,
    PROTOCOL_HEADER,
    Frame,
    FrameReader,
    NeedData,
)
from amqpprox.amqp.methods import ConnectionTuneOk, decode_method
from amqpprox.runtime import Runtime, SimpleMode
from tests.conftest import BROKER_HOST, BROKER_PORT, RunningProxy, ctl, make_settings
from tests.faults import FaultyForwarder

pytestmark = pytest.mark.broker


def _params(
    proxy: RunningProxy, vhost: str = "/", password: str = "guest", **kw: object
) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        "127.0.0.1",
        proxy.port,
        vhost,
        pika.PlainCredentials("guest", password),
        connection_attempts=1,
        socket_timeout=5,
        blocked_connection_timeout=10,
        **kw,  # type: ignore[arg-type]
    )


def _roundtrip(params: pika.ConnectionParameters, count: int, size: int) -> list[bytes]:
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        queue = ch.queue_declare("", exclusive=True).method.queue
        sent = [bytes([i % 251]) * size for i in range(count)]
        for body in sent:
            ch.basic_publish("", queue, body, mandatory=True)  # raises unless confirmed
        got: list[bytes] = []
        for method, _props, body in ch.consume(queue, inactivity_timeout=5):
            if method is None:
                break
            got.append(body)
            ch.basic_ack(method.delivery_tag)
            if len(got) == count:
                break
        ch.cancel()
        return got
    finally:
        conn.close()


async def test_publish_consume_with_confirms_in_order(proxy: RunningProxy) -> None:
    sent = [bytes([i % 251]) * 100 for i in range(500)]
    got = await asyncio.to_thread(_roundtrip, _params(proxy), 500, 100)
    assert got == sent


async def test_one_mebibyte_messages_cross_as_many_frames(proxy: RunningProxy) -> None:
    got = await asyncio.to_thread(_roundtrip, _params(proxy), 5, 1024 * 1024)
    assert [len(b) for b in got] == [1024 * 1024] * 5
    assert [b[0] for b in got] == [0, 1, 2, 3, 4]


async def test_heartbeats_pass_through(tmp_socket_dir: str) -> None:
    """With a 1 s heartbeat, a connection idle for 3.5 s stays open: heartbeat frames cross
    the proxy both ways. Recording taps on both sides of the proxy (client - tap - proxy -
    tap - broker) count the frames of type 8 that came out of it; the proxy makes none of
    its own, so they are the client's and the broker's."""
    client_tap = await FaultyForwarder(("127.0.0.1", 0), record=True).start()
    broker_tap = await FaultyForwarder((BROKER_HOST, BROKER_PORT), record=True).start()
    runtime = Runtime(make_settings(tmp_socket_dir))
    await runtime.start()
    try:
        port = await runtime.configure_simple(SimpleMode(0, "127.0.0.1", broker_tap.port))
        client_tap.target = ("127.0.0.1", port)
        proxy = RunningProxy(runtime, port, runtime.settings.control_socket)

        def idle() -> bool:
            params = _params(proxy, heartbeat=1)
            params.port = client_tap.port
            conn = pika.BlockingConnection(params)
            try:
                conn.sleep(3.5)  # pika services heartbeats while it sleeps
                ch = conn.channel()
                ch.queue_declare("", exclusive=True)
                return conn.is_open
            finally:
                conn.close()

        assert await asyncio.to_thread(idle)
    finally:
        await runtime.stop()
        await client_tap.stop()
        await broker_tap.stop()
    [(from_client, to_client)] = client_tap.recorded
    [(to_broker, from_broker)] = broker_tap.recorded
    # The broker was told the client's 1 s heartbeat (the proxy replays its TuneOk).
    [tune_ok] = [f for f in _frames(to_broker) if f.payload[:4] == b"\x00\x0a\x00\x1f"]
    negotiated = decode_method(tune_ok.payload)
    assert isinstance(negotiated, ConnectionTuneOk) and negotiated.heartbeat == 1
    # Every 0.5 s each way while idle; at least two of each crossed the proxy.
    assert _heartbeats(to_broker) >= 2, "no client heartbeat reached the broker"
    assert _heartbeats(to_client) >= 2, "no broker heartbeat reached the client"
    # None invented on the way (those the client sent before Open stay at the proxy).
    assert _heartbeats(to_broker) <= _heartbeats(from_client)
    assert _heartbeats(to_client) <= _heartbeats(from_broker)


def _frames(stream: bytes | bytearray) -> list[Frame]:
    """The frames of one direction of a recorded connection (after any protocol header)."""
    reader = FrameReader(1 << 20)
    reader.feed(bytes(stream).removeprefix(PROTOCOL_HEADER))
    frames = []
    while not isinstance(frame := reader.next_frame(), NeedData):
        frames.append(frame)
    return frames


def _heartbeats(stream: bytes | bytearray) -> int:
    return sum(frame.type == FRAME_HEARTBEAT for frame in _frames(stream))


async def test_bad_password_reaches_client_as_403(proxy: RunningProxy) -> None:
    def connect() -> BaseException:
        try:
            pika.BlockingConnection(_params(proxy, password="wrong"))
        except pika.exceptions.AMQPConnectionError as error:
            return error
        raise AssertionError("connected with a wrong password")

    error = await asyncio.to_thread(connect)
    # The client is past Tune when the broker refuses, so pika files it as a probable
    # access denial; the broker's own code and text are what matter.
    assert "(403) 'ACCESS_REFUSED - Login was refused" in repr(error), repr(error)


async def test_unknown_vhost_on_broker_reaches_client_as_530(proxy: RunningProxy) -> None:
    def connect() -> BaseException:
        try:
            pika.BlockingConnection(_params(proxy, vhost="no-such-vhost-on-broker"))
        except pika.exceptions.AMQPConnectionError as error:
            return error
        raise AssertionError("opened a vhost the broker does not have")

    error = await asyncio.to_thread(connect)
    assert "530" in repr(error), repr(error)


async def test_client_properties_visible_in_rabbitmq(proxy: RunningProxy) -> None:
    def connect_and_list() -> str:
        conn = pika.BlockingConnection(
            _params(proxy, client_properties={"connection_name": "amqpprox-props-test"})
        )
        try:
            out = subprocess.run(
                ["rabbitmqctl", "-q", "list_connections", "client_properties"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            return "\n".join(line for line in out.splitlines() if "amqpprox-props-test" in line)
        finally:
            conn.close()

    line = await asyncio.to_thread(connect_and_list)
    assert "amqpprox_client" in line
    assert "amqpprox_host" in line
    session = max(proxy.ctx.sessions, key=lambda s: s.id)
    assert f"127.0.0.1:{session.client[1]}" in line
    assert f"(:{proxy.port}) " in line


async def test_fifty_concurrent_connections(proxy: RunningProxy) -> None:
    def one(i: int) -> bytes:
        conn = pika.BlockingConnection(_params(proxy))
        try:
            ch = conn.channel()
            queue = ch.queue_declare("", exclusive=True).method.queue
            ch.basic_publish("", queue, f"m{i}".encode())
            for _ in range(50):
                method, _props, body = ch.basic_get(queue, auto_ack=True)
                if method is not None:
                    return body
                conn.sleep(0.05)
            raise AssertionError("message not delivered")
        finally:
            conn.close()

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=50) as pool:  # 50 connections open at once
        bodies = await asyncio.gather(*(loop.run_in_executor(pool, one, i) for i in range(50)))
    assert proxy.ctx.sessions.opened_total == 50
    assert sorted(bodies) == sorted(f"m{i}".encode() for i in range(50))


async def test_conn_lists_live_session_with_counters(proxy: RunningProxy) -> None:
    conn = await asyncio.to_thread(pika.BlockingConnection, _params(proxy))
    try:
        ch = await asyncio.to_thread(conn.channel)
        await asyncio.to_thread(ch.queue_declare, "", exclusive=True)
        reply = await ctl(proxy.control_socket, "CONN")
    finally:
        await asyncio.to_thread(conn.close)
    [line] = [ln for ln in reply.splitlines() if "disconnected=N" in ln]
    assert line.startswith("id=") and " vhost=/ " in line
    fields = dict(part.split("=", 1) for part in line.split()[:-1])
    assert fields["egressRemote"].endswith(f":{BROKER_PORT}")
    # Counted after Open: Channel.Open and Queue.Declare in, their two replies out.
    assert int(fields["inFrames"]) == 2 and int(fields["outFrames"]) == 2
    assert int(fields["inBytes"]) > 0 and int(fields["outBytes"]) > 0
