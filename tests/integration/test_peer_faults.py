"""Peers that go quiet or away where the event loop cannot see it, with the real broker
behind a fault-injecting forwarder (tests/faults.py):

* a broker that leaves while the proxy is not reading it (its client does not read);
* a client that leaves while the proxy is not reading it (its broker does not read);
* a broker that stops answering (a frozen forwarder: as SIGSTOP) with heartbeats on;
* a finished session whose client does not read the rest: its socket is closed within
  the close deadline, and the session stays listed until then.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pika
import pytest
from pamqp import body as pbody
from pamqp import commands
from pamqp import frame as pframe
from pamqp import header as pheader

from amqpprox.amqp.frames import FrameReader
from amqpprox.amqp.methods import ConnectionClose, ConnectionOpenOk
from amqpprox.core import operations as ops
from amqpprox.core.model import ListenerSpec
from amqpprox.core.sessions import CloseReason as R
from amqpprox.core.sessions import SessionBase
from amqpprox.proxy.gate import PROBE_INTERVAL
from amqpprox.proxy.plane import probe_buffers
from amqpprox.runtime import Runtime
from tests.conftest import BROKER_HOST, BROKER_PORT, make_settings
from tests.faults import Fault, FaultyForwarder
from tests.polling import until
from tests.rawamqp import CHANNEL_OPEN, OPEN_CLIENTS, RawClient
from tests.reliability import Baseline, back_to_baseline, baseline

pytestmark = pytest.mark.broker

CLOSE_DEADLINE = 1.0
# How long a test waits for what the proxy must do within a stated bound: the bound plus
# room for a loaded two-core machine.
NOTICE = PROBE_INTERVAL + 4.0


@dataclass
class Rig:
    runtime: Runtime
    port: int
    fwd: FaultyForwarder
    base: Baseline

    def only_session(self) -> SessionBase:
        sessions = list(self.runtime.ctx.sessions)
        assert len(sessions) == 1, sessions
        return sessions[0]

    def stalled(self) -> int:
        return probe_buffers(self.runtime.ctx.sessions).backpressured_sessions


@pytest.fixture
async def rig(tmp_socket_dir: str) -> AsyncIterator[Rig]:
    fwd = await FaultyForwarder((BROKER_HOST, BROKER_PORT)).start()
    runtime = Runtime(make_settings(tmp_socket_dir, graceful_close_timeout=CLOSE_DEADLINE))
    await runtime.start()
    try:
        await ops.add_backend(runtime.ctx, "faulty", "dc", "127.0.0.1", fwd.port)
        ops.set_farm(runtime.ctx, "only-faulty", ["faulty"])
        ops.set_default_farm(runtime.ctx, "only-faulty")
        port = await runtime.listeners.start(ListenerSpec(0))
        yield Rig(runtime, port, fwd, baseline(runtime))
    finally:
        await runtime.stop()
        await fwd.stop()


def _fill_queue(queue: str, count: int, size: int) -> None:
    params = pika.ConnectionParameters(BROKER_HOST, BROKER_PORT)
    with pika.BlockingConnection(params) as connection:
        channel = connection.channel()
        channel.queue_declare(queue, auto_delete=False)
        body = b"x" * size
        for _ in range(count):
            channel.basic_publish("", queue, body)


def _delete_queue(queue: str) -> None:
    with pika.BlockingConnection(pika.ConnectionParameters(BROKER_HOST, BROKER_PORT)) as conn:
        conn.channel().queue_delete(queue)


def _publish_frames(queue: str, size: int) -> bytes:
    body = b"y" * size
    return (
        pframe.marshal(commands.Basic.Publish(exchange="", routing_key=queue), 1)
        + pframe.marshal(pheader.ContentHeader(0, len(body), commands.Basic.Properties()), 1)
        + pframe.marshal(pbody.ContentBody(body), 1)
    )


async def _finished(session: SessionBase, what: str) -> None:
    await until(lambda: session.finished, what, NOTICE)


async def _client(rig: Rig, heartbeat: int = 0, *, small_window: bool = False) -> RawClient:
    if small_window:
        # A small receive buffer, fixed before connecting: what the proxy cannot send stays
        # in its own buffers rather than in the kernel's (which grow as a window does).
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", rig.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        client = RawClient(reader, writer, FrameReader(1 << 20))
        OPEN_CLIENTS.append(client)
    else:
        client = await RawClient.connect(rig.port)
    assert isinstance(await client.open("/", heartbeat=heartbeat), ConnectionOpenOk)
    return client


async def test_a_broker_that_leaves_while_not_read_ends_the_session_and_the_client(
    rig: Rig,
) -> None:
    queue = f"peer-faults-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(_fill_queue, queue, 400, 64 * 1024)  # 25 MiB: past every buffer
    try:
        client = await _client(rig, small_window=True)
        consume = commands.Basic.Consume(queue=queue, no_ack=True)
        await client.send(CHANNEL_OPEN + pframe.marshal(consume, 1))
        # The client reads nothing: the proxy stops reading the broker (backpressure).
        await until(lambda: rig.stalled() == 1, "the broker side to be held by backpressure")
        session = rig.only_session()
        # The broker goes (an RST: a FIN would wait behind the data the proxy does not
        # read, as TCP has it), and nobody reads its socket.
        assert rig.fwd.cut(Fault.RESET) == 1
        await _finished(session, "the broker's end to be noticed")
        assert session.close_reason is R.BROKER_SNAPPED
        # The client still has not read: its socket stays, and so does the session...
        rig.runtime.cleanup_once()
        assert rig.runtime.ctx.sessions.get(session.id) is session
        # ... until the close deadline, when the proxy closes it: the client reads the
        # rest of what reached its socket, then the end.
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError, EOFError)):
            while True:
                await client.read_frame(timeout=NOTICE)
        client.abort()
        del session  # the leak check counts Session objects still referenced
        counted = await back_to_baseline(rig.runtime, rig.base)
        assert counted == {R.BROKER_SNAPPED: 1}
    finally:
        await asyncio.to_thread(_delete_queue, queue)


async def test_a_client_that_leaves_while_not_read_ends_the_session(rig: Rig) -> None:
    queue = f"peer-faults-{uuid.uuid4().hex[:8]}"
    client = await _client(rig)
    await client.send(CHANNEL_OPEN)
    await client.read_frame()  # Channel.OpenOk
    rig.fwd.hang()  # the broker stops reading (and answering)
    publish = _publish_frames(queue, 64 * 1024)
    for _ in range(400):  # 25 MiB that the proxy cannot hand on
        client.writer.write(publish)
    await until(lambda: rig.stalled() == 1, "the client side to be held by backpressure")
    session = rig.only_session()
    # The client goes with an RST (a FIN would wait behind the data the proxy does not
    # read), and nobody reads its socket.
    client.writer.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
    )
    client.abort()
    await _finished(session, "the client's end to be noticed")
    assert session.close_reason is R.CLIENT_SNAPPED
    rig.fwd.cut(Fault.DROP)  # the frozen broker's connection, which the proxy has left
    del session
    counted = await back_to_baseline(rig.runtime, rig.base)
    assert counted == {R.CLIENT_SNAPPED: 1}


async def test_a_broker_that_stops_answering_is_noticed_with_heartbeats_on(rig: Rig) -> None:
    client = await _client(rig, heartbeat=1)
    rig.fwd.hang()  # as a SIGSTOPped broker: its socket stays open, silent
    # Two heartbeat intervals of silence, then a clear Close (heartbeat frames first).
    method = await client.read_method(timeout=2 * 1 + NOTICE)
    assert method == ConnectionClose(320, "CONNECTION_FORCED - broker stopped responding", 0, 0)
    assert await client.read_eof() == b""
    client.abort()
    rig.fwd.cut(Fault.DROP)
    counted = await back_to_baseline(rig.runtime, rig.base)
    assert counted == {R.BROKER_UNRESPONSIVE: 1}
    samples = await rig_metrics(rig)
    assert 'reason="broker_unresponsive"' in samples


async def rig_metrics(rig: Rig) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.runtime.admin_port)
    writer.write(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    text = (await reader.read()).decode()
    writer.close()
    return text
