"""Stream sessions under the same control as AMQP ones: node listeners, pause, force,
VHOST commands, limits, frame-size checks and handshake errors (raw frames)."""

from __future__ import annotations

import struct
import uuid
from collections.abc import AsyncIterator

import pytest

from amqpprox.core import operations as ops
from amqpprox.stream import codec
from tests.conftest import RunningProxy, ctl, running_proxy
from tests.faults import FaultyForwarder
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

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def streams(tmp_socket_dir: str) -> AsyncIterator[tuple[RunningProxy, int]]:
    async with running_proxy(tmp_socket_dir, limit_close_delay=0.01) as running:
        port = await ops.start_listener(running.ctx, 0, host="127.0.0.1", protocol="stream")
        yield running, port


async def _opened(port: int, vhost: str = "/") -> RawStream:
    client = await RawStream.connect(port)
    await client.handshake()
    code, _props = await client.open(vhost)
    assert code == codec.OK
    return client


async def _metadata(client: RawStream, stream: str, corr: int) -> list[tuple[int, str, int]]:
    client.send(request(codec.METADATA, corr, b"\x00\x00\x00\x01" + string(stream)))
    got = await client.frame_of(codec.METADATA | codec.RESPONSE)
    return codec.read_metadata_brokers(got.body)


def _stream_sessions(running: RunningProxy) -> list:  # type: ignore[type-arg]
    return [s for s in running.ctx.sessions if s.protocol == "stream" and not s.finished]


async def test_node_listener_pins_its_backend_and_metadata_names_it(
    tmp_socket_dir: str,
) -> None:
    """Two backends (the broker, and a relay in front of the same broker) in a farm; a
    node listener for the second: its sessions all reach it, and Metadata for the node
    the broker advertises names the node listener of the backend it was learnt from."""
    relay = await FaultyForwarder(("127.0.0.1", 5552)).start()
    async with running_proxy(tmp_socket_dir, simple=False) as running:
        ctx = running.ctx
        await ops.add_backend(ctx, "direct", "dc", "127.0.0.1", 5672)
        await ops.add_backend(ctx, "relayed", "dc", "127.0.0.1", 5672, stream_port=relay.port)
        ops.set_farm(ctx, "both", ["direct", "relayed"])
        ops.set_default_farm(ctx, "both")
        main = await ops.start_listener(ctx, 0, host="127.0.0.1", protocol="stream")
        node = await ops.start_listener(ctx, 0, host="127.0.0.1", protocol="stream", node="relayed")
        clients = [await _opened(node) for _ in range(3)]
        try:
            assert {s.backend_name for s in _stream_sessions(running)} == {"relayed"}
            assert relay.accepted == 3
            # Through the main listener, a Metadata response names the node listener of
            # the backend whose Open advertised that node (the vhost now maps to it).
            ops.map_vhost_to_backend(ctx, "/", "relayed")
            client = await _opened(main)
            clients.append(client)
            stream = f"amqpprox-node-{uuid.uuid4().hex[:8]}"
            client.send(request(CREATE, 5, string(stream) + b"\x00\x00\x00\x00"))
            await client.frame_of(CREATE | codec.RESPONSE)
            try:
                brokers = await _metadata(client, stream, 6)
                assert {(host, p) for _r, host, p in brokers} == {("127.0.0.1", node)}
            finally:
                client.send(request(DELETE, 7, string(stream)))
                await client.frame_of(DELETE | codec.RESPONSE)
        finally:
            for each in clients:
                each.close()
            await relay.stop()


async def test_node_listener_for_an_unknown_backend_is_refused(tmp_socket_dir: str) -> None:
    async with running_proxy(tmp_socket_dir) as running:
        reply = await ctl(running.control_socket, "LISTEN START_STREAM 1 NODE ghost")
        assert reply == "backend 'ghost' not found\n"


async def test_pause_stops_reading_and_unpause_resumes(
    streams: tuple[RunningProxy, int],
) -> None:
    running, port = streams
    client = await _opened(port)
    try:
        [session] = _stream_sessions(running)
        assert await ctl(running.control_socket, f"SESSION {session.id} PAUSE") == ""
        client.send(request(codec.METADATA, 9, b"\x00\x00\x00\x01" + string("nope")))
        with pytest.raises(TimeoutError):
            await client.frame_of(codec.METADATA | codec.RESPONSE, timeout=0.3)
        assert await ctl(running.control_socket, f"SESSION {session.id} UNPAUSE") == ""
        got = await client.frame_of(codec.METADATA | codec.RESPONSE)
        assert codec.correlation_of(got.body) == 9
    finally:
        client.close()


async def test_force_disconnect_cuts_the_stream_session(
    streams: tuple[RunningProxy, int],
) -> None:
    running, port = streams
    client = await _opened(port)
    try:
        [session] = _stream_sessions(running)
        reply = await ctl(running.control_socket, f"SESSION {session.id} FORCE_DISCONNECT")
        assert reply == ""
        assert await client.closed()
        await until(lambda: session.finished, "the session to end")
        assert session.close_reason is not None
        assert session.close_reason.name == "PROXY_FORCED"
    finally:
        client.close()


async def test_vhost_force_disconnect_acts_on_stream_sessions(
    streams: tuple[RunningProxy, int],
) -> None:
    running, port = streams
    clients = [await _opened(port), await _opened(port)]
    try:
        assert await ctl(running.control_socket, "VHOST FORCE_DISCONNECT /") == ""
        for client in clients:
            assert await client.closed()
    finally:
        for client in clients:
            client.close()


async def test_vhost_pause_holds_a_new_stream_session_at_open(
    streams: tuple[RunningProxy, int],
) -> None:
    running, port = streams
    assert await ctl(running.control_socket, "VHOST PAUSE /") == ""
    async with handshaked(port) as client:
        client.send(request(codec.OPEN, 4, string("/")))
        with pytest.raises(TimeoutError):
            await client.frame_of(codec.OPEN | codec.RESPONSE, timeout=0.3)
        assert await ctl(running.control_socket, "VHOST UNPAUSE /") == ""
        got = await client.frame_of(codec.OPEN | codec.RESPONSE)
        assert codec.response_code(got.body) == (4, codec.OK)


async def test_connection_rate_limit_refuses_with_a_close_naming_it(
    streams: tuple[RunningProxy, int],
) -> None:
    running, port = streams
    await ctl(running.control_socket, "LIMIT CONN_RATE VHOST / 0")
    async with handshaked(port) as client:
        code, _props = await client.open("/")
        assert code == codec.VIRTUAL_HOST_ACCESS_FAILURE
        _corr, _code, reason = await client.close_frame()
        assert "limit" in reason.lower()


async def test_a_frame_over_the_size_cap_is_refused(tmp_socket_dir: str) -> None:
    async with running_proxy(tmp_socket_dir, stream_max_frame_size=4096) as running:
        port = await ops.start_listener(running.ctx, 0, host="127.0.0.1", protocol="stream")
        client = await _opened(port)
        try:
            client.send(struct.pack(">IHH", 8192, 0x0002, 1) + b"\x00" * 64)
            _corr, code, reason = await client.close_frame()
            assert code == codec.FRAME_TOO_LARGE
            assert "8192" in reason
            assert await client.closed()
            [session] = [s for s in running.ctx.sessions if s.protocol == "stream"]
            assert session.close_reason is not None
            assert session.close_reason.name == "PROTOCOL_ERROR"
        finally:
            client.close()


@pytest.mark.parametrize(
    ("first", "code"),
    [
        (request(codec.OPEN, 1, string("/")), codec.UNKNOWN_FRAME),  # Open before anything
        (struct.pack(">I", 1 << 20) + b"\x00" * 8, codec.PRECONDITION_FAILED),  # huge frame
        (struct.pack(">IHHI", 6, codec.PEER_PROPERTIES, 1, 1), codec.PRECONDITION_FAILED),
    ],
    ids=["open-first", "oversized", "truncated"],
)
async def test_handshake_errors_get_a_close_naming_them(
    streams: tuple[RunningProxy, int], first: bytes, code: int
) -> None:
    _running, port = streams
    client = await RawStream.connect(port)
    try:
        client.send(first)
        corr, got, reason = await client.close_frame()
        assert got == code
        assert reason
        client.send(codec.close_response(corr))
        assert await client.closed()
    finally:
        client.close()


async def test_hostile_vhost_names_are_routed_as_text(tmp_socket_dir: str) -> None:
    async with running_proxy(tmp_socket_dir, simple=False) as running:
        port = await ops.start_listener(running.ctx, 0, host="127.0.0.1", protocol="stream")
        async with handshaked(port) as client:
            code, _props = await client.open("evil\nvhost\x1b[31m")
            assert code == codec.VIRTUAL_HOST_ACCESS_FAILURE
            _corr, _code, reason = await client.close_frame()
            assert reason == "No known broker mapping for vhost evil\nvhost\x1b[31m"
        conn = await ctl(running.control_socket, "CONN")
        assert "\x1b" not in conn


async def test_data_rate_limits_apply_and_metadata_stays_rewritten(
    streams: tuple[RunningProxy, int],
) -> None:
    """OUT_DATA_RATE shapes a stream session's broker side; setting and lifting it while
    the session is live keeps the Metadata rewriter on frame boundaries."""
    running, port = streams
    client = await _opened(port)
    try:
        stream = f"amqpprox-rate-{uuid.uuid4().hex[:8]}"
        client.send(request(CREATE, 5, string(stream) + b"\x00\x00\x00\x00"))
        await client.frame_of(CREATE | codec.RESPONSE)
        await ctl(running.control_socket, "LIMIT OUT_DATA_RATE VHOST / 100000")
        await ctl(running.control_socket, "LIMIT DATA_RATE VHOST / 100000")
        [session] = _stream_sessions(running)
        await until(lambda: session.shaper is not None, "the shaper on the stream session")
        for corr in range(6, 16):
            brokers = await _metadata(client, stream, corr)
            assert {(host, p) for _r, host, p in brokers} == {("127.0.0.1", port)}
            if corr == 10:
                await ctl(running.control_socket, "LIMIT DISABLE OUT_DATA_RATE VHOST /")
                await ctl(running.control_socket, "LIMIT DISABLE DATA_RATE VHOST /")
        client.send(request(DELETE, 20, string(stream)))
        await client.frame_of(DELETE | codec.RESPONSE)
    finally:
        client.close()


async def test_traces_leave_stream_sessions_alone(streams: tuple[RunningProxy, int]) -> None:
    """Traces decode AMQP 0-9-1: a vhost trace does not follow stream sessions of the
    vhost, and a stream session's id is refused with a reason."""
    running, port = streams
    started = await ctl(running.control_socket, "TRACE START VHOST /")
    assert started.startswith("Trace "), started
    trace_id = started.split()[1]
    client = await _opened(port)
    try:
        [session] = _stream_sessions(running)
        assert await _metadata(client, "no-such-stream", 7) is not None
        printed = await ctl(running.control_socket, "TRACE PRINT")
        assert f"id={trace_id} " in printed and "frames=0 " in printed, printed
        refused = await ctl(running.control_socket, f"TRACE START SESSION {session.id}")
        assert f"session {session.id} is a stream session" in refused, refused
    finally:
        client.close()
        await ctl(running.control_socket, f"TRACE STOP {trace_id}")
