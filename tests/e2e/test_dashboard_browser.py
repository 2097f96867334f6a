"""The dashboard in a real headless Chromium, in front of the real RabbitMQ.

Real pika clients publish through the proxy while the browser watches: the session
shows up in the live table, its byte counters grow without a reload, and the operator's
disconnect (confirmed in the dialog) reaches the client as Connection.Close 200. Vhost
pause shows as paused; the no-JavaScript path and the admin token are exercised too.
With AMQPPROX_UPDATE_SCREENSHOTS=1 the overview and sessions screenshots under docs/
are refreshed from these runs.
"""

from __future__ import annotations

from typing import Any

import pika.exceptions
import pytest
from playwright.async_api import Browser, Page, expect

from amqpprox import __version__
from amqpprox.admin import throughput
from amqpprox.core import operations as ops
from tests.conftest import RunningProxy
from tests.e2e.conftest import (
    ADMIN_TOKEN,
    UPDATE_SCREENSHOTS,
    screenshot,
    session_id_of,
)
from tests.polling import until

pytestmark = pytest.mark.broker

GROWS = (
    "([selector, before]) => { const el = document.querySelector(selector); "
    "return el !== null && Number(el.dataset.value) > before; }"
)


async def in_bytes(page: Page, session_id: int) -> int:
    value = await page.locator(f"#session-{session_id} td.in-bytes").get_attribute("data-value")
    assert value is not None
    return int(value)


async def test_overview_is_live(publish: Any, proxy: RunningProxy, page: Page) -> None:
    if UPDATE_SCREENSHOTS:
        # A denser, shorter chart so the screenshot shows a filled curve of real traffic.
        sampler = throughput.of(proxy.ctx)
        assert sampler is not None
        sampler.configure(interval=0.25, keep=30)
    await publish(proxy.port, "orders-publisher", payload=4096, echo=False)
    await page.goto(proxy.admin_url + "/")
    await expect(page.locator("#version")).to_have_text(__version__)
    listeners = page.locator("#listeners tbody tr")
    await expect(listeners).to_have_count(1)
    await expect(listeners.first).to_contain_text(str(proxy.port))
    await expect(listeners.first).to_contain_text("plain")
    # The rate cards and the chart fill in from the live updates, without a reload.
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    await expect(page.locator("#rate-in")).not_to_have_text("0 B/s")
    await expect(page.locator("#sessions-live")).to_have_text("1")
    await expect(page.locator(".chart-svg polyline.in").first).to_be_attached()
    if UPDATE_SCREENSHOTS:
        await publish(proxy.port, "billing-consumer", payload=1024, pace=0.005)
        await page.wait_for_function(
            "() => document.querySelector('.chart-svg polyline.in')"
            ".getAttribute('points').split(' ').length > 110",
            timeout=40_000,
        )
        await screenshot(page, "dashboard-overview.png")


async def test_sessions_table_live_and_graceful_disconnect(
    publish: Any, proxy: RunningProxy, page: Page
) -> None:
    publisher = await publish(proxy.port, "orders-publisher")
    if UPDATE_SCREENSHOTS:
        await publish(proxy.port, "billing-consumer", payload=256, pace=0.05)
        await publish(proxy.port, "audit-tap", payload=64, pace=0.2)
    session_id = await until(lambda: session_id_of(proxy, "orders-publisher"), "the session")
    await page.goto(proxy.admin_url + "/sessions")
    row = page.locator(f"#session-{session_id}")
    await expect(row).to_be_visible(timeout=5_000)
    await expect(row).to_contain_text("orders-publisher")
    await expect(row.locator(".badge")).to_have_text("active")

    # Counters grow in place while the client publishes (the page is not reloaded).
    before = await in_bytes(page, session_id)
    await page.wait_for_function(GROWS, arg=[f"#session-{session_id} td.in-bytes", before])
    if UPDATE_SCREENSHOTS:
        tap = session_id_of(proxy, "audit-tap")
        assert tap is not None
        ops.pause_session(proxy.ctx, tap)  # so that the picture shows a paused one too
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#sessions td.in-rate')]"
            ".filter(td => !td.textContent.startsWith('0 B/s')).length >= 2"
        )
        await page.set_viewport_size({"width": 1360, "height": 480})
        await screenshot(page, "dashboard-sessions.png")
        ops.unpause_session(proxy.ctx, tap)

    # Disconnect, confirm in the dialog; the client sees the server's Close 200.
    await page.locator(f"#act-{session_id}-disconnect").click()
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text(f"Disconnect session {session_id} gracefully?")
    await page.locator("#confirm-reason-input").fill("maintenance")
    await page.locator("#confirm-ok").click()
    closed = await until(lambda: publisher.closed, "the client to see the close")
    assert isinstance(closed, pika.exceptions.ConnectionClosedByBroker), repr(closed)
    assert closed.reply_code == 200
    assert closed.reply_text == "maintenance"
    await expect(page.locator(f"#session-{session_id}")).to_have_count(0)
    await expect(page.locator(".banner-ok")).to_contain_text(f"session {session_id}")


async def test_vhost_pause_shows_paused(publish: Any, proxy: RunningProxy, page: Page) -> None:
    await publish(proxy.port, "paused-publisher")
    session_id = await until(lambda: session_id_of(proxy, "paused-publisher"), "the session")
    await page.goto(proxy.admin_url + "/vhosts")
    row = page.locator('#vhosts tr[data-vhost="/"]')
    await expect(row.locator(".vhost-state")).to_have_text("running")
    await expect(row).to_contain_text("default farm")
    await row.get_by_role("button", name="Pause '/'").click()
    await expect(page.locator("#confirm-dialog")).to_contain_text("Pause vhost '/'?")
    await page.locator("#confirm-ok").click()
    await expect(row.locator(".vhost-state")).to_have_text("paused")
    assert proxy.ctx.state.paused_vhosts["/"] is True
    # The overview and the session's own page say so as well.
    await page.goto(proxy.admin_url + f"/sessions/{session_id}")
    await expect(page.locator("#main .badge").first).to_have_text("paused")
    await page.goto(proxy.admin_url + "/")
    await expect(page.locator("#main")).to_contain_text("/ paused")
    # Resuming cuts the established paused sessions so that their clients reconnect.
    await page.goto(proxy.admin_url + "/vhosts")
    await row.get_by_role("button", name="Resume '/'").click()
    await page.locator("#confirm-ok").click()
    await expect(row.locator(".vhost-state")).to_have_text("running")
    assert proxy.ctx.state.paused_vhosts["/"] is False


async def test_without_javascript_the_server_confirms(
    publish: Any, proxy: RunningProxy, browser: Browser
) -> None:
    await publish(proxy.port, "plain-html")
    session_id = await until(lambda: session_id_of(proxy, "plain-html"), "the session")
    context = await browser.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        await page.goto(proxy.admin_url + "/sessions")
        row = page.locator(f"#session-{session_id}")
        await expect(row).to_contain_text("plain-html")  # the rows are in the HTML
        await page.locator(f"#act-{session_id}-pause").click()
        await expect(page.locator("h1")).to_have_text(f"Pause session {session_id}?")
        await page.get_by_role("button", name="Pause").click()
        await expect(page).to_have_url(proxy.admin_url + "/sessions")
        await expect(row.locator(".badge")).to_have_text("paused")
        for path in ("/", "/vhosts", "/backends", "/farms", f"/sessions/{session_id}"):
            response = await page.goto(proxy.admin_url + path)
            assert response is not None
            assert response.status == 200, path
        await expect(page.locator("#session-traffic")).to_contain_text("Client → broker")
    finally:
        await context.close()


async def test_admin_token_is_asked_for_and_remembered(
    publish: Any, token_proxy: RunningProxy, page: Page
) -> None:
    await publish(token_proxy.port, "token-client")
    session_id = await until(lambda: session_id_of(token_proxy, "token-client"), "the session")
    await page.goto(token_proxy.admin_url + "/sessions")
    await page.locator(f"#act-{session_id}-pause").click()
    token_input = page.locator("#confirm-token-input")
    await expect(token_input).to_be_visible()
    await token_input.fill("not-the-token")
    await page.locator("#confirm-ok").click()
    # A wrong token: the server's confirmation page asks again, nothing happened.
    await expect(page.locator(".banner-error")).to_have_text("That is not the admin token.")
    session = token_proxy.ctx.sessions.get(session_id)
    assert session is not None
    assert not session.paused
    await page.locator("#token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator(f"#session-{session_id} .badge")).to_have_text("paused")
    assert session.paused
    # Signed in now: the next action does not ask again.
    await page.locator(f"#act-{session_id}-unpause").click()
    await expect(page.locator("#confirm-token")).to_be_hidden()
    await page.locator("#confirm-ok").click()
    await expect(page.locator(f"#session-{session_id} .badge")).to_have_text("active")
    # The dashboard's cookie never authorises the REST API.
    status = await page.evaluate(
        f"fetch('/api/v1/sessions/{session_id}/pause', {{method: 'POST'}}).then(r => r.status)"
    )
    assert status == 401
