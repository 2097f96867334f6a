"""The admin plane's request checks over HTTP, header by header (the browser tests are
``tests/e2e/test_attacks_browser.py``).

* CSRF: a state-changing request whose ``Origin`` is foreign (``null`` included) or whose
  ``Sec-Fetch-Site`` is not same-origin is refused with 403 and changes nothing; a REST
  POST, or any REST request with a body, that is not typed ``application/json`` gets 415;
  curl-like clients (neither header) and our own origin keep working; the dashboard's
  forms check ``Origin`` too.
* DNS rebinding: a ``Host`` that does not name this admin plane gets 421 (JSON for REST,
  plain text elsewhere) on REST, the dashboard, /metrics and static files; loopback, the
  bind address and ``--adminAllowedHosts`` names are accepted, with or without a port;
  the probes answer any ``Host`` (Kubernetes sends the pod's IP).
* The dashboard's login: ``next`` never leads off the site; each login gets its own
  session id, revoked at logout and refused once expired; with protected reads the login
  page says nothing about the proxy.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from amqpprox import __version__
from amqpprox.admin.app import make_admin_app
from amqpprox.admin.dashboard_support import GUARD, LOGIN_COOKIE
from amqpprox.cli import build_parser
from amqpprox.core import operations as ops
from amqpprox.runtime import Runtime
from tests.conftest import RunningProxy, ctl, make_settings, running_proxy

Client = TestClient[Any, Any]
JSON = {"Content-Type": "application/json"}
CSRF = re.compile(r'(?:name="csrf" value|data-csrf)="([0-9a-f]+)"')
TOKEN = "s3cret-" + uuid.uuid4().hex[:8]
PAUSE = "/api/v1/vhosts/x/pause"


@pytest.fixture
async def admin(tmp_socket_dir: str) -> AsyncIterator[RunningProxy]:
    """A proxy (nothing configured but a listener) with an extra allowed Host name."""
    async with running_proxy(
        tmp_socket_dir, simple=False, admin_allowed_hosts=("admin.example", "ops.example")
    ) as running:
        yield running


async def paused_vhosts(proxy: RunningProxy) -> str:
    return await ctl(proxy.control_socket, "VHOST PRINT")


# -- CSRF ----------------------------------------------------------------------------------
async def test_cross_origin_writes_are_refused_and_change_nothing(admin: RunningProxy) -> None:
    own = admin.admin_url
    refused = [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},  # sandboxed frames, file:// pages, some redirects
        {"Origin": "http://127.0.0.1:1"},  # another port of this host: another origin
        {"Origin": own.replace("http:", "https:")},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": own, "Sec-Fetch-Site": "cross-site"},
    ]
    async with aiohttp.ClientSession(own) as http:
        for headers in refused:
            async with http.post(PAUSE, json={}, headers=headers) as response:
                assert response.status == 403, headers
                body = await response.json()
                assert body["error"] == "cross_origin", body
            # Other writes too: a PUT and a DELETE are refused before they are looked at.
            async with http.put("/api/v1/datacenter", json={"name": "evil"}, headers=headers) as r:
                assert r.status == 403, headers
            async with http.delete("/api/v1/backends/nope", headers=headers) as r:
                assert r.status == 403, headers
        assert await paused_vhosts(admin) == ""
        assert ops.get_datacenter(admin.ctx) != "evil"
        # Reads are not state-changing: a foreign Origin may GET (CORS keeps it unread).
        async with http.get("/api/v1/vhosts", headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 200
        # Our own origin, as a browser on the admin plane sends it, and curl (no claim).
        for headers in ({"Origin": own, "Sec-Fetch-Site": "same-origin"}, {}):
            async with http.post(PAUSE, json={}, headers=headers) as response:
                assert response.status == 200, headers
        assert await paused_vhosts(admin) == "x = PAUSED\n"


@pytest.mark.parametrize(
    ("method", "content_type", "body"),
    [
        ("POST", None, b""),  # a no-cors fetch without a body
        ("POST", "text/plain;charset=UTF-8", b"{}"),  # a no-cors fetch with one
        ("POST", "application/x-www-form-urlencoded", b""),  # an empty form post
        ("POST", "multipart/form-data; boundary=b", b"--b--\r\n"),
        ("POST", "text/plain", b""),  # <form enctype="text/plain">
        ("GET", "text/plain", b"{}"),  # a REST request with a body must be JSON too
    ],
)
async def test_rest_requests_not_typed_json_are_415(
    admin: RunningProxy, method: str, content_type: str | None, body: bytes
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    async with aiohttp.ClientSession(admin.admin_url, skip_auto_headers=["Content-Type"]) as http:
        path = PAUSE if method == "POST" else "/api/v1/vhosts"
        async with http.request(method, path, data=body, headers=headers) as response:
            assert response.status == 415
            assert (await response.json())["error"] == "unsupported_media_type"
    assert await paused_vhosts(admin) == ""


async def test_json_rest_calls_and_bodiless_deletes_still_work(admin: RunningProxy) -> None:
    async with aiohttp.ClientSession(admin.admin_url) as http:
        for content_type in ("application/json", "application/json; charset=utf-8"):
            async with http.post(PAUSE, headers={"Content-Type": content_type}) as response:
                assert response.status == 200, content_type
        # A DELETE (never sent cross-origin by a browser without a preflight) needs no type.
        async with http.delete("/api/v1/backends/nope") as response:
            assert response.status == 404
        async with http.get("/api/v1/vhosts") as response:  # reads without a body: any type
            assert response.status == 200
    assert await paused_vhosts(admin) == "x = PAUSED\n"


async def test_dashboard_forms_check_the_origin_too(admin: RunningProxy) -> None:
    async with aiohttp.ClientSession(admin.admin_url) as http:
        async with http.get("/vhosts") as response:
            match = CSRF.search(await response.text())
        assert match is not None
        form = {"csrf": match.group(1), "confirm": "yes", "next": "/vhosts"}
        for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            async with http.post(
                "/vhosts/x/pause", data=form, headers=headers, allow_redirects=False
            ) as response:
                assert response.status == 403, headers
                assert "Refused" in await response.text()
        assert await paused_vhosts(admin) == ""
        headers = {"Origin": admin.admin_url, "Sec-Fetch-Site": "same-origin"}
        async with http.post(
            "/vhosts/x/pause", data=form, headers=headers, allow_redirects=False
        ) as response:
            assert response.status == 303
    assert await paused_vhosts(admin) == "x = PAUSED\n"


# -- Host: DNS rebinding -------------------------------------------------------------------
@pytest.mark.parametrize(
    "host",
    ["rebind.example", "evil.example:{port}", "127.0.0.2:{port}", "admin.example.evil.net",
     "localhost.evil.net", "[::2]:{port}", "127.0.0.1:abc", "[::1", ""],
)  # fmt: skip
async def test_foreign_host_names_are_421_everywhere(admin: RunningProxy, host: str) -> None:
    host = host.format(port=admin.runtime.admin_port)
    async with aiohttp.ClientSession(admin.admin_url) as http:
        for path in ("/api/v1/definitions", "/", "/sessions", "/metrics", "/static/dashboard.css"):
            async with http.get(path, headers={"Host": host}) as response:
                text = await response.text()
                assert response.status == 421, (host, path)
                assert "default-backend" not in text and admin.ctx.settings.hostname not in text
                if path.startswith("/api/"):
                    assert (await response.json())["error"] == "misdirected_request"
                else:
                    assert response.content_type == "text/plain"
        async with http.post(PAUSE, json={}, headers={"Host": host}) as response:
            assert response.status == 421
        # The probes answer any Host: Kubernetes sends the pod's IP.
        for probe in ("/healthz", "/readyz"):
            async with http.get(probe, headers={"Host": host}) as response:
                assert response.status == 200, probe
    assert await paused_vhosts(admin) == ""


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:{port}", "127.0.0.1", "localhost:{port}", "LOCALHOST", "[::1]:{port}", "[::1]",
     "admin.example", "ops.example:{port}", "Admin.Example:443"],
)  # fmt: skip
async def test_our_host_names_are_served(admin: RunningProxy, host: str) -> None:
    host = host.format(port=admin.runtime.admin_port)
    async with aiohttp.ClientSession(admin.admin_url) as http:
        for path in ("/api/v1/definitions", "/", "/metrics"):
            async with http.get(path, headers={"Host": host}) as response:
                assert response.status == 200, (host, path)


async def test_the_bind_address_is_an_accepted_host(tmp_socket_dir: str) -> None:
    async with running_proxy(tmp_socket_dir, simple=False, admin_host="127.0.0.2") as proxy:
        url = f"http://127.0.0.2:{proxy.runtime.admin_port}"
        async with aiohttp.ClientSession(url) as http:
            async with http.get("/api/v1/overview") as response:  # Host: 127.0.0.2:<port>
                assert response.status == 200
            async with http.get("/api/v1/overview", headers={"Host": "127.0.0.3"}) as response:
                assert response.status == 421


def test_allowed_hosts_flag() -> None:
    assert build_parser().parse_args([]).adminAllowedHosts == ""
    args = build_parser().parse_args(["--adminAllowedHosts", "a.example, b.example"])
    assert args.adminAllowedHosts == "a.example, b.example"


# -- the dashboard's login -----------------------------------------------------------------
async def _guarded_app(tmp_socket_dir: str, **settings: object) -> AsyncIterator[Runtime]:
    runtime = Runtime(make_settings(tmp_socket_dir, admin_token=TOKEN, **settings))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def read_protected(tmp_socket_dir: str) -> AsyncIterator[Runtime]:
    hostname = "apx-host-" + uuid.uuid4().hex[:8]
    async for runtime in _guarded_app(
        tmp_socket_dir, admin_token_for_reads=True, hostname=hostname
    ):
        yield runtime


async def _csrf(client: Client, path: str = "/login") -> str:
    match = CSRF.search(await (await client.get(path)).text())
    assert match is not None
    return match.group(1)


async def _login(client: Client, csrf: str) -> str:
    response = await client.post(
        "/login", data={"csrf": csrf, "token": TOKEN, "next": "/"}, allow_redirects=False
    )
    assert response.status == 303
    client.session.cookie_jar.clear()  # each test request below names its cookie itself
    return response.cookies[LOGIN_COOKIE].value


async def _page_status(client: Client, cookie: str | None) -> int:
    client.session.cookie_jar.clear()
    headers = {"Cookie": f"{LOGIN_COOKIE}={cookie}"} if cookie is not None else {}
    response = await client.get("/sessions", headers=headers, allow_redirects=False)
    return response.status


async def test_each_login_is_its_own_session_revoked_at_logout_and_expiring(
    read_protected: Runtime, aiohttp_client: Any
) -> None:
    app = make_admin_app(read_protected.ctx)
    guard = app[GUARD]
    now = [1000.0]
    guard.clock = lambda: now[0]
    client: Client = await aiohttp_client(app)
    csrf = await _csrf(client)
    login = await client.post(
        "/login", data={"csrf": csrf, "token": TOKEN, "next": "/"}, allow_redirects=False
    )
    cookie = login.cookies[LOGIN_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert cookie["max-age"] == str(12 * 3600)
    assert not cookie["secure"]  # plain HTTP here; set over TLS
    client.session.cookie_jar.clear()
    first, second = cookie.value, await _login(client, csrf)
    assert first != second and TOKEN not in first + second
    assert len(first) >= 40  # 32 random bytes, URL-safe
    assert await _page_status(client, None) == 303
    assert await _page_status(client, first) == 200
    assert await _page_status(client, second) == 200
    assert await _page_status(client, first[:-1] + ("A" if first[-1] != "A" else "B")) == 303
    # Signing out revokes that login only: the old cookie value no longer works.
    response = await client.post(
        "/logout",
        data={"csrf": csrf},
        headers={"Cookie": f"{LOGIN_COOKIE}={first}"},
        allow_redirects=False,
    )
    assert response.status == 303
    assert await _page_status(client, first) == 303
    assert await _page_status(client, second) == 200
    # Twelve hours on, the other one has expired too.
    now[0] += 12 * 3600 - 1
    assert await _page_status(client, second) == 200
    now[0] += 1
    assert await _page_status(client, second) == 303
    assert await _page_status(client, await _login(client, csrf)) == 200


HOSTILE_NEXT = [
    "/\t/evil.example/x",  # browsers drop the tab: //evil.example/x
    "/\n/evil.example/x",
    "/\r\n/evil.example/x",
    "/%09/evil.example/x",  # the same, encoded once more
    "\t//evil.example/x",
    "//evil.example/x",
    "/\\evil.example/x",
    "\\\\evil.example/x",
    "/%5Cevil.example/x",
    "/%2F/evil.example/x",
    "/%2f%2fevil.example/x",
    "https://evil.example/x",
    "http:/\\evil.example",
    "javascript:alert(1)",
    "evil.example/x",
    " /x",
    "/x\x00",
    "/x\x7f",
]


@pytest.mark.parametrize("token", [None, TOKEN])
async def test_login_next_never_leaves_the_site(
    tmp_socket_dir: str, aiohttp_client: Any, token: str | None
) -> None:
    runtime = Runtime(make_settings(tmp_socket_dir, admin_token=token))
    await runtime.start()
    try:
        client: Client = await aiohttp_client(make_admin_app(runtime.ctx))
        csrf = await _csrf(client, "/")
        for value in [*HOSTILE_NEXT, "/sessions?vhost=orders&state=all"]:
            wanted = "/" if value in HOSTILE_NEXT else value
            if token is None:  # nothing to sign in to: /login goes straight to "next"
                # Encoded here (yarl would leave a "%" as it is): the server decodes once.
                query = "next=" + quote(value, safe="")
                response = await client.get(f"/login?{query}", allow_redirects=False)
            else:
                client.session.cookie_jar.clear()
                response = await client.post(
                    "/login",
                    data={"csrf": csrf, "token": token, "next": value},
                    allow_redirects=False,
                )
            assert response.status == 303, value
            assert response.headers["Location"] == wanted, value
    finally:
        await runtime.stop()


async def test_login_page_says_nothing_about_the_proxy_when_reads_are_protected(
    read_protected: Runtime, aiohttp_client: Any
) -> None:
    ctx = read_protected.ctx
    ops.set_datacenter(ctx, "dc-" + uuid.uuid4().hex[:8])
    secrets_shown = [ctx.settings.hostname, ops.get_datacenter(ctx), __version__]
    client: Client = await aiohttp_client(make_admin_app(ctx))
    for path in ("/login", "/login?next=/sessions"):
        response = await client.get(path)
        assert response.status == 200
        page = await response.text()
        assert "Sign in" in page
        for secret in secrets_shown:
            assert secret not in page, (path, secret)
    # Once signed in (the client keeps the cookie), the pages show them: the check above
    # means something.
    response = await client.post("/login", data={"csrf": await _csrf(client), "token": TOKEN})
    assert response.status == 200 and response.url.path == "/"
    page = await response.text()
    assert all(secret in page for secret in secrets_shown)
