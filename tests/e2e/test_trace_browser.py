"""The trace view in a real headless Chromium: a Trace button on a session's page and on
a vhost row starts a trace; the page shows the session's frames live (decoded), filters
them, pauses the view (counting what it skips) and stops the trace; the traces page
lists it, its frame count refreshed live."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.conftest import RunningProxy
from tests.e2e.conftest import session_id_of
from tests.polling import until

pytestmark = pytest.mark.broker

SKIPPED = "() => Number(document.getElementById('trace-skipped').textContent.split(' ')[0]) > 0"


async def test_trace_a_session_live_filter_pause_and_stop(
    publish: Any, proxy: RunningProxy, page: Page
) -> None:
    # Paced (it reads nothing, so each pause is the whole pace): some 150 frames a
    # second, so the trace's 10,000-frame limit is far away for the whole test.
    await publish(proxy.port, "traced-publisher", echo=False, pace=0.02)
    session_id = await until(lambda: session_id_of(proxy, "traced-publisher"), "the session")
    await page.goto(f"{proxy.admin_url}/sessions/{session_id}")
    await expect(page.locator("#session-identity")).to_contain_text("Pika Python Client Library")
    await page.locator(f"#act-{session_id}-trace").click()
    await expect(page.locator("#confirm-dialog")).to_contain_text(f"Trace session {session_id}?")
    await page.locator("#confirm-ok").click()

    await expect(page).to_have_url(re.compile(r"/traces/1$"))
    await expect(page.locator(".banner-ok")).to_contain_text("Trace 1 started")
    rows = page.locator("#trace-events tbody tr")
    # Live: the publisher's frames arrive without a reload, decoded.
    await expect(rows.filter(has_text="Basic.Publish").first).to_be_visible()
    await expect(rows.filter(has_text="content header").first).to_be_visible()
    await expect(rows.filter(has_text="client → broker").first).to_be_visible()

    # The filter hides what does not match.
    await page.locator("#trace-filter").fill("content header")
    visible = page.locator("#trace-events tbody tr:not([hidden])")
    await expect(visible.first).to_be_visible()
    for text in await visible.all_inner_texts():
        assert "content header" in text and "Basic.Publish" not in text
    await page.locator("#trace-filter").fill("")

    # Paused, the view stops drawing; what arrives meanwhile beyond the latest is skipped.
    assert proxy.ctx.traces.get(1).running
    await page.locator("#trace-pause").click()
    await expect(page.locator("#trace-status")).to_contain_text("view paused")
    drawn = await rows.count()
    last = await rows.last.inner_text()
    await page.wait_for_function(SKIPPED)
    assert await rows.count() == drawn and await rows.last.inner_text() == last
    # Resumed, it draws the latest frames.
    await page.locator("#trace-pause").click()
    await expect(page.locator("#trace-pause")).to_have_text("Pause view")
    await expect(rows.last).not_to_have_text(last)

    # Stop: confirmed, the trace ends and the page says so.
    await page.locator("#trace-1-stop").click()
    await expect(page.locator("#confirm-dialog")).to_contain_text("Stop trace 1?")
    await page.locator("#confirm-ok").click()
    await expect(page.locator(".banner-ok")).to_contain_text("Trace 1 stopped")
    await expect(page.locator("#trace-state")).to_have_text("stopped")
    assert not proxy.ctx.traces.get(1).running
    assert not proxy.runtime.plane.taps


async def test_trace_a_vhost_from_its_row(publish: Any, proxy: RunningProxy, page: Page) -> None:
    await publish(proxy.port, "vhost-publisher", echo=False, pace=0.02)  # far from 10,000 frames
    await until(lambda: session_id_of(proxy, "vhost-publisher"), "the session")
    await page.goto(proxy.admin_url + "/vhosts")
    row = page.locator('#vhosts tr[data-vhost="/"]')
    await row.get_by_role("button", name="Trace '/'").click()
    await expect(page.locator("#confirm-dialog")).to_contain_text("Trace vhost '/'?")
    await page.locator("#confirm-ok").click()
    await expect(page).to_have_url(re.compile(r"/traces/1$"))
    await expect(page.locator("#trace-view")).to_contain_text("vhost /")
    await expect(
        page.locator("#trace-events tbody tr").filter(has_text="Basic.Publish").first
    ).to_be_visible()
    assert proxy.ctx.traces.get(1).filter.vhost == "/"
    # The nav's Traces lists it; its frame count goes up while the page is open.
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Traces").click()
    await expect(page).to_have_url(re.compile(r"/traces$"))
    listed = page.locator('#traces tr[data-trace="1"]')
    await expect(listed).to_contain_text("vhost /")
    await expect(listed).to_contain_text("running")
    frames = listed.locator("td.num").first
    shown = await frames.inner_text()
    await expect(frames).not_to_have_text(shown, timeout=15_000)  # the live refresh
    await listed.get_by_role("link", name="1", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/traces/1$"))
