"""The dashboard's HTTP contract, without a browser: CSRF and origin checks, the token
login, server-side paging at 5,000 sessions, live regions and the packaged assets."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient

from amqpprox.admin import humanize
from amqpprox.admin.app import make_admin_app
from amqpprox.core import operations as ops
from amqpprox.core.sessions import CloseReason, SessionBase, SessionState
from amqpprox.runtime import Runtime
from tests.conftest import make_settings

Client = TestClient[Any, Any]
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


class FakeSession(SessionBase):
    """A registry entry with counters; its control actions just record themselves."""

    def __init__(self, session_id: int, vhost: str, backend: str) -> None:
        super().__init__(
            session_id, (f"10.1.{session_id // 250}.{session_id % 250}", 40000), ("0.0.0.0", 5672)
        )
        self.vhost = vhost
        self.backend_name = backend
        self.state = SessionState.ACTIVE
        self.opened_at = time.time()
        self.connection_name = f"client-{session_id}"
        self.in_bytes = session_id * 100
        self.actions: list[str] = []

    def pause(self) -> None:
        self.paused = True
        self.state = SessionState.PAUSED

    def unpause(self) -> None:
        self.paused = False
        self.state = SessionState.ACTIVE

    def disconnect_graceful(self, reply_text: str = "OK", reply_code: int = 200) -> None:
        self.actions.append(f"close {reply_code} {reply_text}")
        self.close_reason = CloseReason.PROXY_GRACEFUL

    def force_disconnect(self) -> None:
        self.close_reason = CloseReason.PROXY_FORCED


async def _runtime(tmp_socket_dir: str, **settings: object) -> AsyncIterator[Runtime]:
    rt = Runtime(make_settings(tmp_socket_dir, **settings))
    await rt.start()
    try:
        yield rt
    finally:
        for session in rt.ctx.sessions:  # fakes: end them so the drain has nothing to wait for
            session.close_reason = session.close_reason or CloseReason.PROXY_FORCED
        rt.ctx.sessions.cleanup()
        await rt.stop()


@pytest.fixture
async def runtime(tmp_socket_dir: str) -> AsyncIterator[Runtime]:
    async for rt in _runtime(tmp_socket_dir):
        yield rt


@pytest.fixture
async def client(runtime: Runtime, aiohttp_client: Any) -> Client:
    return await aiohttp_client(make_admin_app(runtime.ctx))


def add_sessions(runtime: Runtime, n: int) -> list[FakeSession]:
    made = []
    for _ in range(n):
        sid = runtime.ctx.sessions.next_id()
        s = FakeSession(sid, "orders" if sid % 2 else "billing", f"rabbit{sid % 3}")
        runtime.ctx.sessions.add(s)
        made.append(s)
    return made


async def csrf_of(client: Client, path: str = "/sessions") -> str:
    match = CSRF.search(await (await client.get(path)).text())
    assert match is not None
    return match.group(1)


async def test_five_thousand_sessions_are_paged_on_the_server(
    client: Client, runtime: Runtime
) -> None:
    # How long the page takes is a measurement (``make bench``: bench.figures), not a test:
    # here, that the server pages (50 rows of 5,000 sessions, filtered and sorted).
    add_sessions(runtime, 5000)
    response = await client.get("/sessions?vhost=orders&sort=in&dir=desc&page=2")
    assert response.status == 200
    html = await response.text()
    rows = re.findall(r'<tr id="session-(\d+)"', html)
    assert len(rows) == 50
    ids = [int(r) for r in rows]
    assert ids == sorted(ids, reverse=True)  # in_bytes grows with the id
    assert all(i % 2 for i in ids)  # vhost "orders" only
    assert ids[0] == 4999 - 2 * 50  # page 2 of the odd ids, largest first
    assert "<strong>51\u2013100</strong> of <strong>2,500</strong> matching" in html
    assert "5,000 live sessions" in html
    assert "Page 2 of 50" in html
    # The client filter matches addresses and connection names.
    html = await (await client.get("/sessions?client=client-4321")).text()
    assert re.findall(r'<tr id="session-(\d+)"', html) == ["4321"]
    # Numbers the page cannot use fall back to the defaults: the first page of 50.
    for query in ("page=x&size=y", "page=\u00b2&size=\u00b2"):
        html = await (await client.get(f"/sessions?{query}")).text()
        assert "Page 1 of 100" in html, query


async def test_live_regions_are_json(client: Client, runtime: Runtime) -> None:
    add_sessions(runtime, 3)
    response = await client.get("/sessions", headers={"X-Dashboard-Live": "1"})
    assert response.status == 200
    body = await response.json()
    assert set(body["regions"]) == {"sessions_table"}
    assert 'id="session-3"' in body["regions"]["sessions_table"]
    for path, regions in (
        ("/", {"overview"}),
        ("/vhosts", {"vhosts_table", "migrations"}),
        ("/backends", {"backends_table", "evictions"}),
        ("/sessions/1", {"session_detail"}),
    ):
        body = await (await client.get(path, headers={"X-Dashboard-Live": "1"})).json()
        assert set(body["regions"]) == regions
    gone = await client.get("/sessions/999", headers={"X-Dashboard-Live": "1"})
    assert gone.status == 404


async def test_actions_need_the_csrf_token_and_our_origin(client: Client, runtime: Runtime) -> None:
    (session,) = add_sessions(runtime, 1)
    token = await csrf_of(client)
    url = f"/sessions/{session.id}/disconnect"
    confirmed = {"csrf": token, "confirm": "yes", "reason": "bye", "next": "/sessions"}
    refused = [
        ({**confirmed, "csrf": "0" * 64}, {}),
        ({k: v for k, v in confirmed.items() if k != "csrf"}, {}),
        (confirmed, {"Origin": "http://evil.example"}),
        (confirmed, {"Sec-Fetch-Site": "cross-site"}),
        (confirmed, {"Sec-Fetch-Site": "same-site"}),  # another port of the same host
    ]
    for form, headers in refused:
        response = await client.post(url, data=form, headers=headers, allow_redirects=False)
        assert response.status == 403, (form, headers)
    assert session.actions == []
    assert (await client.get(url)).status == 405  # never on GET
    # Without confirm=yes the server asks first.
    response = await client.post(url, data={"csrf": token}, allow_redirects=False)
    assert response.status == 200
    assert f"Disconnect session {session.id} gracefully?" in await response.text()
    assert session.actions == []
    origin = f"http://{client.host}:{client.port}"
    response = await client.post(
        url, data=confirmed, headers={"Origin": origin}, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/sessions"
    assert session.actions == ["close 200 bye"]
    # "next" never leads off the site.
    other = add_sessions(runtime, 1)[0]
    response = await client.post(
        f"/sessions/{other.id}/pause",
        data={**confirmed, "next": "//evil.example/"},
        allow_redirects=False,
    )
    assert response.headers["Location"] == "/sessions"
    assert other.paused


async def test_vhost_actions_call_the_operations(client: Client, runtime: Runtime) -> None:
    add_sessions(runtime, 4)
    token = await csrf_of(client, "/vhosts")
    response = await client.post(
        "/vhosts/orders/pause", data={"csrf": token, "confirm": "yes"}, allow_redirects=False
    )
    assert response.status == 303
    assert runtime.ctx.state.paused_vhosts["orders"] is True
    assert [s.paused for s in runtime.ctx.sessions.of_vhost("orders")] == [True, True]
    assert [s.paused for s in runtime.ctx.sessions.of_vhost("billing")] == [False, False]
    html = await (await client.get("/vhosts")).text()
    assert 'data-vhost="orders"' in html
    assert "paused</span>" in html
    response = await client.post(
        "/vhosts/orders/explode", data={"csrf": token, "confirm": "yes"}, allow_redirects=False
    )
    assert response.status == 404


@pytest.fixture
async def read_protected(tmp_socket_dir: str, aiohttp_client: Any) -> AsyncIterator[Client]:
    async for rt in _runtime(tmp_socket_dir, admin_token="s3cret", admin_token_for_reads=True):
        yield await aiohttp_client(make_admin_app(rt.ctx))


async def test_protected_reads_go_through_the_login(read_protected: Client) -> None:
    client = read_protected
    response = await client.get("/sessions?vhost=x", allow_redirects=False)
    assert response.status == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query) == {"next": ["/sessions?vhost=x"]}
    live = await client.get("/", headers={"X-Dashboard-Live": "1"})
    assert live.status == 401
    assert (await client.get("/static/dashboard.css")).status == 200
    login = await client.get("/login?next=/sessions")
    assert login.status == 200
    match = CSRF.search(await login.text())
    assert match is not None
    wrong = await client.post("/login", data={"csrf": match.group(1), "token": "nope"})
    assert wrong.status == 401
    right = await client.post(
        "/login",
        data={"csrf": match.group(1), "token": "s3cret", "next": "/sessions"},
        allow_redirects=False,
    )
    assert right.status == 303
    cookie = right.cookies["amqpprox_dashboard"]
    assert "s3cret" not in cookie.value
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert (await client.get("/sessions")).status == 200
    # The REST API and /metrics still want the bearer token, cookie or not.
    assert (await client.get("/api/v1/overview")).status == 401
    assert (await client.get("/metrics")).status == 401
    headers = {"Authorization": "Bearer s3cret"}
    assert (await client.get("/api/v1/overview", headers=headers)).status == 200


async def test_the_assets_ship_in_the_package(client: Client) -> None:
    html = await (await client.get("/")).text()
    for asset in re.findall(r'(?:href|src)="(/static/[^"]+)"', html):
        response = await client.get(asset)
        assert response.status == 200, asset
    assert not re.search(r'(?:href|src)="https?://', html)  # nothing from a CDN


def test_humanised_numbers() -> None:
    assert humanize.bytes_(0) == "0 B"
    assert humanize.bytes_(1536) == "1.5 KiB"
    assert humanize.byte_rate(3 * 1024 * 1024) == "3 MiB/s"
    assert humanize.rate(1234.5) == "1.23k/s"
    assert humanize.count(999) == "999"
    assert humanize.count(1_200_000) == "1.2M"
    assert humanize.duration(4000) == "1h 06m"
    assert humanize.duration(59) == "59s"
    assert humanize.nice_ceiling(730) == 1000
    assert humanize.nice_ceiling(120) == 200


async def test_live_dashboard_over_a_real_socket(runtime: Runtime) -> None:
    # The runtime's own admin listener serves the dashboard too (not only a test client).
    async with ClientSession() as http:
        response = await http.get(f"http://127.0.0.1:{runtime.admin_port}/")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


async def test_the_vhosts_page_lists_no_vhost_a_client_only_named_and_warns_of_broken_routes(
    client: Client, runtime: Runtime
) -> None:
    ctx = runtime.ctx
    (opened,) = add_sessions(runtime, 1)  # vhost billing, opened
    named = FakeSession(ctx.sessions.next_id(), "invented-by-a-client", "")
    named.opened_at = None  # refused before OpenOk: its vhost is no state
    named.state = SessionState.HANDSHAKING
    ctx.sessions.add(named)
    ops.map_vhost_to_farm(ctx, "orders", "no-such-farm")  # the original allows it
    html = await (await client.get("/vhosts")).text()
    assert f'data-vhost="{opened.vhost}"' in html
    assert "invented-by-a-client" not in html
    row = html[html.index('data-vhost="orders"') :].split("</tr>", 1)[0]
    assert "farm no-such-farm does not exist: new sessions are refused" in row
