"""The client handshake and the broker handshake replay, seen from both ends of a session.

A broker ``Connection.Close`` at each stage reaches the client unchanged; the client's
own Close, a wrong protocol header and the client handshake deadline; what the broker
receives (the replayed StartOk with the proxy's two entries, TuneOk, Open) and the frames
a client pipelines before ``OpenOk``: delivered after it, once, in order.
"""

from __future__ import annotations

import asyncio

import pytest

from amqpprox.amqp.frames import HEARTBEAT_FRAME, LEGACY_PROTOCOL_HEADER, PROTOCOL_HEADER
from amqpprox.amqp.methods import (
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionStart,
    ConnectionTune,
    ConnectionTuneOk,
    encode_method,
)
from tests.rawamqp import CHANNEL_OPEN, handshake_bytes, start_ok
from tests.scripted_broker import Close, Script, ScriptedBroker, Stage
from tests.session.rig import CLOSE_DEADLINE, Rig, message, open_answer, read_to_eof, rig_for

REFUSALS = {
    "320 before Start": (
        Stage.ACCEPT,
        Close(320, "CONNECTION_FORCED - broker is shutting down", 0, 0),
    ),
    "403 after StartOk": (
        Stage.START_OK,
        Close(
            403, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN", 10, 11
        ),
    ),
    "503 after TuneOk": (
        Stage.TUNE_OK,
        Close(503, "COMMAND_INVALID - frame_max=4095 < 4096 min size", 10, 31),
    ),
    "530 at Open": (
        Stage.OPEN,
        Close(530, "NOT_ALLOWED - vhost / not found", 10, 40),
    ),
}


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "stepwise"])
@pytest.mark.parametrize("refusal", list(REFUSALS))
async def test_broker_close_during_handshake_reaches_the_client_unchanged(
    tmp_socket_dir: str, broker: ScriptedBroker, refusal: str, pipelined: bool
) -> None:
    stage, close = REFUSALS[refusal]
    broker.plan(Script(at=stage, do=close))
    async with rig_for(tmp_socket_dir, broker, pipeline_broker_handshake=pipelined) as rig:
        client = await rig.client()
        await client.send(handshake_bytes("/"))
        assert await open_answer(client) == close.method  # code, text, class and method ids
        await client.close_ok()
        assert await read_to_eof(client) == b""
        connection = await broker.connection(0)
        assert connection.stages[-1] is stage
        # The proxy acknowledged the broker's Close, then closed that socket.
        await connection.until(connection.close_ok_received.done, "CloseOk")
        await connection.wait_lost()
        assert (await rig.conn_until(client, disconnected="Y"))["paused"] == "N"
        assert len(broker.connections) == 1  # a broker's refusal is final


async def test_client_close_before_open_is_answered_and_no_broker_is_contacted(
    rig: Rig, broker: ScriptedBroker
) -> None:
    client = await rig.client()
    await client.send(
        PROTOCOL_HEADER
        + encode_method(start_ok())
        + encode_method(ConnectionTuneOk(2047, 131072, 0))
        + encode_method(ConnectionClose(200, "changed my mind", 0, 0))
    )
    assert isinstance(await client.read_method(), ConnectionStart)
    assert await client.read_method() == ConnectionTune(2047, 131072, 60)
    assert await client.read_method() == ConnectionCloseOk()
    assert await read_to_eof(client) == b""
    assert (await rig.conn_until(client, disconnected="Y"))["vhost"] == ""
    assert broker.connections == []


async def test_client_close_while_the_broker_opens_is_forwarded_after_open_ok(
    rig: Rig, broker: ScriptedBroker
) -> None:
    close = encode_method(ConnectionClose(200, "bye", 0, 0))
    client = await rig.client()
    await client.send(handshake_bytes("/") + close)
    assert await open_answer(client) == ConnectionOpenOk("")
    connection = await broker.opened(0)
    assert await connection.received_at_least(len(close)) == close
    assert (await connection.close_received) == ConnectionClose(200, "bye", 0, 0)
    # The broker's CloseOk (scripted answer) goes back to the client.
    assert await client.read_method() == ConnectionCloseOk()
    client.abort()
    await connection.wait_lost()


@pytest.mark.parametrize("header", [b"AMQP\x00\x00\x08\x00", b"GET / HT"], ids=["0-8", "http"])
async def test_wrong_protocol_header_gets_ours_then_a_close(
    rig: Rig, broker: ScriptedBroker, header: bytes
) -> None:
    client = await rig.client()
    await client.send(header + b"TP/1.1\r\n\r\n")
    assert await read_to_eof(client) == PROTOCOL_HEADER  # and no Connection.Close frame
    await rig.conn_until(client, disconnected="Y")
    assert broker.connections == []


@pytest.mark.parametrize("sent", ["header", "up to TuneOk"])
async def test_client_handshake_deadline_cuts_a_client_that_never_opens(
    tmp_socket_dir: str, broker: ScriptedBroker, sent: str
) -> None:
    deadline = 0.3
    async with rig_for(tmp_socket_dir, broker, client_handshake_timeout=deadline) as rig:
        loop = asyncio.get_running_loop()
        started = loop.time()
        client = await rig.client()
        data = PROTOCOL_HEADER
        if sent == "up to TuneOk":
            data += encode_method(start_ok()) + encode_method(ConnectionTuneOk(2047, 131072, 0))
        await client.send(data)
        assert isinstance(await client.read_method(), ConnectionStart)
        if sent == "up to TuneOk":
            assert isinstance(await client.read_method(), ConnectionTune)
        assert await read_to_eof(client) == b""  # no Connection.Close: the socket is cut
        # uvloop's clock counts whole milliseconds: 0.55 - 0.25 may come out as 0.2999...
        assert loop.time() - started >= deadline - 0.001
        await rig.conn_until(client, disconnected="Y")
        assert broker.connections == []


async def test_broker_receives_the_clients_handshake_with_the_proxys_two_entries(
    tmp_socket_dir: str, broker: ScriptedBroker
) -> None:
    async with rig_for(tmp_socket_dir, broker, hostname="proxyhost") as rig:
        live = await rig.open_session("/")
        connection = live.broker
        assert connection.header == PROTOCOL_HEADER
        replayed = connection.start_ok
        assert replayed is not None
        sent = start_ok()
        assert (replayed.mechanism, replayed.response, replayed.locale) == (
            sent.mechanism,
            sent.response,
            sent.locale,
        )
        _, fields = await rig.session_of(live.client)
        client_port = live.client.writer.get_extra_info("sockname")[1]
        egress_port = fields["egressLocal"].rsplit(":", 1)[1]
        assert replayed.client_properties == {
            **sent.client_properties,
            "amqpprox_client": f"127.0.0.1:{client_port}",
            "amqpprox_host": f"(:{rig.proxy.port}) proxyhost:{egress_port}",
        }
        assert connection.server.tune_ok == ConnectionTuneOk(2047, 131072, 0)
        assert connection.server.open == ConnectionOpen("/")
        assert fields["egressRemote"] == f"127.0.0.1:{broker.port}"


async def test_frames_pipelined_before_open_ok_reach_the_broker_once_in_order(rig: Rig) -> None:
    first = CHANNEL_OPEN + HEARTBEAT_FRAME + message(1, b"x" * 3000)
    second = message(1, b"y" * 200_000)  # more than one read, split over body frames
    client, connection = await rig.held_at_open(first)
    await client.send(second)  # still before OpenOk
    await rig.conn()  # a round trip through the proxy's loop: it has read `second` by now
    connection.release()
    assert await open_answer(client) == ConnectionOpenOk("")
    assert await connection.received_at_least(len(first + second)) == first + second
    # Once: a frame sent after OpenOk is the very next thing the broker receives.
    await client.send(HEARTBEAT_FRAME)
    assert await connection.received_at_least(len(first + second) + 8) == (
        first + second + HEARTBEAT_FRAME
    )


async def test_bad_frame_end_during_the_handshake_gets_501_then_a_close_at_the_deadline(
    rig: Rig, broker: ScriptedBroker
) -> None:
    bad_start_ok = encode_method(start_ok())[:-1] + b"\x00"
    client = await rig.client()
    loop = asyncio.get_running_loop()
    sent = loop.time()  # the close deadline starts after this
    await client.send(PROTOCOL_HEADER + bad_start_ok)
    assert isinstance(await client.read_method(), ConnectionStart)
    assert await client.read_method() == ConnectionClose(
        501, "frame end octet is 0x00, not 0xCE", 0, 0
    )
    await client.close_ok()  # framing is lost: the proxy cannot see it
    assert await read_to_eof(client) == b""
    assert loop.time() - sent >= CLOSE_DEADLINE
    await rig.conn_until(client, disconnected="Y")
    assert broker.connections == []


async def test_more_than_1_mib_before_open_ok_gets_506_and_the_attempt_is_dropped(rig: Rig) -> None:
    client, connection = await rig.held_at_open()
    await client.send(message(1, b"x" * (1 << 20)))
    assert await open_answer(client) == ConnectionClose(
        506, "more than 1048576 bytes sent before Connection.OpenOk", 0, 0
    )
    await connection.wait_lost()
    assert connection.received == b""
    assert await read_to_eof(client) == b""
    await rig.conn_until(client, disconnected="Y")


async def test_a_client_gone_while_the_broker_opens_closes_the_broker_socket(rig: Rig) -> None:
    client, connection = await rig.held_at_open()
    client.abort()
    await connection.wait_lost()
    await rig.conn_until(client, disconnected="Y")


async def test_legacy_header_and_early_heartbeats_are_not_passed_to_the_broker(
    rig: Rig, broker: ScriptedBroker
) -> None:
    client = await rig.client()
    rest = handshake_bytes("/")[len(PROTOCOL_HEADER) :]
    # Heartbeats before Open are dropped; the broker gets the 0-9-1 header.
    await client.send(LEGACY_PROTOCOL_HEADER + HEARTBEAT_FRAME + rest + HEARTBEAT_FRAME)
    assert await open_answer(client) == ConnectionOpenOk("")
    connection = await broker.opened(0)
    assert connection.header == PROTOCOL_HEADER
    assert await connection.received_at_least(8) == HEARTBEAT_FRAME  # the one after Open
