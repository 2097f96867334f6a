"""Hostile input on the control plane, while a healthy AMQP client measures its round trips.

Control lines of megabytes, binary lines, hundreds of concurrent control clients,
clients that never read their reply; REST bodies that are huge, slow, malformed or of
the wrong type on every mutating route. Every one gets an answer or a close, nothing
answers 500, and the AMQP data path is never stalled: a healthy client's round trips
carry on (no error, p99 under a second, none over three). How fast they stay is a
measurement, not a test: ``make bench`` prints it (``python -m bench.figures``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from amqpprox.admin.app import make_admin_app
from tests.conftest import RunningProxy
from tests.polling import until
from tests.reliability import HealthyClient

pytestmark = pytest.mark.broker

CONTROL_CLIENTS = 200
# A stalled data path (the event loop blocked by control-plane work, a request that
# holds up the rest) costs seconds: these bounds catch that and nothing a loaded 2-core
# machine does to a healthy round trip of a few milliseconds.
P99_LIMIT = 1.0
STALL = 3.0


@pytest.fixture
async def healthy(proxy: RunningProxy) -> AsyncIterator[HealthyClient]:
    async with HealthyClient(proxy.url()) as client:
        yield client


async def _control(path: str, data: bytes, *, read: bool = True) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), 10)
    try:
        writer.write(data)
        # The server may close on a line it will not read to the end.
        with contextlib.suppress(ConnectionError, OSError):
            await asyncio.wait_for(writer.drain(), 10)
        if not read:
            return b""
        try:
            return await asyncio.wait_for(reader.read(), 10)
        except (ConnectionError, OSError):
            return b""
    finally:
        writer.transport.abort()


async def test_control_socket_abuse_leaves_the_data_path_fast(
    proxy: RunningProxy, healthy: HealthyClient
) -> None:
    await _control_abuse(proxy, healthy, CONTROL_CLIENTS, worst=STALL)


@pytest.mark.soak
async def test_control_socket_abuse_1000_clients(
    proxy: RunningProxy, healthy: HealthyClient
) -> None:
    await _control_abuse(proxy, healthy, 1000, worst=STALL)


async def _control_abuse(
    proxy: RunningProxy, healthy: HealthyClient, clients: int, *, worst: float
) -> None:
    """Also the regression test of the control socket's backlog: asyncio's default of 100
    reset part of a burst of 200 concurrent clients.

    The hostile clients run on an event loop of their own in another thread, as separate
    processes would: the proxy's loop carries only the proxy's side of the abuse.
    """
    path = proxy.control_socket
    first = healthy.round_trips
    results = await asyncio.to_thread(asyncio.run, _abuse(path, clients))
    replies = results[:clients]
    assert all(r.startswith(b"id=") for r in replies), {r[:40] for r in replies}
    for reply in results[clients : clients + 5]:
        assert b"AUTH (" not in reply  # closed or refused; never run as a command
    for reply in results[clients + 5 :]:
        assert reply.startswith(b"AUTH ("), reply[:60]  # an unknown verb answers with HELP
    control = proxy.runtime.control
    await until(lambda: not control._clients, "control clients finished")
    # Over 300 round trips from the start of the burst (about 1.5 s): none stalled.
    await until(lambda: healthy.round_trips >= first + 300, "round trips after the abuse")
    window = sorted(healthy.latencies[first:])
    print(
        f"control abuse x{clients}: p50 {window[len(window) // 2] * 1000:.1f} ms, "
        f"p99 {healthy.percentile(0.99, first) * 1000:.1f} ms, worst {window[-1] * 1000:.1f} ms"
    )
    healthy.assert_healthy(P99_LIMIT, since=first, max_limit=worst)


async def _abuse(path: str, clients: int) -> list[bytes]:
    rng = random.Random(7)
    # Never read their reply (and stay connected while the rest runs).
    idle = []
    for _ in range(20):
        _reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"HELP\n")
        idle.append(writer)
    many = [_control(path, b"CONN\n") for _ in range(clients)]
    huge = [_control(path, b"C" * (4 << 20) + b"\n") for _ in range(3)]
    huge_no_newline = [_control(path, b"\xff" * (2 << 20)) for _ in range(2)]
    binary = [_control(path, rng.randbytes(200).replace(b"\n", b"") + b"\n") for _ in range(20)]
    results = await asyncio.gather(*many, *huge, *huge_no_newline, *binary)
    for writer in idle:
        writer.transport.abort()
    return list(results)


def _concrete(path: str) -> str:
    values = {"name": "x", "vhost": "v", "port": "65001", "id": "1", "action": "pause"}
    values["direction"] = "INGRESS"
    return re.sub(r"\{(\w+)[^}]*\}", lambda m: values.get(m.group(1), "x"), path)


def _mutating_api_routes(proxy: RunningProxy) -> list[tuple[str, str]]:
    app = make_admin_app(proxy.ctx)
    routes = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method in ("GET", "HEAD", "OPTIONS"):
            continue
        if resource.canonical.startswith("/api/"):
            routes.append((route.method, _concrete(resource.canonical)))
    return routes


HOSTILE_BODIES: list[tuple[str, bytes]] = [
    ("application/json", b"[]"),
    ("application/json", b'"text"'),
    ("application/json", b"1e999"),
    ("application/json", b"null"),
    ("application/json", b'{"port": "abc", "name": 123, "members": "x", "host": [1]}'),
    ("application/json", b"[" * 100_000 + b"]" * 100_000),
    ("application/json", b'{"a": ' * 50_000 + b"1" + b"}" * 50_000),
    ("application/json", b"{"),
    ("application/json", b"\xff\xfe\x00garbage"),
    ("text/plain", b"port=5672"),
    ("application/x-www-form-urlencoded", b"a=b"),
]


async def test_every_mutating_rest_route_survives_hostile_bodies(
    proxy: RunningProxy, healthy: HealthyClient
) -> None:
    routes = _mutating_api_routes(proxy)
    assert len(routes) >= 15
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession(proxy.admin_url) as http:
        for method, path in routes:
            for content_type, body in HOSTILE_BODIES:
                async with http.request(
                    method, path, data=io.BytesIO(body), headers={"Content-Type": content_type}
                ) as response:
                    text = await response.text()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                    assert response.status < 500, (method, path, body[:30], text)
                    if response.status >= 400:
                        assert "error" in json.loads(text), text
            # 8 MiB: refused before it is all read.
            big = io.BytesIO(b"[" + b"1," * (4 << 20) + b"1]")
            async with http.request(
                method, path, data=big, headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status < 500, (method, path, response.status)
                statuses[response.status] = statuses.get(response.status, 0) + 1
    assert statuses.get(413, 0) >= 1
    healthy.assert_healthy(P99_LIMIT, max_limit=STALL)


async def test_slow_rest_bodies_do_not_block_other_requests(
    proxy: RunningProxy, healthy: HealthyClient
) -> None:
    """Ten clients trickle a body a byte at a time; the admin app and the data path carry on."""
    port = proxy.runtime.admin_port
    assert port is not None
    slow = []
    for _ in range(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"PUT /api/v1/datacenter HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        slow.append((reader, writer))
    async with aiohttp.ClientSession(proxy.admin_url) as http:
        loop = asyncio.get_running_loop()
        for _ in range(10):
            for _reader, writer in slow:
                writer.write(b" ")
            started = loop.time()
            async with http.get("/healthz") as response:
                assert response.status == 200
            assert loop.time() - started < STALL  # blocked behind a trickle: never answers
            await asyncio.sleep(0.05)  # the trickle's pace
    for _reader, writer in slow:
        writer.transport.abort()
    healthy.assert_healthy(P99_LIMIT, max_limit=STALL)
