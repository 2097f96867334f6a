"""A proxy configured only through REST carries real traffic; sessions through REST;
a definitions document moved to a second proxy routes the same way."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aio_pika
import aiohttp
import aiormq.exceptions
import pytest

from amqpprox.runtime import Runtime
from tests.admin.conftest import reserve_port
from tests.conftest import AMQP_LISTENER, BROKER_HOST, BROKER_PORT, make_settings
from tests.polling import until

pytestmark = pytest.mark.broker

DEADLINE = 10.0


class Admin:
    """A running proxy, its REST base URL and the port REST made it listen on."""

    def __init__(self, runtime: Runtime, http: aiohttp.ClientSession, port: int) -> None:
        self.runtime = runtime
        self.http = http
        self.port = port
        self.base = f"http://127.0.0.1:{runtime.admin_port}/api/v1"

    async def call(self, method: str, path: str, body: object = None, status: int = 200) -> Any:
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        kwargs["headers"] = {"Content-Type": "application/json"}  # a REST POST must say JSON
        async with self.http.request(method, self.base + path, **kwargs) as response:
            text = await response.text()
            assert response.status == status, f"{method} {path}: {response.status} {text}"
            return await response.json() if text else None

    def url(self, vhost: str = "/") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{quote(vhost, safe='')}"


@contextlib.asynccontextmanager
async def started_proxy() -> AsyncIterator[Admin]:
    with tempfile.TemporaryDirectory(prefix="apx") as path, reserve_port() as port:
        runtime = Runtime(make_settings(path))
        await runtime.start()
        try:
            async with aiohttp.ClientSession() as http:
                yield Admin(runtime, http, port)
        finally:
            await runtime.stop()


async def configure_through_rest(admin: Admin) -> None:
    await admin.call("PUT", "/datacenter", {"name": "dc1"})
    backend = {"datacenter": "dc1", "host": BROKER_HOST, "port": BROKER_PORT}
    await admin.call("PUT", "/backends/rabbit", backend, 201)
    await admin.call("PUT", "/backends/rabbit-dns", {**backend, "dns": True}, 201)
    farm = {"backends": ["rabbit", "rabbit-dns"], "partitions": ["datacenter-affinity"]}
    await admin.call("PUT", "/farms/main", farm, 201)
    await admin.call("PUT", "/mappings/%2F", {"farm": "main"}, 201)
    await admin.call("PUT", "/default-farm", {"farm": "main"}, 201)
    await admin.call("PUT", f"/listeners/{admin.port}", {"tls": False}, 201)


async def roundtrip(url: str, count: int = 20) -> list[bytes]:
    connection = await aio_pika.connect(url, timeout=DEADLINE)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(f"rest-{uuid.uuid4().hex}", exclusive=True)
        for i in range(count):
            await channel.default_exchange.publish(
                aio_pika.Message(f"m{i}".encode()), routing_key=queue.name
            )
        got: list[bytes] = []
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    got.append(message.body)
                if len(got) == count:
                    break
        return got


async def test_configured_only_through_rest_carries_traffic() -> None:
    async with started_proxy() as admin:
        await configure_through_rest(admin)
        got = await asyncio.wait_for(roundtrip(admin.url()), 30)
        assert got == [f"m{i}".encode() for i in range(20)]
        overview = await admin.call("GET", "/overview")
        assert overview["totals"]["sessions_opened"] == 1
        assert overview["totals"]["in_bytes"] > 0


async def test_sessions_through_rest() -> None:
    async with started_proxy() as admin:
        await configure_through_rest(admin)
        conn = await aio_pika.connect(admin.url(), timeout=DEADLINE)
        closed: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        def on_close(_conn: object, exc: BaseException | None = None) -> None:
            if not closed.done():
                closed.set_result(exc)

        conn.close_callbacks.add(on_close)
        try:
            await conn.channel()
            page = await admin.call("GET", "/sessions?state=active")
            assert page["filtered_count"] == 1
            session = page["items"][0]
            sid = session["id"]
            assert session["vhost"] == "/" and session["backend"] in ("rabbit", "rabbit-dns")
            assert session["farm"] == "main" and session["client"]["host"] == "127.0.0.1"
            for query, count in [
                ("vhost=%2F", 1),
                ("vhost=other", 0),
                (f"backend={session['backend']}", 1),
                ("backend=nosuch", 0),
                ("source=127.0.0.1", 1),
                (f"source=127.0.0.1:{session['client']['port']}", 1),
                ("source=10.9.9.9", 0),
                ("state=held", 0),
                ("sort=in_bytes&sort_reverse=true&page=1&page_size=1", 1),
            ]:
                assert (await admin.call("GET", "/sessions?" + query))["filtered_count"] == count
            empty_page = await admin.call("GET", "/sessions?page=2&page_size=1")
            assert empty_page["items"] == [] and empty_page["page_count"] == 1
            assert (await admin.call("GET", f"/sessions/{sid}"))["id"] == sid
            vhosts = await admin.call("GET", "/vhosts")
            assert {"name": "/", "paused": False, "sessions": 1} in vhosts

            paused = await admin.call("POST", f"/sessions/{sid}/pause")
            assert paused["paused"] is True and paused["state"] == "paused"
            unpaused = await admin.call("POST", f"/sessions/{sid}/unpause")
            assert unpaused["paused"] is False

            await admin.call("POST", f"/sessions/{sid}/disconnect", {"reason": "maintenance"})
            exc = await asyncio.wait_for(closed, DEADLINE)
            assert isinstance(exc, aiormq.exceptions.ConnectionClosed)
            assert exc.args[0] == 200 and "maintenance" in str(exc.args[1])
            runtime_session = admin.runtime.ctx.sessions.get(sid)
            assert runtime_session is not None
            await until(lambda: runtime_session.finished, "the session to finish")
            after = await admin.call("GET", f"/sessions/{sid}")
            assert after["finished"] is True and after["close_reason"] == "proxy_graceful"
        finally:
            with contextlib.suppress(Exception):
                await conn.close()


async def test_force_disconnect_through_rest() -> None:
    async with started_proxy() as admin:
        await configure_through_rest(admin)
        conn = await aio_pika.connect(admin.url(), timeout=DEADLINE)
        try:
            await conn.channel()
            sid = (await admin.call("GET", "/sessions"))["items"][0]["id"]
            result = await admin.call("POST", f"/sessions/{sid}/force-disconnect")
            assert result["id"] == sid
            session = admin.runtime.ctx.sessions.get(sid)
            assert session is not None
            await until(lambda: session.finished, "the session to finish")
            assert session.close_reason is not None
            assert session.close_reason.value == "proxy_forced"
        finally:
            with contextlib.suppress(Exception):
                await conn.close()


async def test_definitions_moved_to_a_second_proxy_route_the_same() -> None:
    async with started_proxy() as first, started_proxy() as second:
        await configure_through_rest(first)
        document = await first.call("GET", "/definitions")
        assert document["listeners"] == [
            {
                "port": first.port,
                "address": "0.0.0.0",
                "tls": False,
                "proxy_protocol": False,
                **AMQP_LISTENER,
            }
        ]
        # The second proxy runs on the same host: it listens on its own port.
        document["listeners"] = [{"port": second.port, "tls": False}]
        result = await second.call("PUT", "/definitions", document)
        assert result["changes"]["farms"]["added"] == ["main"]
        exported = await second.call("GET", "/definitions")
        assert {k: v for k, v in exported.items() if k != "listeners"} == {
            k: v for k, v in document.items() if k != "listeners"
        }
        assert first.runtime.ctx.state.farm_partitions(
            "main"
        ) == second.runtime.ctx.state.farm_partitions("main")
        for admin in (first, second):
            got = await asyncio.wait_for(roundtrip(admin.url(), 5), 30)
            assert got == [f"m{i}".encode() for i in range(5)]
            page = await admin.call("GET", "/sessions")
            assert {s["farm"] for s in page["items"]} == {"main"}
