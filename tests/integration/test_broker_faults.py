"""Broker-side faults through a fault-injecting forwarder (tests/faults.py) in front of RabbitMQ.

The forwarder stalls, drops mid-frame, resets and refuses. Clients get a clean
``Connection.Close`` or a close they can reconnect from; sessions are recorded as
broker-side failures; a farm fails over to its next member for new connections; and
nothing leaks (sessions, tasks, file descriptors, Session objects back to baseline).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import pytest

from amqpprox.amqp.methods import ConnectionClose, ConnectionOpenOk
from amqpprox.core import operations as ops
from amqpprox.core.model import ListenerSpec
from amqpprox.core.sessions import CloseReason as R
from amqpprox.runtime import Runtime
from tests.conftest import BROKER_HOST, BROKER_PORT, make_settings
from tests.faults import Fault, FaultyForwarder
from tests.polling import until
from tests.rawamqp import RawClient
from tests.reliability import Baseline, back_to_baseline, baseline

pytestmark = pytest.mark.broker

BROKER_HANDSHAKE_TIMEOUT = 0.5


@dataclass
class Rig:
    runtime: Runtime
    port: int
    fwd: FaultyForwarder
    base: Baseline

    @property
    def failures(self) -> int:
        return self.runtime.plane.connect_failures["faulty"]


@pytest.fixture
async def rig(tmp_socket_dir: str) -> AsyncIterator[Rig]:
    fwd = await FaultyForwarder((BROKER_HOST, BROKER_PORT)).start()
    runtime = Runtime(
        make_settings(
            tmp_socket_dir,
            connect_timeout=1.0,
            broker_handshake_timeout=BROKER_HANDSHAKE_TIMEOUT,
            graceful_close_timeout=1.0,
        )
    )
    await runtime.start()
    try:
        ctx = runtime.ctx
        await ops.add_backend(ctx, "faulty", "dc", "127.0.0.1", fwd.port)
        await ops.add_backend(ctx, "direct", "dc", BROKER_HOST, BROKER_PORT)
        ops.set_farm(ctx, "only-faulty", ["faulty"])
        ops.set_farm(ctx, "pair", ["faulty", "direct"])
        ops.set_default_farm(ctx, "only-faulty")
        port = await runtime.listeners.start(ListenerSpec(0))
        yield Rig(runtime, port, fwd, baseline(runtime))
    finally:
        await runtime.stop()
        await fwd.stop()


async def _open(port: int) -> tuple[RawClient, object]:
    client = await RawClient.connect(port)
    return client, await client.open("/")


async def _close_all(clients: list[RawClient]) -> None:
    for client in clients:
        client.abort()


HANDSHAKE_FAULTS = {
    "refused": (Fault.REFUSE, 0),
    "reset inside Connection.Start": (Fault.RESET, 20),
    "dropped inside Connection.Start": (Fault.DROP, 20),
    "dropped between Start and Tune": (Fault.DROP, -1),  # -1: just after Start
    "accepts but never answers": (Fault.STALL, 0),
}


@pytest.mark.parametrize("name", list(HANDSHAKE_FAULTS))
async def test_handshake_fault_fails_over_then_506_when_nothing_is_left(
    rig: Rig, name: str
) -> None:
    mode, after = HANDSHAKE_FAULTS[name]
    if after == -1:
        after = await _start_frame_length()
    await rig.fwd.set_mode(mode, after)
    ctx = rig.runtime.ctx
    # A farm with a healthy second member: every new connection lands there.
    ops.map_vhost_to_farm(ctx, "/", "pair")
    clients = []
    for _ in range(3):
        client, answer = await _open(rig.port)
        assert isinstance(answer, ConnectionOpenOk), answer
        clients.append(client)
    opened = [s for s in ctx.sessions if not s.finished]
    assert {s.backend_name for s in opened} == {"direct"}
    assert rig.failures >= 2  # round-robin puts the faulty member first every other time
    del opened  # the leak check below counts Session objects still referenced
    # Only the faulty member: a clean Close 506, recorded as no_backend.
    ops.map_vhost_to_farm(ctx, "/", "only-faulty")
    client, answer = await _open(rig.port)
    assert answer == ConnectionClose(506, "No broker reachable for vhost /", 0, 0)
    await client.close_ok()
    assert await client.read_eof() == b""
    await _close_all([*clients, client])
    counted = await back_to_baseline(rig.runtime, rig.base)
    assert counted[R.NO_BACKEND] == 1
    assert counted[R.CLIENT_SNAPPED] == 3


async def _start_frame_length() -> int:
    """How many bytes the broker's Connection.Start takes (it depends on the broker)."""
    reader, writer = await asyncio.open_connection(BROKER_HOST, BROKER_PORT)
    try:
        writer.write(b"AMQP\x00\x00\x09\x01")
        head = await asyncio.wait_for(reader.readexactly(7), 5)
        return 7 + int.from_bytes(head[3:7], "big") + 1
    finally:
        writer.close()


async def test_reset_mid_session_gives_close_320_and_reconnect_works(rig: Rig) -> None:
    client, answer = await _open(rig.port)
    assert isinstance(answer, ConnectionOpenOk)
    assert rig.fwd.cut(Fault.RESET) == 1
    method = await client.read_method()
    assert method == ConnectionClose(320, "CONNECTION_FORCED - broker connection lost", 0, 0)
    assert await client.read_eof() == b""
    again, answer = await _open(rig.port)
    assert isinstance(answer, ConnectionOpenOk)
    await again.close()
    await _close_all([client, again])
    counted = await back_to_baseline(rig.runtime, rig.base)
    assert counted == {R.BROKER_SNAPPED: 1, R.CLIENT_GRACEFUL: 1}


async def test_drop_mid_frame_closes_client_which_reconnects(rig: Rig) -> None:
    """The broker stream ends inside a 1 MiB message: no Close can be injected mid-frame,
    so the client gets a bare close, and its reconnect works."""
    url = f"amqp://guest:guest@127.0.0.1:{rig.port}/"
    connection = await aio_pika.connect(url, timeout=10)
    channel = await connection.channel(publisher_confirms=True)
    queue = await channel.declare_queue(exclusive=True)
    await channel.default_exchange.publish(
        aio_pika.Message(b"x" * (1 << 20)), routing_key=queue.name
    )
    rig.fwd.cut_after(50_000, Fault.DROP)  # inside the body frames of the delivery
    closed = asyncio.get_running_loop().create_future()
    connection.close_callbacks.add(lambda *_: closed.done() or closed.set_result(None))

    async def ack(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()

    await queue.consume(ack)
    await asyncio.wait_for(closed, 10)
    [session] = [s for s in rig.runtime.ctx.sessions if s.opened_at is not None]
    await until(lambda: session.close_reason is R.BROKER_SNAPPED)
    session = None  # the leak check below counts Session objects still referenced
    # Reconnect and carry on.
    again = await aio_pika.connect(url, timeout=10)
    async with again:
        ch = await again.channel(publisher_confirms=True)
        q = await ch.declare_queue(exclusive=True)
        await ch.default_exchange.publish(aio_pika.Message(b"after"), routing_key=q.name)
        message = await q.get(timeout=5)
        assert message.body == b"after"
        await message.ack()
    counted = await back_to_baseline(rig.runtime, rig.base)
    assert counted[R.BROKER_SNAPPED] == 1


async def test_broker_stalling_mid_session_still_closes_within_the_deadline(rig: Rig) -> None:
    client, answer = await _open(rig.port)
    assert isinstance(answer, ConnectionOpenOk)
    [session] = list(rig.runtime.ctx.sessions)
    rig.fwd.freeze()
    loop = asyncio.get_running_loop()
    started = loop.time()
    ops.disconnect_session(rig.runtime.ctx, session.id)
    assert await client.read_method() == ConnectionClose(200, "OK", 0, 0)
    await client.close_ok()  # the proxy now closes the broker side, which never answers
    await until(lambda: session.finished, "the close deadline", timeout=5)
    assert loop.time() - started < 3
    assert session.close_reason is R.PROXY_FORCED
    session = None  # the leak check below counts Session objects still referenced
    await _close_all([client])
    counted = await back_to_baseline(rig.runtime, rig.base)
    assert counted == {R.PROXY_FORCED: 1}


async def test_unresolvable_dns_backend_fails_over(rig: Rig) -> None:
    ctx = rig.runtime.ctx
    await ops.add_backend(ctx, "nxdomain", "dc", "amqpprox-no-such-host.invalid", 5672, dns=True)
    ops.set_farm(ctx, "dns-pair", ["nxdomain", "direct"])
    ops.map_vhost_to_farm(ctx, "/", "dns-pair")
    client, answer = await _open(rig.port)
    assert isinstance(answer, ConnectionOpenOk)
    [session] = [s for s in ctx.sessions if not s.finished]
    assert (session.backend_name, session.connect_failures) == ("direct", 1)
    assert rig.runtime.plane.connect_failures["nxdomain"] == 1
    session = None  # the leak check below counts Session objects still referenced
    # Alone in its farm: a clean 506.
    ops.set_farm(ctx, "dns-only", ["nxdomain"])
    ops.map_vhost_to_farm(ctx, "/", "dns-only")
    lone, answer = await _open(rig.port)
    assert answer == ConnectionClose(506, "No broker reachable for vhost /", 0, 0)
    await client.close()
    await _close_all([client, lone])
    counted = await back_to_baseline(rig.runtime, rig.base)
    assert counted[R.NO_BACKEND] == 1


async def test_many_sessions_through_a_forwarder_that_resets_all_of_them(rig: Rig) -> None:
    """40 live sessions lose their broker at once: each client gets Close 320, none leaks."""
    opened = await asyncio.gather(*[_open(rig.port) for _ in range(40)])
    assert all(isinstance(answer, ConnectionOpenOk) for _c, answer in opened)
    assert rig.fwd.cut(Fault.RESET) == 40
    methods = await asyncio.gather(*[c.read_method() for c, _a in opened])
    assert {getattr(m, "reply_code", None) for m in methods} == {320}
    await _close_all([c for c, _a in opened])
    counted = await back_to_baseline(rig.runtime, rig.base)
    assert counted == {R.BROKER_SNAPPED: 40}
