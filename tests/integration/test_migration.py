"""One-step vhost migration against the real broker, with real pika clients.

Twenty pika clients publish with confirms to one queue through the proxy, on backend b1
(farm f1). ``POST /api/v1/vhosts/%2F/migrate {"farm": "f2"}`` pauses the vhost, maps it
to f2, closes the twenty at the pace with Connection.Close 320, and unpauses: the
clients reconnect (held at Open until then) and end on b2, and every message the broker
confirmed is in the queue. Cancel and the held client are checked with raw clients.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pika
import pika.exceptions
import pytest

from amqpprox.amqp.methods import ConnectionOpenOk
from amqpprox.core import moves
from amqpprox.core.sessions import SessionState
from tests.conftest import BROKER_PORT, RunningProxy, ctl, pika_params
from tests.moves_rig import closed_at, on_backend, open_clients, session_ids, still_open
from tests.polling import until
from tests.rawamqp import RawClient

pytestmark = pytest.mark.timeout(90)
CLIENTS = 20


@dataclass
class Publisher:
    """A pika client publishing with confirms that reconnects after the proxy closes it."""

    port: int
    queue: str
    index: int
    stop: threading.Event
    confirmed: list[str] = field(default_factory=list)
    connections: int = 0
    closes: list[tuple[int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    published_since_reconnect: int = 0

    def run(self) -> None:
        seq = 0
        while True:
            try:
                params = pika_params(
                    self.port, client_properties={"connection_name": f"mig-{self.index}"}
                )
                conn = pika.BlockingConnection(params)
            except pika.exceptions.AMQPError as error:
                self.errors.append(f"connect: {error!r}")
                if len(self.errors) > 20:
                    return
                continue
            self.connections += 1
            self.published_since_reconnect = 0
            try:
                channel = conn.channel()
                channel.confirm_delivery()
                while True:
                    body = f"{self.index}-{seq}"
                    seq += 1
                    channel.basic_publish("", self.queue, body.encode())
                    self.confirmed.append(body)  # basic_publish returned: the broker acked
                    self.published_since_reconnect += 1
                    if self.stop.is_set() and self.connections > 1:
                        conn.close()
                        return
                    conn.process_data_events(0.02)  # a modest publishing rate
            except pika.exceptions.ConnectionClosedByBroker as closed:
                self.closes.append((closed.reply_code, closed.reply_text))


def broker_queue(name: str, *, delete: bool = False) -> list[str]:
    """Declare ``name`` on the broker directly; with ``delete``, drain it, delete it and
    return every body it held."""
    conn = pika.BlockingConnection(pika_params(BROKER_PORT))
    try:
        channel = conn.channel()
        channel.queue_declare(name, durable=False, auto_delete=False)
        bodies: list[str] = []
        if delete:
            while True:
                _method, _props, body = channel.basic_get(name, auto_ack=True)
                if body is None:
                    break
                bodies.append(body.decode())
            channel.queue_delete(name)
        return bodies
    finally:
        conn.close()


async def api(
    running: RunningProxy, method: str, path: str, body: object | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, running.admin_url + "/api/v1" + path, json=body) as response,
    ):
        return response.status, await response.json()


async def test_twenty_pika_clients_move_to_the_new_farm_and_nothing_confirmed_is_lost(
    proxy2: RunningProxy,
) -> None:
    queue = f"amqpprox-migrate-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(broker_queue, queue)
    stop = threading.Event()
    publishers = [Publisher(proxy2.port, queue, i, stop) for i in range(CLIENTS)]
    threads = [threading.Thread(target=p.run, daemon=True) for p in publishers]
    try:
        for thread in threads:
            thread.start()
        await until(lambda: len(on_backend(proxy2, "b1")) == CLIENTS, "twenty sessions on b1")
        await until(lambda: all(p.confirmed for p in publishers), "every client publishing")
        status, started = await api(
            proxy2, "POST", "/vhosts/%2F/migrate", {"farm": "f2", "per_second": 10}
        )
        assert status == 202, started
        assert started["state"] == "running"
        assert started["from"] == {"kind": "farm", "name": "f1"}
        assert started["to"] == {"kind": "farm", "name": "f2"}
        assert started["sessions_total"] == CLIENTS
        path = f"/migrations/{started['id']}"

        async def state() -> str:
            return str((await api(proxy2, "GET", path))[1]["state"])

        deadline = asyncio.get_running_loop().time() + 20
        while await state() == "running":
            assert asyncio.get_running_loop().time() < deadline, "the migration never ended"
            await asyncio.sleep(0.05)  # polling the REST resource with a deadline
        status, done = await api(proxy2, "GET", path)
        assert (done["state"], done["sessions_moved"], done["error"]) == ("done", CLIENTS, None)
        assert done["finished_at"] >= done["started_at"]
        await until(
            lambda: (
                len(on_backend(proxy2, "b2")) == CLIENTS
                and all(p.connections > 1 and p.published_since_reconnect for p in publishers)
            ),
            "every client back, on b2, publishing",
            timeout=20,
        )
        assert on_backend(proxy2, "b1") == []
        assert proxy2.ctx.state.is_vhost_paused("/") is False
        stop.set()
        for thread in threads:
            await asyncio.to_thread(thread.join, 20)
            assert not thread.is_alive()
    finally:
        stop.set()
        bodies = await asyncio.to_thread(broker_queue, queue, delete=True)
    text = "CONNECTION_FORCED - vhost / is moving to farm f2"
    for publisher in publishers:
        assert publisher.closes == [(320, text)], publisher.closes
        assert publisher.errors == []
    confirmed = {body for p in publishers for body in p.confirmed}
    assert confirmed <= set(bodies), f"{len(confirmed - set(bodies))} confirmed messages lost"
    reply = await ctl(proxy2.control_socket, "VHOST MIGRATIONS")
    assert reply.startswith(
        f"id={started['id']} state=done vhost=/ from=farm:f1 to=farm:f2 sessionsTotal=20 "
        "sessionsMoved=20 perSecond=10 startedAt="
    )
    assert reply.endswith(" error=-\n")
    async with (
        aiohttp.ClientSession() as http,
        http.get(proxy2.admin_url + "/metrics") as response,
    ):
        metrics = await response.text()
    assert 'amqpprox_migrations_total{result="done"} 1\n' in metrics
    assert 'amqpprox_sessions_evicted_total{backend="b1",reason="migration"} 20\n' in metrics


async def test_cancel_stops_the_eviction_releases_held_clients_and_keeps_the_mapping(
    proxy2: RunningProxy,
) -> None:
    clients = await open_clients(proxy2.port, 8)
    reply = await ctl(proxy2.control_socket, "VHOST MIGRATE / BACKEND b2 2")
    assert reply == "Migration 1 started: vhost / to backend b2, 8 sessions at 2/s\n"
    migration = moves.get_migration(proxy2.ctx, 1)
    assert proxy2.ctx.state.is_vhost_paused("/")
    # A client arriving now is held at Open.
    late = await RawClient.connect(proxy2.port)
    late_open = asyncio.ensure_future(late.open("/"))
    await until(
        lambda: any(s.state is SessionState.HELD for s in proxy2.ctx.sessions), "a held session"
    )
    await until(lambda: migration.sessions_moved >= 1, "one session moved")
    reply = await ctl(proxy2.control_socket, "VHOST MIGRATIONS CANCEL 1")
    moved = migration.eviction.evicted
    assert reply == f"Migration 1 cancelled: {migration.sessions_moved} of 8 sessions moved\n"
    assert isinstance(await late_open, ConnectionOpenOk)  # released, to the new target
    assert proxy2.ctx.state.is_vhost_paused("/") is False
    assert proxy2.ctx.state.mappings["/"].target == "b2"
    status, body = await api(proxy2, "GET", "/migrations/1")
    assert (status, body["state"]) == (200, "cancelled")
    assert migration.task is not None
    await until(migration.task.done, "the migration's task to end")
    assert migration.eviction.evicted == moved
    evicted = set(migration.eviction.session_ids[:moved])
    for client, session_id in zip(clients, session_ids(proxy2, clients), strict=True):
        if session_id in evicted:
            _at, close = await closed_at(client)
            assert close.reply_code == 320
        else:
            await still_open(client)
    await still_open(late)
    assert session_ids(proxy2, [late])[0] in on_backend(proxy2, "b2")
    status, again = await api(proxy2, "POST", "/migrations/1/cancel", {})
    assert (status, again["error"]) == (409, "invalid_state")
    assert again["message"] == "migration 1 is cancelled already"


async def test_vhost_unpause_during_a_migration_leaves_its_held_clients_to_the_migration(
    proxy2: RunningProxy,
) -> None:
    _held_open = await open_clients(proxy2.port, 4)  # the sessions the migration moves
    reply = await ctl(proxy2.control_socket, "VHOST MIGRATE / BACKEND b2 1")
    assert reply == "Migration 1 started: vhost / to backend b2, 4 sessions at 1/s\n"
    late = await RawClient.connect(proxy2.port)
    late_open = asyncio.ensure_future(late.open("/"))
    await until(
        lambda: any(s.state is SessionState.HELD for s in proxy2.ctx.sessions), "a held session"
    )
    (held,) = [s for s in proxy2.ctx.sessions if s.state is SessionState.HELD]
    # An operator's unpause ends the operator's pause, not the migration's hold: the
    # client would otherwise connect before its old sessions have moved.
    assert await ctl(proxy2.control_socket, "VHOST UNPAUSE /") == ""
    assert held.state is SessionState.HELD
    assert proxy2.ctx.state.is_vhost_paused("/")
    assert await ctl(proxy2.control_socket, "VHOST MIGRATIONS CANCEL 1") == (
        f"Migration 1 cancelled: {moves.get_migration(proxy2.ctx, 1).sessions_moved} of 4 "
        "sessions moved\n"
    )
    assert isinstance(await late_open, ConnectionOpenOk)  # released by the migration's end
    assert held.id in on_backend(proxy2, "b2")
