"""Browser fixtures: Debian's Chromium driven by Playwright, real AMQP clients in threads.

The browser is the system's ``/usr/bin/chromium`` (or ``AMQPPROX_CHROMIUM``); Playwright's
own browser download is never used. A missing Chromium fails the tests with a clear
message instead of skipping them (.ci/run installs it). Each test gets a fresh browser
(Playwright gives it a new temporary profile) on the test's own event loop, where the
proxy runs too; blocking pika clients run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.conftest import (
    BROKER_PASSWORD,
    BROKER_USER,
    RunningProxy,
    running_proxy,
)
from tests.moves_rig import forwarders, proxy2  # noqa: F401 (fixtures)
from tests.rawamqp import close_raw_clients  # noqa: F401 (autouse: no raw client outlives its test)

CHROMIUM = os.environ.get("AMQPPROX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # No internet here: without these Chromium keeps dialling Google services.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UPDATE_SCREENSHOTS = os.environ.get("AMQPPROX_UPDATE_SCREENSHOTS") == "1"
DOCS = Path(__file__).resolve().parents[2] / "docs"
TIMEOUT_MS = 10_000
ADMIN_TOKEN = "e2e-token-3f9a"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium is missing: {CHROMIUM} is not an executable. The dashboard tests "
            "drive a real browser: install Debian's chromium (apt-get install chromium, as "
            ".ci/run does) or point AMQPPROX_CHROMIUM at one.",
            pytrace=False,
        )
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1360, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
async def token_proxy(tmp_socket_dir: str) -> AsyncIterator[RunningProxy]:
    """A proxy in simple mode whose admin plane needs ``ADMIN_TOKEN`` for writes."""
    async with running_proxy(tmp_socket_dir, admin_token=ADMIN_TOKEN) as running:
        yield running


class Publisher:
    """A pika client in a worker thread publishing until stopped or closed by the server.

    With ``echo`` it consumes its own messages from an exclusive queue, so bytes flow
    in both directions.

    ``closed`` keeps how the connection ended: the ``ConnectionClosedByBroker`` (reply
    code and text) when the server closed it, another AMQP error when it was cut.
    """

    def __init__(
        self, port: int, name: str, payload: int = 2048, pace: float = 0.01, echo: bool = True
    ) -> None:
        self.port = port
        self.echo = echo
        self.name = name
        self.payload = b"x" * payload
        self.pace = pace
        self.connected = threading.Event()
        self.stop = threading.Event()
        self.closed: BaseException | None = None
        self._task: asyncio.Future[None] | None = None

    def _run(self) -> None:
        params = pika.ConnectionParameters(
            "127.0.0.1",
            self.port,
            "/",
            pika.PlainCredentials(BROKER_USER, BROKER_PASSWORD),
            client_properties={"connection_name": self.name},
            connection_attempts=1,
            socket_timeout=10,
            blocked_connection_timeout=20,
        )
        connection = pika.BlockingConnection(params)
        try:
            channel = connection.channel()
            route = "amqpprox.e2e.nowhere"
            if self.echo:  # consume what it publishes, so traffic flows both ways
                route = channel.queue_declare("", exclusive=True).method.queue
                channel.basic_consume(route, lambda *_: None, auto_ack=True)
            self.connected.set()
            while not self.stop.is_set():
                channel.basic_publish("", route, self.payload)
                # Paces publishing and lets pika read what the server sends (a Close).
                connection.process_data_events(time_limit=self.pace)
        except pika.exceptions.AMQPError as error:
            self.closed = error
        finally:
            if connection.is_open:
                with contextlib.suppress(pika.exceptions.AMQPError):
                    connection.close()

    async def start(self) -> Publisher:
        self._task = asyncio.ensure_future(asyncio.to_thread(self._run))
        done = await asyncio.to_thread(self.connected.wait, 10)
        if not done:
            await self.finish()
            raise AssertionError(f"{self.name} did not connect through the proxy")
        return self

    async def finish(self) -> None:
        self.stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 20)


@pytest.fixture
def publishers() -> Iterator[list[Publisher]]:
    """Publishers a test starts; every one is stopped (and its thread joined) afterwards."""
    started: list[Publisher] = []
    yield started
    for publisher in started:
        publisher.stop.set()


@pytest.fixture
async def publish(publishers: list[Publisher]) -> AsyncIterator[object]:
    async def start(port: int, name: str, **kwargs: object) -> Publisher:
        publisher = Publisher(port, name, **kwargs)  # type: ignore[arg-type]
        publishers.append(publisher)
        return await publisher.start()

    yield start
    for publisher in publishers:
        await publisher.finish()


def session_id_of(proxy: RunningProxy, name: str) -> int | None:
    for session in proxy.ctx.sessions:
        if session.connection_name == name and session.opened_at is not None:
            return int(session.id)
    return None


async def screenshot(page: Page, name: str) -> None:
    """Write docs/<name> only when AMQPPROX_UPDATE_SCREENSHOTS=1 (CI leaves docs alone)."""
    if UPDATE_SCREENSHOTS:
        await page.screenshot(path=str(DOCS / name), full_page=True)
