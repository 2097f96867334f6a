"""Migrate-to on the vhosts page in a real Chromium, and evict without JavaScript.

Six raw AMQP clients are on backend b1 (farm f1); the operator follows the vhost row's
"Migrate to…" link, picks farm f2 and a pace, confirms in the dialog, and watches the
migrations panel count the sessions moved, live, until it says done; every client got
Connection.Close 320 and the row now routes to f2. The evict form's confirmation page
(the path without JavaScript) is exercised over plain HTTP.
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest
from playwright.async_api import Page, expect

from amqpprox.core import moves
from tests.conftest import RunningProxy
from tests.moves_rig import closed_at, open_clients
from tests.polling import until

pytestmark = pytest.mark.broker
# The first migration's row shows some of its six sessions moved while it still runs.
MOVING = (
    "() => { const row = document.querySelector('#migrations tr[data-migration=\"1\"]');"
    " const m = row && row.querySelector('.migration-progress').textContent"
    ".match(/^(\\d+) of 6$/);"
    " return m && Number(m[1]) > 0 && Number(m[1]) < 6"
    " && row.querySelector('.migration-state').textContent.includes('running'); }"
)


async def test_migrate_to_from_the_vhosts_page_with_live_progress(
    proxy2: RunningProxy, page: Page
) -> None:
    clients = await open_clients(proxy2.port, 6)
    closes = [asyncio.ensure_future(closed_at(client)) for client in clients]
    await page.goto(proxy2.admin_url + "/vhosts")
    row = page.locator('#vhosts tr[data-vhost="/"]')
    await expect(row).to_contain_text("farm f1")
    await row.get_by_role("link", name="Migrate '/' to another farm or backend").click()
    await expect(page.locator("#migrate-vhost")).to_have_value("/")
    await page.locator("#migrate-target").select_option("farm:f2")
    await page.locator("#migrate-pace").fill("2")
    await page.locator("#migrate-submit").click()
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_contain_text("Migrate this vhost?")
    await page.locator("#confirm-ok").click()
    await expect(page.locator(".banner-ok")).to_contain_text(
        "Migration 1 started: vhost '/' to farm f2, 6 sessions at 2/s."
    )
    migration = page.locator('#migrations tr[data-migration="1"]')
    await expect(migration).to_contain_text("farm f1 → farm f2")
    # The panel follows the migration without a reload: some moved while it runs...
    await page.wait_for_function(MOVING)
    # ... then all of them, and done.
    await expect(migration.locator(".migration-progress")).to_have_text("6 of 6")
    await expect(migration.locator(".migration-state")).to_have_text("done")
    await expect(migration.get_by_role("button", name="Cancel")).to_have_count(0)
    await expect(row).to_contain_text("farm f2")
    for _at, close in await asyncio.gather(*closes):
        assert (close.reply_code, close.reply_text) == (
            320,
            "CONNECTION_FORCED - vhost / is moving to farm f2",
        )
    assert proxy2.ctx.state.mappings["/"].target == "f2"


async def test_evict_without_javascript_asks_first(proxy2: RunningProxy) -> None:
    clients = await open_clients(proxy2.port, 2)
    closes = [asyncio.ensure_future(closed_at(client)) for client in clients]
    async with aiohttp.ClientSession() as http:
        html = await (await http.get(proxy2.admin_url + "/backends")).text()
        assert 'id="evict-form"' in html
        # Each row links to the form with its backend chosen.
        assert 'href="/backends?evict=b2#evict"' in html
        chosen = await (await http.get(proxy2.admin_url + "/backends?evict=b2")).text()
        assert '<option value="b2" selected>b2</option>' in chosen
        match = re.search(r'name="csrf" value="([^"]+)"', html)
        assert match is not None
        form = {"csrf": match.group(1), "next": "/backends", "backend": "b1", "per_second": "5"}
        response = await http.post(proxy2.admin_url + "/evict", data=form)
        assert response.status == 200
        page = await response.text()
        assert "Evict the sessions of backend &#39;b1&#39;?" in page
        assert proxy2.ctx.moves.evictions == {}  # only asked so far
        response = await http.post(
            proxy2.admin_url + "/evict", data={**form, "confirm": "yes"}, allow_redirects=False
        )
        assert (response.status, response.headers["Location"]) == (303, "/backends")
        eviction = moves.get_eviction(proxy2.ctx, 1)
        await until(lambda: not eviction.running, "the eviction to end")
        html = await (await http.get(proxy2.admin_url + "/backends")).text()
        assert 'data-eviction="1"' in html and "2 of 2" in html
        # A bad pace or an unknown backend is the dashboard's error page, nothing started.
        for bad in ({"per_second": "0"}, {"backend": "nope"}, {"csrf": "forged"}):
            response = await http.post(
                proxy2.admin_url + "/evict", data={**form, "confirm": "yes", **bad}
            )
            assert response.status in (400, 403, 404), bad
        assert list(proxy2.ctx.moves.evictions) == [1]
    for _at, close in await asyncio.gather(*closes):
        assert close.reply_text == "CONNECTION_FORCED - evicted from backend b1"


async def test_cancel_forms_ask_first_and_name_unknown_jobs(proxy2: RunningProxy) -> None:
    """The dashboard's cancel actions without JavaScript: an unknown job is the error page
    (404), a finished one is refused (409), and nothing is cancelled before confirming."""
    clients = await open_clients(proxy2.port, 1)
    try:
        eviction = moves.evict_backend(proxy2.ctx, "b1", 1)
        await until(lambda: not eviction.running, "the eviction to end")
        async with aiohttp.ClientSession() as http:
            html = await (await http.get(proxy2.admin_url + "/backends")).text()
            match = re.search(r'name="csrf" value="([^"]+)"', html)
            assert match is not None
            form = {"csrf": match.group(1), "next": "/backends"}
            for path in ("/evictions/77/cancel", "/migrations/77/cancel", "/evictions/x/cancel"):
                response = await http.post(proxy2.admin_url + path, data=form)
                assert response.status == 404, path
            response = await http.post(proxy2.admin_url + "/evictions/1/cancel", data=form)
            assert response.status == 200
            assert "Cancel eviction 1?" in await response.text()
            response = await http.post(
                proxy2.admin_url + "/evictions/1/cancel", data={**form, "confirm": "yes"}
            )
            assert response.status == 409  # it is over: nothing to cancel
    finally:
        for client in clients:
            client.abort()
