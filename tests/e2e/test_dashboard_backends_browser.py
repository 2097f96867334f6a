"""The backends page in a real headless Chromium: state and health shown, and the drain /
maintenance / ready actions (confirmed in the dialog) change what a new client gets."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Page, expect

from amqpprox.amqp.methods import ConnectionClose, ConnectionOpenOk
from amqpprox.core.backend_status import BackendState
from tests.conftest import RunningProxy, ctl, free_closed_port, pika_round_trip
from tests.rawamqp import (
    RawClient,
    close_raw_clients,  # noqa: F401 (autouse: no raw client outlives the test)
)

pytestmark = pytest.mark.broker

BACKEND = "default-backend"  # simple mode's backend, in front of the real broker


async def test_backend_state_actions_and_health(proxy: RunningProxy, page: Page) -> None:
    await page.goto(proxy.admin_url + "/backends")
    row = page.locator(f'#backends tr[data-backend="{BACKEND}"]')
    await expect(row.locator(".backend-state")).to_have_text("ready")
    await expect(row.locator(".backend-health")).to_contain_text("unknown")

    await row.get_by_role("button", name=f"Drain '{BACKEND}'").click()
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_contain_text(f"Drain backend '{BACKEND}'?")
    await page.locator("#confirm-ok").click()
    await expect(row.locator(".backend-state")).to_have_text("draining")
    assert proxy.ctx.state.backend_state(BACKEND) is BackendState.DRAIN
    client = await RawClient.connect(proxy.port)
    closed = await client.open()
    assert isinstance(closed, ConnectionClose)
    assert (closed.reply_code, closed.reply_text) == (506, "No ready broker for vhost /")

    await row.get_by_role("button", name=f"Maintenance '{BACKEND}'").click()
    await expect(dialog).to_contain_text(f"Put backend '{BACKEND}' in maintenance?")
    await page.locator("#confirm-ok").click()
    await expect(row.locator(".backend-state")).to_have_text("maintenance")
    assert proxy.ctx.state.backend_state(BACKEND) is BackendState.MAINT

    # Cancelling changes nothing.
    await row.get_by_role("button", name=f"Ready '{BACKEND}'").click()
    await expect(dialog).to_contain_text(f"Make backend '{BACKEND}' ready?")
    await page.locator("#confirm-cancel").click()
    await expect(dialog).to_be_hidden()
    assert proxy.ctx.state.backend_state(BACKEND) is BackendState.MAINT

    await row.get_by_role("button", name=f"Ready '{BACKEND}'").click()
    await page.locator("#confirm-ok").click()
    await expect(row.locator(".backend-state")).to_have_text("ready")
    assert await asyncio.to_thread(pika_round_trip, proxy.port, b"ready") == b"ready"

    # A checked backend's verdict and last error show up live, without a reload.
    dead = free_closed_port()
    assert await ctl(proxy.control_socket, f"BACKEND ADD dead dc 127.0.0.1 {dead}") == ""
    assert await ctl(proxy.control_socket, "HEALTH CHECK dead 3600000 200 1 1") == ""
    dead_row = page.locator('#backends tr[data-backend="dead"]')
    await expect(dead_row.locator(".backend-health")).to_contain_text("down", timeout=10_000)
    await expect(dead_row.locator(".health-error")).to_contain_text("ConnectionRefusedError")
    await expect(dead_row.locator(".backend-health")).to_contain_text("checked every 3600000 ms")
    kept = await RawClient.connect(proxy.port)
    assert isinstance(await kept.open(), ConnectionOpenOk)  # the farm still routes
