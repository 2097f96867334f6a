"""Attacks on the admin plane from a real headless Chromium, in front of the real RabbitMQ.

Chromium maps ``evil.example`` and ``rebind.example`` to 127.0.0.1
(``--host-resolver-rules``), so a page can come from a second origin on this machine:

* CSRF: a page served from ``http://evil.example:<other port>`` fires ``no-cors`` fetches
  and auto-submitted form posts at the REST API (pause a vhost, force-disconnect a
  session); the vhost stays unpaused and the session alive (seen through
  ``amqpprox_ctl``'s VHOST PRINT and REST).
* DNS rebinding: ``http://rebind.example:<admin port>/...`` (a name that now points at
  the admin plane) gets 421 and no data, for a page load and for that page's own
  same-origin fetch; with ``--adminAllowedHosts rebind.example`` it is served.
* Confused deputy: on the dashboard (JavaScript off, so the confirmation is the server's
  page, as it also is for a wrong token), pausing a vhost named
  ``../vhosts/%2F/force-disconnect?`` pauses that vhost and nothing else: the session on
  ``/`` survives, and the confirm form posts to the quoted route.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright, expect

from amqpprox.amqp.methods import ConnectionOpenOk
from tests.conftest import RunningProxy, ctl, running_proxy
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS
from tests.rawamqp import (
    RawClient,
    close_raw_clients,  # noqa: F401 (autouse)
)

pytestmark = pytest.mark.broker

RESOLVER = "--host-resolver-rules=MAP evil.example 127.0.0.1, MAP rebind.example 127.0.0.1"
HOSTILE_VHOST = "../vhosts/%2F/force-disconnect?"

ATTACK_PAGE = """<!doctype html>
<html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe><iframe name="sink3"></iframe>
<form method="post" target="sink1" action="{admin}/api/v1/vhosts/%2F/pause"></form>
<form method="post" target="sink2" action="{admin}/api/v1/sessions/{sid}/force-disconnect">
  <input type="hidden" name="reason" value="csrf"></form>
<form method="post" target="sink3" enctype="text/plain"
      action="{admin}/api/v1/vhosts/%2F/pause"><input name='{{"a": "' value='"}}'></form>
<script>
const admin = {admin_js};
const sent = (promise) => promise.then(() => "answered", (error) => "failed: " + error);
async function attack() {{
  const results = [];
  results.push(await sent(fetch(admin + "/api/v1/vhosts/%2F/pause",
    {{method: "POST", mode: "no-cors"}})));
  results.push(await sent(fetch(admin + "/api/v1/vhosts/%2F/pause",
    {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body: "{{}}"}})));
  results.push(await sent(fetch(admin + "/api/v1/sessions/{sid}/force-disconnect",
    {{method: "POST", mode: "no-cors", credentials: "include"}})));
  for (const form of document.forms) {{
    const frame = document.querySelector(`iframe[name="${{form.target}}"]`);
    results.push(await new Promise((resolve) => {{
      frame.addEventListener("load", () => resolve("loaded"), {{once: true}});
      form.submit();
    }}));
  }}
  window.attackResults = results;
}}
attack();
</script>
</body></html>"""


@pytest.fixture
async def attack_browser() -> AsyncIterator[Browser]:
    """Chromium (as ``tests/e2e/conftest``) that resolves the attackers' names here."""
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, RESOLVER]
        )
        try:
            yield launched
        finally:
            await launched.close()


async def new_page(browser: Browser, *, javascript: bool = True) -> Page:
    context = await browser.new_context(java_script_enabled=javascript)
    context.set_default_timeout(TIMEOUT_MS)
    return await context.new_page()


@pytest.fixture
async def evil_site() -> AsyncIterator[tuple[dict[str, str], str]]:
    """A second origin: a tiny aiohttp server; ``/attack`` serves the test's page."""
    page: dict[str, str] = {}

    async def attack(request: web.Request) -> web.Response:
        return web.Response(text=page["html"], content_type="text/html")

    app = web.Application()
    app.router.add_get("/attack", attack)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield page, f"http://evil.example:{port}"
    finally:
        await runner.cleanup()


async def live_session(proxy: RunningProxy) -> int:
    """A client on vhost "/" through the proxy (closed after the test); its session id."""
    client = await RawClient.connect(proxy.port)
    assert isinstance(await client.open("/"), ConnectionOpenOk)
    [session] = [s for s in proxy.ctx.sessions if not s.finished]
    return int(session.id)


async def paused_vhosts(proxy: RunningProxy) -> list[str]:
    """The vhosts amqpprox_ctl's VHOST PRINT shows as paused."""
    lines = (await ctl(proxy.control_socket, "VHOST PRINT")).splitlines()
    return [line.removesuffix(" = PAUSED") for line in lines if line.endswith(" = PAUSED")]


async def rest(proxy: RunningProxy, method: str, path: str, body: object = None) -> object:
    """One REST call as an operator's script makes it: its JSON answer (2xx expected)."""
    async with (
        aiohttp.ClientSession(proxy.admin_url) as http,
        http.request(method, "/api/v1" + path, json=body) as response,
    ):
        assert response.status < 300, await response.text()
        return await response.json()


async def rest_session(proxy: RunningProxy, sid: int) -> dict[str, object]:
    session = await rest(proxy, "GET", f"/sessions/{sid}")
    assert isinstance(session, dict)
    return session


async def test_a_foreign_page_cannot_pause_or_disconnect(
    proxy: RunningProxy, attack_browser: Browser, evil_site: tuple[dict[str, str], str]
) -> None:
    sid = await live_session(proxy)
    served, evil = evil_site
    served["html"] = ATTACK_PAGE.format(
        admin=proxy.admin_url, admin_js=json.dumps(proxy.admin_url), sid=sid
    )
    page = await new_page(attack_browser)
    await page.goto(evil + "/attack")
    await page.wait_for_function("() => window.attackResults !== undefined")
    # Every request reached the admin plane and was answered (none was blocked on the
    # way, so the refusals below are the admin plane's).
    results = await page.evaluate("window.attackResults")
    assert results == ["answered"] * 3 + ["loaded"] * 3
    assert await paused_vhosts(proxy) == []
    session = await rest_session(proxy, sid)
    assert session["state"] == "active", session
    assert not proxy.ctx.sessions.get(sid).finished


async def test_a_rebound_name_gets_421_and_no_data(
    proxy: RunningProxy, attack_browser: Browser
) -> None:
    rebound = f"http://rebind.example:{proxy.runtime.admin_port}"
    page = await new_page(attack_browser)
    for path in ("/api/v1/definitions", "/", "/sessions", "/metrics"):
        response = await page.goto(rebound + path)
        assert response is not None and response.status == 421, path
        text = await page.content()
        assert "default-backend" not in text and proxy.ctx.settings.hostname not in text
    # The attacker's page, now same-origin with the rebound name, reads nothing either.
    status, body = await page.evaluate(
        "fetch('/api/v1/definitions').then(async r => [r.status, await r.text()])"
    )
    assert status == 421
    assert json.loads(body)["error"] == "misdirected_request"
    assert "default-backend" not in body


async def test_an_allowed_name_is_served(tmp_socket_dir: str, attack_browser: Browser) -> None:
    async with running_proxy(tmp_socket_dir, admin_allowed_hosts=("rebind.example",)) as proxy:
        named = f"http://rebind.example:{proxy.runtime.admin_port}"
        page = await new_page(attack_browser)
        response = await page.goto(named + "/api/v1/definitions")
        assert response is not None and response.status == 200
        assert "default-backend" in await page.content()
        response = await page.goto(named + "/")
        assert response is not None and response.status == 200
        await expect(page.locator("#version")).to_be_visible()


async def test_a_hostile_vhost_name_cannot_redirect_a_dashboard_action(
    proxy: RunningProxy, attack_browser: Browser
) -> None:
    sid = await live_session(proxy)
    await rest(
        proxy,
        "PUT",
        "/mappings/" + quote(HOSTILE_VHOST, safe=""),
        {"backend": "default-backend"},
    )
    page = await new_page(attack_browser, javascript=False)
    await page.goto(proxy.admin_url + "/vhosts")
    row = page.locator("#vhosts tbody tr", has_text="force-disconnect?")
    await row.get_by_role("button", name="Pause").click()
    # The server's confirmation page.
    await expect(page.locator("#confirm-h")).to_contain_text(HOSTILE_VHOST)
    action = await page.locator("section.confirm form").get_attribute("action")
    await page.locator("section.confirm").get_by_role("button", name="Pause").click()
    await expect(page.locator(".banner-ok")).to_contain_text("Pause")
    # Only the named vhost was paused; the session on "/" is alive and well.
    assert await paused_vhosts(proxy) == [HOSTILE_VHOST]
    session = await rest_session(proxy, sid)
    assert session["state"] == "active", session
    assert action == "/vhosts/" + quote(HOSTILE_VHOST, safe="") + "/pause"
