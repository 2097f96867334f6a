"""Paced eviction against the real broker: pace, cancel, farm change, the control socket.

Two backends are two FaultyForwarders in front of the same RabbitMQ, so which backend a
session is on is the proxy's own record (CONN / REST), and clients are raw AMQP clients
that read the exact Connection.Close they get.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from amqpprox.core import moves
from amqpprox.core import operations as ops
from amqpprox.core.eviction import Eviction, JobState
from tests.conftest import RunningProxy, ctl, running_proxy
from tests.faults import FaultyForwarder
from tests.moves_rig import (
    closed_at,
    configure_two_backends,
    on_backend,
    open_clients,
    session_ids,
    still_open,
)
from tests.polling import until

pytestmark = pytest.mark.timeout(60)


async def test_forty_sessions_at_ten_a_second_take_four_seconds_never_faster(
    proxy2: RunningProxy,
) -> None:
    evicted = await open_clients(proxy2.port, 40)
    assert len(on_backend(proxy2, "b1")) == 40
    ops.map_vhost_to_farm(proxy2.ctx, "/", "f2")  # new sessions go to b2 from now on
    reply = await ctl(proxy2.control_socket, "BACKEND EVICT b1 10")
    assert reply == "Eviction 1 started: 40 sessions of backend b1 at 10/s\n"
    later = await open_clients(proxy2.port, 3)  # opened after the start, on b2
    results = await asyncio.gather(*(closed_at(c) for c in evicted))
    for _at, close in results:
        assert (close.reply_code, close.reply_text) == (
            320,
            "CONNECTION_FORCED - evicted from backend b1",
        )
    eviction = ops_eviction(proxy2, 1)
    await until(lambda: eviction.state is JobState.DONE, "the eviction to end")
    assert (eviction.total, eviction.done, eviction.evicted) == (40, 40, 40)
    # The proxy's closes: never 11 inside one second.
    proxy_times = eviction.close_times
    assert all(proxy_times[i + 10] - proxy_times[i] >= 1.0 for i in range(len(proxy_times) - 10))
    # What the clients saw: about 3.9 s from the first Close to the last, and never a burst.
    times = sorted(at for at, _close in results)
    assert 3.6 <= times[-1] - times[0] <= 6.0, times[-1] - times[0]
    assert all(times[i + 10] - times[i] >= 0.9 for i in range(len(times) - 10))
    for client in later:
        await still_open(client)
    assert len(on_backend(proxy2, "b2")) == 3
    listing = await ctl(proxy2.control_socket, "BACKEND EVICTIONS")
    assert listing.startswith(
        "id=1 state=done backend=b1 reason=evict sessionsTotal=40 sessionsDone=40 "
        "sessionsClosed=40 perSecond=10 startedAt="
    )
    async with aiohttp.ClientSession() as http, http.get(proxy2.admin_url + "/metrics") as got:
        text = await got.text()
    assert 'amqpprox_sessions_evicted_total{backend="b1",reason="evict"} 40\n' in text
    assert 'amqpprox_sessions_evicted_total{backend="b2",reason="evict"} 0\n' in text
    assert "amqpprox_evictions_running 0\n" in text


def ops_eviction(running: RunningProxy, eviction_id: int) -> Eviction:
    return moves.get_eviction(running.ctx, eviction_id)


async def test_a_cancelled_eviction_closes_no_more_sessions(proxy2: RunningProxy) -> None:
    clients = await open_clients(proxy2.port, 12)
    async with aiohttp.ClientSession() as http:
        url = proxy2.admin_url + "/api/v1"
        async with http.post(url + "/backends/b1/evict", json={"per_second": 4}) as response:
            assert response.status == 202
            started = await response.json()
        assert started["sessions_total"] == 12 and started["state"] == "running"
        eviction = ops_eviction(proxy2, started["id"])
        await until(lambda: eviction.evicted >= 2, "two sessions to be evicted")
        async with http.post(url + f"/evictions/{started['id']}/cancel", json={}) as response:
            assert response.status == 200
            body = await response.json()
        assert body["state"] == "cancelled" and body["finished_at"] is not None
        closed = body["sessions_closed"]
        assert 2 <= closed < 12
        assert eviction.task is not None
        task = eviction.task
        await until(task.done, "the eviction's task to end")
        assert eviction.evicted == closed
        async with http.post(url + f"/evictions/{started['id']}/cancel", json={}) as response:
            assert response.status == 409
            assert (await response.json())["error"] == "invalid_state"
    # The first ``closed`` sessions (in the eviction's order) got a Close; the rest relay.
    evicted_ids = set(eviction.session_ids[:closed])
    for client, session_id in zip(clients, session_ids(proxy2, clients), strict=True):
        if session_id in evicted_ids:
            _at, close = await closed_at(client)
            assert close.reply_code == 320
        else:
            await still_open(client)
    await until(lambda: len(on_backend(proxy2, "b1")) == 12 - closed, "the evicted to finish")


async def redefine_without_b1(running: RunningProxy, how: str) -> None:
    """Farm ``both`` redefined as [b2]: by FARM ADD, REST PUT or a definitions import."""
    if how == "control":
        assert await ctl(running.control_socket, "FARM ADD both round-robin b2") == ""
        return
    api = running.admin_url + "/api/v1"
    async with aiohttp.ClientSession() as http:
        if how == "rest":
            async with http.put(api + "/farms/both", json={"backends": ["b2"]}) as response:
                assert response.status == 200, await response.text()
            return
        async with http.get(api + "/definitions") as response:
            document = await response.json()
        for farm in document["farms"]:
            if farm["name"] == "both":
                farm["backends"] = ["b2"]
        async with http.put(api + "/definitions", json=document) as response:
            assert response.status == 200, await response.text()


@pytest.mark.parametrize("how", ["control", "rest", "definitions"])
async def test_a_backend_leaving_a_farm_evicts_only_its_sessions_of_that_farm(
    proxy2: RunningProxy, how: str
) -> None:
    ctx = proxy2.ctx
    via_f1 = await open_clients(proxy2.port, 2)  # b1 through farm f1
    ops.set_farm(ctx, "both", ["b1", "b2"])
    ops.map_vhost_to_farm(ctx, "/", "both")
    via_both = [(await open_clients(proxy2.port, 1))[0] for _ in range(6)]  # b1, b2, b1...
    routes = [(s.farm_name, s.backend_name) for s in ctx.sessions]
    assert routes.count(("f1", "b1")) == 2
    assert {("both", "b1"), ("both", "b2")} <= set(routes)
    on_b1 = routes.count(("both", "b1"))
    await redefine_without_b1(proxy2, how)
    ids = session_ids(proxy2, via_both)
    gone = [
        c for c, i in zip(via_both, ids, strict=True) if ctx.sessions.get(i).backend_name == "b1"
    ]
    for client in gone:
        _at, close = await closed_at(client)
        assert (close.reply_code, close.reply_text) == (
            320,
            "CONNECTION_FORCED - backend b1 left farm both",
        )
    [eviction] = moves.list_evictions(ctx)
    await until(lambda: eviction.state is JobState.DONE, "the eviction to end")
    assert (eviction.backend, eviction.reason.value) == ("b1", "farm_change")
    assert eviction.total == eviction.evicted == len(gone) == on_b1
    for client in via_f1 + [c for c in via_both if c not in gone]:
        await still_open(client)


async def test_farm_change_eviction_off(
    tmp_socket_dir: str, forwarders: tuple[FaultyForwarder, FaultyForwarder]
) -> None:
    async with running_proxy(
        tmp_socket_dir, simple=False, farm_change_evict_per_second=0
    ) as running:
        await configure_two_backends(running, forwarders)
        ctx = running.ctx
        ops.set_farm(ctx, "f1", ["b1", "b2"])
        clients = await open_clients(running.port, 2)
        ops.set_farm(ctx, "f1", ["b2"])
        assert ctx.moves.evictions == {}
        for client in clients:
            await still_open(client)
