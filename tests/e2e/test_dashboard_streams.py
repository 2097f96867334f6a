"""The dashboard in a real browser shows stream listeners and stream sessions as such."""

from __future__ import annotations

from playwright.async_api import Page, expect

from amqpprox.core import operations as ops
from amqpprox.stream import codec
from tests.conftest import RunningProxy
from tests.rawstream import (
    RawStream,
    stream_plugin,  # noqa: F401 (autouse)
)


async def test_stream_listener_and_session_are_shown(proxy: RunningProxy, page: Page) -> None:
    port = await ops.start_listener(proxy.ctx, 0, host="127.0.0.1", protocol="stream")
    client = await RawStream.connect(port)
    try:
        await client.handshake()
        assert (await client.open("/"))[0] == codec.OK
        await page.goto(proxy.admin_url + "/")
        row = page.locator("#listeners tbody tr", has_text=str(port))
        await expect(row.locator(".listener-protocol")).to_have_text("stream")
        amqp_row = page.locator("#listeners tbody tr", has_text=str(proxy.port))
        await expect(amqp_row.locator(".listener-protocol")).to_have_text("AMQP")
        await page.goto(proxy.admin_url + "/sessions")
        [session] = [s for s in proxy.ctx.sessions if s.protocol == "stream"]
        stream_row = page.locator(f"#session-{session.id}")
        await expect(stream_row.locator(".badge-stream")).to_have_text("stream")
        await page.goto(proxy.admin_url + f"/sessions/{session.id}")
        await expect(page.locator("#session-protocol")).to_have_text("RabbitMQ Streams")
    finally:
        client.close()
