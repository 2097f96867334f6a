"""The relay: bytes both ways, whole and in order, and how it ends.

Multi-frame messages cut at odd offsets arrive byte for byte; bytes the broker sends with
its OpenOk follow it; Close and CloseOk pass through; a bad frame from either side ends
the session (the client gets 501 for its own); a broker that drops at a frame boundary
leaves the client a ``Connection.Close 320``, one that drops mid-frame a bare close.
"""

from __future__ import annotations

from amqpprox.amqp.frames import HEARTBEAT_FRAME, encode_frame
from amqpprox.amqp.methods import (
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpenOk,
    encode_method,
)
from tests.rawamqp import CHANNEL_OPEN, handshake_bytes
from tests.scripted_broker import Script, ScriptedBroker, frames_of
from tests.session.rig import Rig, chunks, message, open_answer, read_exactly, read_to_eof

ODD_CUTS = [1, 6, 7, 13, 4093, 1, 65_537, 3]
BAD_END = encode_frame(1, 1, b"\x00\x14\x00\x0a\x00")[:-1] + b"\x00"  # end octet 0x00


async def test_multi_frame_messages_arrive_whole_and_in_order_both_ways(rig: Rig) -> None:
    live = await rig.open_session("/")
    upstream = CHANNEL_OPEN + message(1, bytes(range(256)) * 1200) + message(1, b"tail")
    for piece in chunks(upstream, ODD_CUTS):
        await live.client.send(piece)
    assert await live.broker.received_at_least(len(upstream)) == upstream
    assert len(live.broker.frames) == len(frames_of(upstream))

    downstream = message(1, b"\xce" * 300_001, frame_max=4096) + HEARTBEAT_FRAME
    for piece in chunks(downstream, ODD_CUTS):
        live.broker.send(piece)
    assert await read_exactly(live.client, len(downstream)) == downstream

    # CONN counts exactly the relayed bytes and frames, each way.
    fields = await rig.conn_until(live.client, inBytes=str(len(upstream)))
    assert fields["inFrames"] == str(len(frames_of(upstream)))
    assert fields["outBytes"] == str(len(downstream))
    assert fields["outFrames"] == str(len(frames_of(downstream)))


async def test_bytes_the_broker_sends_with_open_ok_follow_it(
    rig: Rig, broker: ScriptedBroker
) -> None:
    after = encode_method(ConnectionClose(320, "CONNECTION_FORCED - going away", 0, 0))
    blocked = encode_frame(1, 0, b"\x00\x0a\x00\x3c\x04busy")  # Connection.Blocked("busy")
    broker.plan(Script(after_open_ok=blocked + after))
    client = await rig.client()
    await client.send(handshake_bytes("/"))
    assert await open_answer(client) == ConnectionOpenOk("")
    assert await read_exactly(client, len(blocked + after)) == blocked + after


async def test_close_and_close_ok_pass_through_both_ways(rig: Rig) -> None:
    live = await rig.open_session("/")
    # The client closes: the broker answers (its script), the client gets the CloseOk.
    await live.client.send(encode_method(ConnectionClose(200, "client bye", 0, 0)))
    assert await live.broker.close_received == ConnectionClose(200, "client bye", 0, 0)
    assert await live.client.read_method() == ConnectionCloseOk()
    live.client.abort()
    await live.broker.wait_lost()
    await rig.conn_until(live.client, disconnected="Y")


async def test_broker_close_reaches_the_client_and_no_320_follows(rig: Rig) -> None:
    live = await rig.open_session("/")
    live.broker.send_close(320, "CONNECTION_FORCED - broker forced connection closure")
    assert await live.client.read_method() == ConnectionClose(
        320, "CONNECTION_FORCED - broker forced connection closure", 0, 0
    )
    await live.client.close_ok()
    await live.broker.until(live.broker.close_ok_received.done, "the client's CloseOk")
    live.broker.drop()  # as RabbitMQ does after the CloseOk
    assert await read_to_eof(live.client) == b""  # the proxy adds no Close of its own
    await rig.conn_until(live.client, disconnected="Y")


async def test_broker_drop_at_a_frame_boundary_gives_the_client_close_320(rig: Rig) -> None:
    live = await rig.open_session("/")
    frame = message(1, b"last words")
    live.broker.send(frame)
    live.broker.drop()
    assert await read_exactly(live.client, len(frame)) == frame
    assert await live.client.read_method() == ConnectionClose(
        320, "CONNECTION_FORCED - broker connection lost", 0, 0
    )
    assert await read_to_eof(live.client) == b""
    await rig.conn_until(live.client, disconnected="Y")


async def test_broker_drop_mid_frame_leaves_the_client_a_bare_close(rig: Rig) -> None:
    live = await rig.open_session("/")
    frame = message(1, b"cut short")
    live.broker.send(frame[:-5])
    live.broker.drop()
    assert await read_to_eof(live.client) == frame[:-5]  # no Close frame after the cut
    await rig.conn_until(live.client, disconnected="Y")


async def test_bad_frame_end_from_the_client_gets_501_and_the_broker_socket_closes(
    rig: Rig,
) -> None:
    live = await rig.open_session("/")
    good = message(1, b"before the bad frame")
    await live.client.send(good + BAD_END + HEARTBEAT_FRAME)
    assert await live.client.read_method() == ConnectionClose(
        501, "FRAME_ERROR - frame end octet is not 0xCE", 0, 0
    )
    assert await read_to_eof(live.client) == b""
    await live.broker.wait_lost()
    assert bytes(live.broker.received) == good  # nothing from the bad frame on
    await rig.conn_until(live.client, disconnected="Y")


async def test_oversized_frame_from_the_client_gets_501(rig: Rig) -> None:
    live = await rig.open_session("/")
    # The header announces 131073 bytes in all: refused before the body is waited for
    # (only a few body bytes are sent, so the proxy leaves none unread: no RST).
    await live.client.send(encode_frame(3, 1, b"x" * 131_065)[:17])
    assert await live.client.read_method() == ConnectionClose(
        501, "FRAME_ERROR - frame of 131073 bytes exceeds frame-max 131072", 0, 0
    )
    assert await read_to_eof(live.client) == b""
    await live.broker.wait_lost()
    assert live.broker.received == b""


async def test_bad_frame_from_the_broker_closes_the_client(rig: Rig) -> None:
    live = await rig.open_session("/")
    good = message(1, b"fine")
    live.broker.send(good + BAD_END)
    assert await read_to_eof(live.client) == good  # the bytes before it, then a close
    await live.broker.wait_lost()
    await rig.conn_until(live.client, disconnected="Y")
