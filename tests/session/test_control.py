"""Control actions on a session, seen from the client, the broker and ``CONN``.

``SESSION id PAUSE``/``UNPAUSE`` (the client's bytes wait, the broker's keep flowing),
``VHOST PAUSE``/``UNPAUSE`` (a new session held at Open), ``SESSION id
DISCONNECT_GRACEFUL`` (Close 200 to the client, then to the broker, each acknowledged;
or cut at the close deadline), ``SESSION id FORCE_DISCONNECT`` and ``VHOST
BACKEND_DISCONNECT`` (docs/sessions.md).
"""

from __future__ import annotations

import asyncio
import json

from amqpprox.amqp.frames import FRAME_BODY, HEARTBEAT_FRAME, PROTOCOL_HEADER, encode_frame
from amqpprox.amqp.methods import (
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpenOk,
    encode_method,
)
from tests.rawamqp import CHANNEL_OPEN, handshake_bytes
from tests.scripted_broker import Script, ScriptedBroker
from tests.session.rig import (
    CLOSE_DEADLINE,
    Live,
    Rig,
    message,
    open_answer,
    read_exactly,
    read_to_eof,
)

CLOSE_200 = ConnectionClose(200, "OK", 0, 0)


async def broker_reaches_client(live: Live, rounds: int = 2) -> None:
    """Frames from the broker reach the client (twice, one after the other).

    The proxy runs on this test's event loop: once two round trips through it have
    completed, bytes the client wrote before them have been offered to the proxy.
    """
    for _ in range(rounds):
        live.broker.send(HEARTBEAT_FRAME)
        assert await read_exactly(live.client, len(HEARTBEAT_FRAME)) == HEARTBEAT_FRAME


async def test_session_pause_holds_the_clients_frames_until_unpause(rig: Rig) -> None:
    live = await rig.open_session("/")
    await rig.ok(f"SESSION {live.id} PAUSE")
    assert (await rig.conn_until(live.client, paused="Y"))["disconnected"] == "N"
    held = [CHANNEL_OPEN, message(1, b"a" * 5000), message(1, b"b" * 70_000)]
    for piece in held:
        await live.client.send(piece)
    await broker_reaches_client(live)  # broker -> client keeps flowing while paused
    assert live.broker.received == b""
    await rig.ok(f"SESSION {live.id} UNPAUSE")
    expected = b"".join(held)
    assert await live.broker.received_at_least(len(expected)) == expected
    await rig.conn_until(live.client, paused="N", disconnected="N")
    # Once, and relaying goes on after them.
    await live.client.send(HEARTBEAT_FRAME)
    assert await live.broker.received_at_least(len(expected) + 8) == expected + HEARTBEAT_FRAME


async def test_vhost_pause_holds_a_new_session_at_open_until_unpause(
    rig: Rig, broker: ScriptedBroker
) -> None:
    await rig.ok("VHOST PAUSE /")
    assert await rig.ctl("VHOST PRINT") == "/ = PAUSED\n"
    client = await rig.client()
    await client.send(handshake_bytes("/") + CHANNEL_OPEN)
    fields = await rig.conn_until(client, vhost="/", paused="Y")
    assert (fields["disconnected"], fields["egressRemote"]) == ("N", "0.0.0.0:0")
    later = message(1, b"sent while held")
    await client.send(later)
    await rig.conn()  # a round trip through the proxy's loop: `later` has been read
    assert broker.connections == []
    await rig.ok("VHOST UNPAUSE /")
    assert await open_answer(client) == ConnectionOpenOk("")
    connection = await broker.opened(0)
    expected = CHANNEL_OPEN + later
    assert await connection.received_at_least(len(expected)) == expected
    fields = await rig.conn_until(client, paused="N")
    assert fields["egressRemote"] == f"127.0.0.1:{broker.port}"
    await client.send(HEARTBEAT_FRAME)
    assert await connection.received_at_least(len(expected) + 8) == expected + HEARTBEAT_FRAME


async def test_vhost_unpause_cuts_an_established_paused_session(rig: Rig) -> None:
    live = await rig.open_session("/")
    await rig.ok("VHOST PAUSE /")
    await rig.conn_until(live.client, paused="Y")
    await rig.ok("VHOST UNPAUSE /")
    assert await read_to_eof(live.client) == b""  # cut, so that it reconnects afresh
    await live.broker.wait_lost()
    await rig.conn_until(live.client, disconnected="Y")


async def test_disconnect_graceful_closes_the_client_then_the_broker(rig: Rig) -> None:
    live = await rig.open_session("/")
    await rig.ok(f"SESSION {live.id} DISCONNECT_GRACEFUL")
    assert await live.client.read_method() == CLOSE_200
    # Until its CloseOk the client's frames still reach the broker, and nothing else does.
    last = message(1, b"last publish")
    await live.client.send(last)
    assert await live.broker.received_at_least(len(last)) == last
    assert not live.broker.close_received.done()
    await live.client.close_ok()
    assert await live.broker.close_received == CLOSE_200
    assert live.broker.received == last + encode_method(CLOSE_200)
    # The broker's CloseOk (its script answers) ends both sockets.
    assert await read_to_eof(live.client) == b""
    await live.broker.wait_lost()
    assert (await rig.conn_until(live.client, disconnected="Y"))["paused"] == "N"


async def test_disconnect_graceful_cuts_both_sockets_when_the_client_never_answers(
    rig: Rig,
) -> None:
    live = await rig.open_session("/")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await rig.ok(f"SESSION {live.id} DISCONNECT_GRACEFUL")
    assert await live.client.read_method() == CLOSE_200
    assert await read_to_eof(live.client) == b""
    assert loop.time() - started >= CLOSE_DEADLINE - 0.001  # uvloop: whole milliseconds
    await live.broker.wait_lost()
    assert live.broker.received == b""  # the broker never got a Close
    await rig.conn_until(live.client, disconnected="Y")


async def test_disconnect_graceful_still_closes_the_broker_when_the_client_drops(
    rig: Rig,
) -> None:
    live = await rig.open_session("/")
    await rig.ok(f"SESSION {live.id} DISCONNECT_GRACEFUL")
    assert await live.client.read_method() == CLOSE_200
    live.client.abort()  # as pika does: no CloseOk, just a closed socket
    assert await live.broker.close_received == CLOSE_200
    await live.broker.wait_lost()  # closed by the proxy once the broker's CloseOk arrived
    assert live.broker.received == encode_method(CLOSE_200)
    await rig.conn_until(live.client, disconnected="Y")


async def test_disconnect_graceful_cuts_a_broker_that_never_acknowledges(
    rig: Rig, broker: ScriptedBroker
) -> None:
    broker.plan(Script(answer_close=False))
    live = await rig.open_session("/")
    await rig.ok(f"SESSION {live.id} DISCONNECT_GRACEFUL")
    assert await live.client.read_method() == CLOSE_200
    await live.client.close_ok()
    assert await live.broker.close_received == CLOSE_200
    await live.broker.wait_lost()  # at the close deadline
    await rig.conn_until(live.client, disconnected="Y")


async def test_disconnect_graceful_waits_for_the_brokers_frame_boundary(rig: Rig) -> None:
    live = await rig.open_session("/")
    frame = encode_frame(FRAME_BODY, 1, b"a body frame delivered in two pieces")
    live.broker.send(frame[:10])
    assert await read_exactly(live.client, 10) == frame[:10]
    await rig.ok(f"SESSION {live.id} DISCONNECT_GRACEFUL")
    # The rest of the frame, then frames the client must no longer get.
    live.broker.send(frame[10:] + message(1, b"too late"))
    assert await read_exactly(live.client, len(frame) - 10) == frame[10:]
    assert await live.client.read_method() == CLOSE_200
    await live.client.close_ok()
    assert await read_to_eof(live.client) == b""
    assert await live.broker.close_received == CLOSE_200


async def test_disconnect_graceful_of_a_paused_session_forwards_what_it_held(
    rig: Rig,
) -> None:
    live = await rig.open_session("/")
    await rig.ok(f"SESSION {live.id} PAUSE")
    await rig.conn_until(live.client, paused="Y")
    held = message(1, b"held while paused")
    await live.client.send(held)
    await broker_reaches_client(live)
    assert live.broker.received == b""
    await rig.ok(f"SESSION {live.id} DISCONNECT_GRACEFUL")
    assert await live.client.read_method() == CLOSE_200
    await live.client.close_ok()
    assert await live.broker.close_received == CLOSE_200
    assert live.broker.received == held + encode_method(CLOSE_200)
    await rig.conn_until(live.client, disconnected="Y")


async def test_disconnect_graceful_of_a_session_held_at_open(
    rig: Rig, broker: ScriptedBroker
) -> None:
    await rig.ok("VHOST PAUSE /")
    client = await rig.client()
    await client.send(handshake_bytes("/"))
    await rig.conn_until(client, paused="Y")
    session_id, _ = await rig.session_of(client)
    await rig.ok(f"SESSION {session_id} DISCONNECT_GRACEFUL")
    assert await open_answer(client) == CLOSE_200
    await client.close_ok()
    assert await read_to_eof(client) == b""
    await rig.ok("VHOST UNPAUSE /")
    await rig.conn_until(client, disconnected="Y")
    assert broker.connections == []


async def test_force_disconnect_closes_both_sockets_without_a_close(rig: Rig) -> None:
    live = await rig.open_session("/")
    await rig.ok(f"SESSION {live.id} FORCE_DISCONNECT")
    assert await read_to_eof(live.client) == b""
    await live.broker.wait_lost()
    assert live.broker.received == b""
    await rig.conn_until(live.client, disconnected="Y")


async def test_vhost_force_disconnect_closes_that_vhosts_sessions(rig: Rig) -> None:
    live = await rig.open_session("/")
    await rig.ok("VHOST FORCE_DISCONNECT /")
    assert await read_to_eof(live.client) == b""
    await live.broker.wait_lost()
    await rig.conn_until(live.client, disconnected="Y")


async def test_vhost_backend_disconnect_closes_only_the_broker_socket(rig: Rig) -> None:
    live = await rig.open_session("/")
    await rig.ok("VHOST BACKEND_DISCONNECT /")
    await live.broker.wait_lost()
    assert live.broker.received == b""
    await live.client.send(HEARTBEAT_FRAME)  # goes nowhere, and does not end the session
    await rig.conn()
    assert not live.client.reader.at_eof()
    fields = await rig.conn_until(live.client)
    assert fields["disconnected"] == "N"
    # No broker endpoint is shown any more, and REST says what happened.
    assert (fields["egressLocal"], fields["egressRemote"]) == ("0.0.0.0:0", "0.0.0.0:0")
    assert await rest_state(rig, live.id) == "broker_disconnected"
    # Only a later action ends the client's side; it was told nothing in between.
    await rig.ok(f"SESSION {live.id} FORCE_DISCONNECT")
    assert await read_to_eof(live.client) == b""
    await rig.conn_until(live.client, disconnected="Y")


async def test_a_client_that_leaves_after_backend_disconnect_counts_the_operators_reason(
    rig: Rig,
) -> None:
    live = await rig.open_session("/")
    await rig.ok("VHOST BACKEND_DISCONNECT /")
    await live.broker.wait_lost()
    await rig.conn_until(live.client, egressRemote="0.0.0.0:0")
    live.client.abort()  # the client goes without a word: not its fault, the operator's
    await rig.conn_until(live.client, disconnected="Y")
    rig.proxy.runtime.cleanup_once()
    metrics = await http_get(rig, "/metrics")
    closed = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("amqpprox_sessions_closed_total{") and 'vhost="/"' in line
    }
    assert [(labels.split("reason=")[1], n) for labels, n in closed.items()] == [
        ('"backend_disconnected"}', 1.0)
    ]


async def rest_state(rig: Rig, session_id: int) -> str:
    body = json.loads(await http_get(rig, f"/api/v1/sessions/{session_id}"))
    state = body["state"]
    assert isinstance(state, str)
    return state


async def http_get(rig: Rig, path: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.proxy.runtime.admin_port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head, _, body = (await reader.read()).decode().partition("\r\n\r\n")
    writer.close()
    assert head.split(" ", 2)[1] == "200", head
    return body


async def test_disconnect_graceful_answers_a_crossing_client_close(rig: Rig) -> None:
    live = await rig.open_session("/")
    await rig.ok(f"SESSION {live.id} DISCONNECT_GRACEFUL")
    assert await live.client.read_method() == CLOSE_200
    await live.client.send(encode_method(ConnectionClose(200, "client bye", 0, 0)))
    assert await live.client.read_method() == ConnectionCloseOk()
    assert await read_to_eof(live.client) == b""
    # The broker gets the proxy's Close, not the client's.
    assert await live.broker.close_received == CLOSE_200
    assert live.broker.received == encode_method(CLOSE_200)
    await live.broker.wait_lost()


async def test_session_paused_before_open_is_held_until_session_unpause(
    rig: Rig, broker: ScriptedBroker
) -> None:
    client = await rig.client()
    await client.send(PROTOCOL_HEADER)
    await client.read_method()  # Start: the session exists
    session_id, fields = await rig.session_of(client)
    assert fields["vhost"] == ""
    await rig.ok(f"SESSION {session_id} PAUSE")
    await client.send(handshake_bytes("/")[len(PROTOCOL_HEADER) :] + CHANNEL_OPEN)
    fields = await rig.conn_until(client, vhost="/", paused="Y")
    assert fields["egressRemote"] == "0.0.0.0:0"
    assert broker.connections == []
    await rig.ok(f"SESSION {session_id} UNPAUSE")
    assert await open_answer(client) == ConnectionOpenOk("")
    connection = await broker.opened(0)
    assert await connection.received_at_least(len(CHANNEL_OPEN)) == CHANNEL_OPEN
    await rig.conn_until(client, paused="N", disconnected="N")


async def test_session_paused_while_connecting_holds_its_frames_until_unpause(rig: Rig) -> None:
    client, connection = await rig.held_at_open(CHANNEL_OPEN)
    session_id, _ = await rig.session_of(client)
    await rig.ok(f"SESSION {session_id} PAUSE")
    connection.release()
    assert await open_answer(client) == ConnectionOpenOk("")
    later = message(1, b"after OpenOk, paused")
    await client.send(later)
    live = Live(client, connection, session_id)
    await broker_reaches_client(live)
    assert connection.received == b""
    assert (await rig.conn_until(client, paused="Y"))["disconnected"] == "N"
    await rig.ok(f"SESSION {session_id} UNPAUSE")
    expected = CHANNEL_OPEN + later
    assert await connection.received_at_least(len(expected)) == expected


async def test_vhost_unpause_releases_a_session_paused_while_connecting(rig: Rig) -> None:
    client, connection = await rig.held_at_open(CHANNEL_OPEN)
    await rig.ok("VHOST PAUSE /")
    await rig.ok("VHOST UNPAUSE /")
    assert await rig.ctl("VHOST PRINT") == "/ = UNPAUSED\n"
    connection.release()
    assert await open_answer(client) == ConnectionOpenOk("")
    # Either relayed normally or cut so that it reconnects: not left paused for ever.
    fields = await rig.conn_until(client)
    assert (fields["paused"], fields["disconnected"]) != ("Y", "N"), fields


async def test_disconnect_graceful_while_the_broker_opens_drops_the_attempt(rig: Rig) -> None:
    client, connection = await rig.held_at_open()
    session_id, _ = await rig.session_of(client)
    await rig.ok(f"SESSION {session_id} DISCONNECT_GRACEFUL")
    assert await open_answer(client) == CLOSE_200
    await connection.wait_lost()
    await client.close_ok()
    assert await read_to_eof(client) == b""
    await rig.conn_until(client, disconnected="Y")
