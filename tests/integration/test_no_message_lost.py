"""No message lost: publishers with confirms and consumers with manual acks through the proxy.

Every message the broker confirmed is consumed, although half the clients are
gracefully disconnected mid-run (they reconnect and carry on) and the vhost is paused
and unpaused mid-run (held connections wait; established paused ones are cut and
reconnect). SIGTERM drains a proxy process: clients get ``Connection.Close 320``, no
publish waits forever, the process exits within its drain timeout, and every
confirmed message is on the broker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import aio_pika
import aiormq.exceptions
import pytest

from amqpprox.core import operations as ops
from amqpprox.core.context import Context
from amqpprox.core.sessions import CloseReason as R
from amqpprox.core.sessions import SessionBase, SessionState
from amqpprox.proxy.session import Session
from tests.conftest import BROKER_HOST, BROKER_PORT, RunningProxy, free_closed_port
from tests.integration.test_sessions import unread_bytes
from tests.polling import until

pytestmark = pytest.mark.broker

DIRECT_URL = f"amqp://guest:guest@{BROKER_HOST}:{BROKER_PORT}/"
RECONNECTABLE = (
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.AMQPError,
    ConnectionError,
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
)


@dataclass
class Flow:
    """One client's queue and what happened to its messages."""

    queue: str
    count: int
    confirmed: set[int] = field(default_factory=set)
    consumed: set[int] = field(default_factory=set)
    reconnects: int = 0

    @property
    def done(self) -> bool:
        return len(self.confirmed) == self.count and self.consumed >= self.confirmed


async def _run_flow(url: str, flow: Flow, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    seq = 0
    while not flow.done:
        assert loop.time() < deadline, f"{flow.queue}: not done by the deadline"
        try:
            connection = await aio_pika.connect(url, timeout=30)
            async with connection:
                publisher = await connection.channel(publisher_confirms=True)
                consumer = await connection.channel()
                await consumer.set_qos(prefetch_count=50)
                queue = await consumer.declare_queue(flow.queue, auto_delete=False)

                async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                    flow.consumed.add(int(message.body))
                    await message.ack()

                await queue.consume(on_message)
                while seq < flow.count:
                    # Confirmed or not: an unconfirmed publish is sent again after reconnecting.
                    await publisher.default_exchange.publish(
                        aio_pika.Message(str(seq).encode()), routing_key=flow.queue, timeout=10
                    )
                    flow.confirmed.add(seq)
                    seq += 1
                await until(lambda: flow.consumed >= flow.confirmed, "deliveries", timeout=20)
        except RECONNECTABLE:
            flow.reconnects += 1


async def _delete_queues(names: list[str]) -> None:
    connection = await aio_pika.connect(DIRECT_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)


async def _no_loss(proxy: RunningProxy, clients: int, count: int) -> None:
    ctx = proxy.ctx
    tag = uuid.uuid4().hex[:8]
    flows = [Flow(f"apx-noloss-{tag}-{i}", count) for i in range(clients)]
    total = clients * count
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 45 + count * clients / 100
    tasks = [asyncio.create_task(_run_flow(proxy.url(), flow, deadline)) for flow in flows]

    def confirmed() -> int:
        return sum(len(f.confirmed) for f in flows)

    try:
        await until(lambda: confirmed() >= total // 3, "a third confirmed", timeout=60)
        live = [s for s in ctx.sessions if not s.finished and s.opened_at is not None]
        graceful = live[: len(live) // 2]
        assert graceful, "no open session to disconnect gracefully"
        for session in graceful:
            ops.disconnect_session(ctx, session.id)
        await until(lambda: confirmed() >= 2 * total // 3, "two thirds confirmed", timeout=60)
        ops.pause_vhost(ctx, "/")
        # The pause holds something before it ends: a client's frames (a publish) kept
        # from the broker, or a (re)connecting client held at Connection.Open.
        held = await until(lambda: _held_by_the_pause(ctx), "the pause to hold a publish")
        ops.unpause_vhost(ctx, "/")
        await asyncio.wait_for(asyncio.gather(*tasks), deadline - loop.time())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _delete_queues([f.queue for f in flows])
    for flow in flows:
        assert flow.confirmed == set(range(count)), flow.queue
        assert flow.consumed >= flow.confirmed, (flow.queue, flow.confirmed - flow.consumed)
    assert sum(f.reconnects for f in flows) >= len(graceful)
    await until(lambda: all(s.finished for s in graceful), "graceful disconnects recorded")
    reasons = Counter(s.close_reason for s in graceful)
    assert set(reasons) <= {R.PROXY_GRACEFUL, R.PROXY_FORCED}, reasons
    # The graceful close (Close 200 to the client, CloseOk awaited) ran to its end at
    # least once; PROXY_FORCED is only its timeout.
    assert reasons[R.PROXY_GRACEFUL] >= 1, reasons
    assert held, "the pause held nothing"


def _held_by_the_pause(ctx: Context) -> list[SessionBase]:
    """Sessions of / the pause is holding: a client held at Connection.Open, or client
    bytes kept from the broker (read and held, or left unread in the kernel)."""
    return [
        s
        for s in ctx.sessions
        if not s.finished
        and s.paused
        and (
            s.state is SessionState.HELD
            or (isinstance(s, Session) and bool(s._held))
            or (s.state is SessionState.PAUSED and unread_bytes(s) > 0)
        )
    ]


async def test_no_message_lost_20_clients(proxy: RunningProxy) -> None:
    await _no_loss(proxy, clients=20, count=60)


@pytest.mark.soak
@pytest.mark.timeout(600)
async def test_no_message_lost_200_clients(proxy: RunningProxy) -> None:
    await _no_loss(proxy, clients=200, count=200)


# -- SIGTERM drains a proxy process ----------------------------------------------------------
DRAIN_CLIENTS = 10


async def test_sigterm_drains_with_close_320_and_loses_no_confirmed_message(
    tmp_socket_dir: str,
) -> None:
    control = os.path.join(tmp_socket_dir, "ctl")
    port = free_closed_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 (starting it does not wait for it)
        [sys.executable, "-m", "amqpprox", "--listenPort", str(port),
         "--destinationDNS", "127.0.0.1", "--destinationPort", str(BROKER_PORT),
         "--controlSocket", control, "--logDirectory", os.path.join(tmp_socket_dir, "logs"),
         "--adminPort", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    tag = uuid.uuid4().hex[:8]
    names = [f"apx-drain-{tag}-{i}" for i in range(DRAIN_CLIENTS)]
    confirmed: dict[str, set[int]] = {name: set() for name in names}
    closes: list[str] = []
    url = f"amqp://guest:guest@127.0.0.1:{port}/"
    running = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def publish_until_closed(name: str) -> None:
        connection = await aio_pika.connect(url, timeout=10)
        connection.close_callbacks.add(lambda _c, exc=None: closes.append(repr(exc)))
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(name, auto_delete=False)
        seq = 0
        try:
            while True:
                await channel.default_exchange.publish(
                    aio_pika.Message(str(seq).encode()), routing_key=name, timeout=10
                )
                confirmed[name].add(seq)
                seq += 1
                if seq == 20:
                    running.set()
        except RECONNECTABLE:
            return  # the Close 320: this publish may or may not have reached the broker

    try:
        await until(lambda: _listening(port), "the proxy process listening", timeout=15)
        tasks = [asyncio.create_task(publish_until_closed(n)) for n in names]
        await asyncio.wait_for(running.wait(), 20)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        # Every in-flight publish resolves (confirmed or failed): none waits forever.
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        out, _err = await asyncio.to_thread(proc.communicate, timeout=15)
        elapsed = time.monotonic() - started
        assert proc.returncode == 0
        assert elapsed < 10, f"exit took {elapsed:.1f} s (drain timeout 10 s)"
        assert "Stopping amqpprox" in out
        assert len(closes) == DRAIN_CLIENTS
        assert all("320" in text for text in closes), closes
        # Every confirmed message is on the broker.
        connection = await aio_pika.connect(DIRECT_URL, timeout=10)
        async with connection:
            channel = await connection.channel()
            for name in names:
                queue = await channel.declare_queue(name, auto_delete=False)
                stored: set[int] = set()
                while (message := await queue.get(fail=False, timeout=5)) is not None:
                    stored.add(int(message.body))
                    await message.ack()
                assert confirmed[name] <= stored, (name, confirmed[name] - stored)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _delete_queues(names)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
