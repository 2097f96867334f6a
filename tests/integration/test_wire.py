"""Bytes on the wire: handshake variants and every error path a client can hit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from amqpprox.amqp.frames import LEGACY_PROTOCOL_HEADER, PROTOCOL_HEADER, encode_frame
from amqpprox.amqp.methods import ConnectionClose, ConnectionCloseOk, ConnectionOpenOk
from amqpprox.core import operations as ops
from amqpprox.core.model import ListenerSpec
from amqpprox.core.sessions import CloseReason
from amqpprox.runtime import Runtime, SimpleMode
from tests.conftest import BROKER_HOST, BROKER_PORT, RunningProxy, free_closed_port, make_settings
from tests.polling import until
from tests.rawamqp import CHANNEL_OPEN, CHANNEL_OPEN_OK_IDS, RawClient, handshake_bytes

pytestmark = pytest.mark.broker


async def wait_for(condition: Callable[[], bool], limit: float = 5.0) -> None:
    await until(condition, timeout=limit)


async def test_wrong_protocol_header_gets_our_header_then_close(proxy: RunningProxy) -> None:
    client = await RawClient.connect(proxy.port)
    await client.send(b"AMQP\x00\x00\x08\x00")
    assert await client.read_eof() == PROTOCOL_HEADER
    await wait_for(
        lambda: any(s.close_reason is CloseReason.PROTOCOL_ERROR for s in proxy.ctx.sessions)
    )


async def test_http_request_instead_of_amqp(proxy: RunningProxy) -> None:
    client = await RawClient.connect(proxy.port)
    await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await client.read_eof() == PROTOCOL_HEADER


async def test_whole_handshake_in_one_write_is_accepted(proxy: RunningProxy) -> None:
    client = await RawClient.connect(proxy.port)
    assert isinstance(await client.open("/"), ConnectionOpenOk)
    assert isinstance(await client.close(), ConnectionCloseOk)


async def test_legacy_protocol_header_is_accepted(proxy: RunningProxy) -> None:
    client = await RawClient.connect(proxy.port)
    await client.send(LEGACY_PROTOCOL_HEADER + handshake_bytes()[8:])
    method = await client.read_method()
    assert type(method).__name__ == "ConnectionStart"


async def test_client_close_after_open_is_recorded_as_graceful(proxy: RunningProxy) -> None:
    client = await RawClient.connect(proxy.port)
    await client.open("/")
    assert type(await client.close()).__name__ == "ConnectionCloseOk"
    client.abort()
    await wait_for(
        lambda: any(s.close_reason is CloseReason.CLIENT_GRACEFUL for s in proxy.ctx.sessions)
    )


async def test_frames_pipelined_before_open_ok_are_delivered(proxy: RunningProxy) -> None:
    client = await RawClient.connect(proxy.port)
    # Channel.Open sent together with the handshake, long before the broker's OpenOk.
    await client.send(handshake_bytes("/") + CHANNEL_OPEN)
    seen = []
    while True:
        frame = await client.read_frame()
        seen.append((frame.channel, frame.payload[:4]))
        if frame.channel == 1:
            break
    assert (1, bytes([0, CHANNEL_OPEN_OK_IDS[0], 0, CHANNEL_OPEN_OK_IDS[1]])) in seen


async def test_unmapped_vhost_gets_close_506(bare_proxy: RunningProxy) -> None:
    client = await RawClient.connect(bare_proxy.port)
    method = await client.open("unmapped")
    assert method == ConnectionClose(506, "No known broker mapping for vhost unmapped", 0, 0)
    await client.close_ok()
    assert await client.read_eof() == b""
    [session] = list(bare_proxy.ctx.sessions)
    assert session.close_reason is CloseReason.NO_MAPPING


async def test_unknown_broker_vhost_gets_brokers_530(proxy: RunningProxy) -> None:
    client = await RawClient.connect(proxy.port)
    method = await client.open("no-such-vhost-here")
    assert isinstance(method, ConnectionClose)
    assert method.reply_code == 530
    assert "no-such-vhost-here" in method.reply_text


async def test_bad_credentials_get_brokers_403(proxy: RunningProxy) -> None:
    client = await RawClient.connect(proxy.port)
    method = await client.open("/", password="wrong")
    assert isinstance(method, ConnectionClose)
    assert method.reply_code == 403
    assert method.reply_text.startswith("ACCESS_REFUSED")


async def test_no_reachable_backend_gets_close_not_reset(bare_proxy: RunningProxy) -> None:
    ctx = bare_proxy.ctx
    await ops.add_backend(ctx, "dead", "dc", "127.0.0.1", free_closed_port())
    ops.map_vhost_to_backend(ctx, "/", "dead")
    client = await RawClient.connect(bare_proxy.port)
    method = await client.open("/")
    assert method == ConnectionClose(506, "No broker reachable for vhost /", 0, 0)
    [session] = list(ctx.sessions)
    assert session.close_reason is CloseReason.NO_BACKEND


async def test_dead_farm_member_fails_over(bare_proxy: RunningProxy) -> None:
    ctx = bare_proxy.ctx
    await ops.add_backend(ctx, "dead", "dc", "127.0.0.1", free_closed_port())
    await ops.add_backend(ctx, "alive", "dc", BROKER_HOST, BROKER_PORT)
    ops.set_farm(ctx, "pair", ["dead", "alive"])
    ops.set_default_farm(ctx, "pair")
    client = await RawClient.connect(bare_proxy.port)
    assert isinstance(await client.open("/"), ConnectionOpenOk)
    [session] = list(ctx.sessions)
    assert (session.backend_name, session.connect_failures) == ("alive", 1)


async def test_bad_frame_end_during_handshake_gets_501(proxy: RunningProxy) -> None:
    client = await RawClient.connect(proxy.port)
    await client.send(PROTOCOL_HEADER)
    await client.read_method()  # Start
    frame = bytearray(encode_frame(1, 0, b"\x00\x0a\x00\x0b" + b"\x00" * 8))
    frame[-1] = 0x00
    await client.send(bytes(frame))
    method = await client.read_method()
    assert isinstance(method, ConnectionClose) and method.reply_code == 501


async def test_oversized_frame_after_open_ends_session_with_501(proxy: RunningProxy) -> None:
    client = await RawClient.connect(proxy.port)
    assert isinstance(await client.open("/"), ConnectionOpenOk)
    # A body frame header announcing 10 MB: refused before anything is buffered.
    await client.send(b"\x03\x00\x01" + (10_000_000).to_bytes(4, "big") + b"x" * 100)
    method = await client.read_method()
    assert isinstance(method, ConnectionClose) and method.reply_code == 501
    assert await client.read_eof() == b""
    await wait_for(
        lambda: any(s.close_reason is CloseReason.PROTOCOL_ERROR for s in proxy.ctx.sessions)
    )


async def test_bad_frame_end_after_open_ends_session_with_501(proxy: RunningProxy) -> None:
    client = await RawClient.connect(proxy.port)
    assert isinstance(await client.open("/"), ConnectionOpenOk)
    frame = bytearray(encode_frame(8, 0, b""))
    frame[-1] = 0xAB
    await client.send(bytes(frame))
    method = await client.read_method()
    assert isinstance(method, ConnectionClose) and method.reply_code == 501


async def test_silent_client_is_dropped_at_handshake_deadline(tmp_socket_dir: str) -> None:
    runtime = Runtime(make_settings(tmp_socket_dir, client_handshake_timeout=0.2))
    await runtime.start()
    try:
        port = await runtime.configure_simple(SimpleMode(0, BROKER_HOST, BROKER_PORT))
        client = await RawClient.connect(port)
        started = time.monotonic()
        assert await client.read_eof(timeout=5) == b""
        assert time.monotonic() - started < 3
        [session] = list(runtime.ctx.sessions)
        assert session.close_reason is CloseReason.HANDSHAKE_TIMEOUT
    finally:
        await runtime.stop()


async def test_broker_that_accepts_but_never_answers_hits_handshake_deadline(
    tmp_socket_dir: str,
) -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # says nothing until the proxy gives up
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    mute_port = server.sockets[0].getsockname()[1]
    runtime = Runtime(make_settings(tmp_socket_dir, broker_handshake_timeout=0.3))
    await runtime.start()
    try:
        ctx = runtime.ctx
        await ops.add_backend(ctx, "mute", "dc", "127.0.0.1", mute_port)
        await ops.add_backend(ctx, "alive", "dc", BROKER_HOST, BROKER_PORT)
        ops.set_farm(ctx, "f", ["mute", "alive"])
        ops.set_default_farm(ctx, "f")
        port = await runtime.listeners.start(ListenerSpec(0))
        client = await RawClient.connect(port)
        assert isinstance(await client.open("/"), ConnectionOpenOk)
        [session] = list(ctx.sessions)
        assert (session.backend_name, session.connect_failures) == ("alive", 1)
    finally:
        await runtime.stop()
        server.close()


async def test_broker_dying_mid_session_gives_client_a_close(proxy: RunningProxy) -> None:
    client = await RawClient.connect(proxy.port)
    assert isinstance(await client.open("/"), ConnectionOpenOk)
    [session] = list(proxy.ctx.sessions)
    broker = session.broker_transport  # type: ignore[attr-defined]
    broker.abort()  # the broker side vanishes without a word
    method = await client.read_method()
    assert isinstance(method, ConnectionClose) and method.reply_code == 320
    await wait_for(lambda: session.close_reason is CloseReason.BROKER_SNAPPED)
