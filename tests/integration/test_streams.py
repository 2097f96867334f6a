"""RabbitMQ Streams through the proxy: a real client (rstream) and raw frames.

The shared broker's ``rabbitmq_stream`` plugin is enabled if 127.0.0.1:5552 does not
answer (never restarted). The proxy runs in simple mode in front of the broker, with a
stream listener added; the backend's stream port is the broker's 5552.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from rstream import (
    AMQPMessage,
    ConfirmationStatus,
    Consumer,
    ConsumerOffsetSpecification,
    MessageContext,
    OffsetType,
    Producer,
    amqp_decoder,
)

from amqpprox.core import operations as ops
from amqpprox.stream import codec
from tests.conftest import (
    BROKER_PASSWORD,
    BROKER_USER,
    RunningProxy,
    ctl,
    free_closed_port,
    running_proxy,
)
from tests.polling import until
from tests.rawstream import (
    CREATE,
    DELETE,
    RawStream,
    handshaked,
    request,
    stream_plugin,  # noqa: F401 (autouse)
    string,
)

pytestmark = pytest.mark.timeout(120)
MESSAGES = 10_000


@pytest.fixture
async def streams(tmp_socket_dir: str) -> AsyncIterator[tuple[RunningProxy, int]]:
    """A proxy in simple mode in front of the broker, with a stream listener."""
    async with running_proxy(tmp_socket_dir) as running:
        port = await ops.start_listener(running.ctx, 0, host="127.0.0.1", protocol="stream")
        yield running, port


def _stream_peer_ports() -> list[int]:
    """The peer port of every stream connection the broker has (all peers are loopback)."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_stream_connections", "--formatter", "json", "peer_port"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [int(row["peer_port"]) for row in json.loads(out or "[]")]


async def test_rstream_publishes_with_confirms_and_consumes_all_through_the_proxy(
    streams: tuple[RunningProxy, int],
) -> None:
    running, port = streams
    stream = f"amqpprox-test-{uuid.uuid4().hex[:8]}"
    confirmed: list[int] = []

    def on_confirm(status: ConfirmationStatus) -> None:
        if status.is_confirmed:
            confirmed.append(status.message_id)

    producer = Producer(
        "127.0.0.1", port, username=BROKER_USER, password=BROKER_PASSWORD, connection_name="p1"
    )
    await producer.start()
    try:
        await producer.create_stream(stream, exists_ok=True)
        for start in range(0, MESSAGES, 500):
            batch = [AMQPMessage(body=f"m{i}".encode()) for i in range(start, start + 500)]
            await producer.send_batch(stream, batch, on_publish_confirm=on_confirm)
        await until(lambda: len(confirmed) >= MESSAGES)
        # The broker sees the proxy, never the client: every stream connection's peer is
        # the proxy's egress address, and the client reached only the proxy's port.
        egress = {
            s.egress_local[1]
            for s in running.ctx.sessions
            if s.protocol == "stream" and not s.finished
        }
        clients = {
            s.client[1] for s in running.ctx.sessions if s.protocol == "stream" and not s.finished
        }
        peers = set(await asyncio.to_thread(_stream_peer_ports))
        assert egress and egress <= peers
        assert not clients & peers  # no client connection of ours reached the broker
        for session in running.ctx.sessions:
            if session.protocol == "stream":
                assert session.local[1] == port
        received: list[bytes] = []
        consumer = Consumer("127.0.0.1", port, username=BROKER_USER, password=BROKER_PASSWORD)
        await consumer.start()

        def on_message(message: AMQPMessage, context: MessageContext) -> None:
            received.append(bytes(message.body))

        await consumer.subscribe(
            stream,
            on_message,
            decoder=amqp_decoder,
            offset_specification=ConsumerOffsetSpecification(OffsetType.FIRST, None),
        )
        await until(lambda: len(received) >= MESSAGES)
        assert received == [f"m{i}".encode() for i in range(MESSAGES)]
        await consumer.close()
    finally:
        await producer.delete_stream(stream, missing_ok=True)
        await producer.close()
    # The sessions' counters are what CONN shows; stream sessions are listed there.
    conn = await ctl(running.control_socket, "CONN")
    assert "vhost=/" in conn


async def test_metadata_names_only_proxy_endpoints(
    streams: tuple[RunningProxy, int], caplog: pytest.LogCaptureFixture
) -> None:
    _running, port = streams
    async with handshaked(port) as client:
        code, props = await client.open("/")
        assert code == codec.OK
        assert (props["advertised_host"], props["advertised_port"]) == ("127.0.0.1", str(port))
        stream = f"amqpprox-meta-{uuid.uuid4().hex[:8]}"
        name = string(stream)
        client.send(request(CREATE, 5, name + b"\x00\x00\x00\x00"))
        created = await client.frame_of(CREATE | codec.RESPONSE)
        assert codec.response_code(created.body) == (5, codec.OK)
        try:
            client.send(request(codec.METADATA, 6, b"\x00\x00\x00\x01" + name))
            got = await client.frame_of(codec.METADATA | codec.RESPONSE)
            brokers = codec.read_metadata_brokers(got.body)
            assert brokers
            assert {(host, p) for _ref, host, p in brokers} == {("127.0.0.1", port)}
            # No node listener for the broker's node: the client's listener, logged.
            lost = [r for r in caplog.records if "locality is lost" in r.getMessage()]
            assert len(lost) == 1 and "default-backend" in lost[0].getMessage()
        finally:
            client.send(request(DELETE, 7, name))
            await client.frame_of(DELETE | codec.RESPONSE)


async def test_bad_password_gets_the_brokers_authentication_failure(
    streams: tuple[RunningProxy, int],
) -> None:
    _running, port = streams
    client = await RawStream.connect(port)
    try:
        await client.handshake(password="not-the-password")
        code, _props = await client.open("/")
        assert code == codec.AUTHENTICATION_FAILURE
        close = await client.frame_of(codec.CLOSE)
        assert b"authentication failure" in close.body
    finally:
        client.close()


async def test_unknown_vhost_gets_the_brokers_vhost_access_failure(
    streams: tuple[RunningProxy, int],
) -> None:
    _running, port = streams
    async with handshaked(port) as client:
        code, _props = await client.open("no-such-vhost-here")
        assert code == codec.VIRTUAL_HOST_ACCESS_FAILURE


async def test_unmapped_vhost_gets_an_error_naming_it(tmp_socket_dir: str) -> None:
    async with running_proxy(tmp_socket_dir, simple=False) as running:
        port = await ops.start_listener(running.ctx, 0, host="127.0.0.1", protocol="stream")
        async with handshaked(port) as client:
            code, _props = await client.open("unmapped-vh")
            assert code == codec.VIRTUAL_HOST_ACCESS_FAILURE
            corr, code, reason = await client.close_frame()
            assert code == codec.VIRTUAL_HOST_ACCESS_FAILURE
            assert reason == "No known broker mapping for vhost unmapped-vh"
            client.send(codec.close_response(corr))
            assert await client.closed()


async def test_graceful_disconnect_sends_a_stream_close(streams: tuple[RunningProxy, int]) -> None:
    running, port = streams
    async with handshaked(port) as client:
        code, _props = await client.open("/")
        assert code == codec.OK
        [session] = [s for s in running.ctx.sessions if s.protocol == "stream"]
        reply = await ctl(running.control_socket, f"SESSION {session.id} DISCONNECT_GRACEFUL")
        assert reply == ""
        corr, code, _reason = await client.close_frame()
        assert code == codec.OK
        client.send(codec.close_response(corr))
        assert await client.closed()
        await until(lambda: session.finished)
        assert session.close_reason is not None
        assert session.close_reason.name == "PROXY_GRACEFUL"


async def test_listen_start_stream_control_command(tmp_socket_dir: str) -> None:
    async with running_proxy(tmp_socket_dir) as running:
        path = running.control_socket
        port = free_closed_port()
        reply = await ctl(path, f"LISTEN START_STREAM {port} NODE no-such-backend")
        assert reply == "backend 'no-such-backend' not found\n"
        assert await ctl(path, f"LISTEN START_STREAM {port} BOGUS") == "Unknown option: BOGUS\n"
        assert await ctl(path, f"LISTEN START {port} NODE x") == "Unknown option: NODE\n"
        assert await ctl(path, f"LISTEN START_STREAM {port} ADDRESS 127.0.0.1") == ""
        printed = await ctl(path, "LISTEN PRINT")
        assert f"port={port} address=127.0.0.1 tls=N proxyProtocol=N protocol=stream\n" in printed
        async with handshaked(port) as client:
            assert (await client.open("/"))[0] == codec.OK


async def test_bytes_and_frames_agree_across_conn_rest_and_metrics(
    streams: tuple[RunningProxy, int],
) -> None:
    running, port = streams
    async with handshaked(port) as client:
        assert (await client.open("/"))[0] == codec.OK
        for corr in (5, 6, 7):
            client.send(request(codec.METADATA, corr, b"\x00\x00\x00\x01\x00\x02no"))
            await client.frame_of(codec.METADATA | codec.RESPONSE)
        [session] = [s for s in running.ctx.sessions if s.protocol == "stream"]
        assert session.in_frames == 3 and session.out_frames >= 3
        line = next(
            each
            for each in (await ctl(running.control_socket, "CONN")).splitlines()
            if each.startswith(f"id={session.id} ")
        )
        conn = dict(field.split("=", 1) for field in line.split() if "=" in field)
        async with aiohttp.ClientSession() as http:
            url = f"{running.admin_url}/api/v1/sessions/{session.id}"
            async with http.get(url) as response:
                rest = await response.json()
            async with http.get(f"{running.admin_url}/metrics") as response:
                metrics = await response.text()
        assert rest["protocol"] == "stream"
        assert conn["ingressLocal"] == "127.0.0.1"
        for name, key in (
            ("inBytes", "in_bytes"),
            ("inFrames", "in_frames"),
            ("outBytes", "out_bytes"),
            ("outFrames", "out_frames"),
        ):
            assert int(conn[name]) == rest[key] == getattr(session, key)
        series = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("amqpprox_protocol_")
        }
        stream_in = 'protocol="stream",direction="client_to_broker"'
        stream_out = 'protocol="stream",direction="broker_to_client"'
        assert series[f"amqpprox_protocol_bytes_total{{{stream_in}}}"] == rest["in_bytes"]
        assert series[f"amqpprox_protocol_bytes_total{{{stream_out}}}"] == rest["out_bytes"]
        assert series[f"amqpprox_protocol_frames_total{{{stream_in}}}"] == rest["in_frames"]
        assert series[f"amqpprox_protocol_frames_total{{{stream_out}}}"] == rest["out_frames"]
        assert series['amqpprox_protocol_sessions{protocol="stream",state="active"}'] == 1
        listener = f'amqpprox_listener_protocol{{port="{port}",protocol="stream",node=""}} 1'
        assert listener in metrics.splitlines()
        amqp = f'amqpprox_listener_protocol{{port="{running.port}",protocol="amqp",node=""}} 1'
        assert amqp in metrics.splitlines()
