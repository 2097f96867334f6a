"""The password a client sends appears in no trace event, trace file, log line, REST body
or dashboard page: the decoder redacts Connection.StartOk/Secure/SecureOk itself."""

from __future__ import annotations

import asyncio
import base64
import logging
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pika
import pytest

from amqpprox.amqp.frames import encode_frame
from amqpprox.amqp.methods import ConnectionSecureOk, encode_method
from tests.conftest import RunningProxy, pika_params
from tests.polling import until
from tests.rawamqp import RawClient, start_ok
from tests.trace.helpers import events, rest

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def broker_user() -> Iterator[tuple[str, str]]:
    """A user of its own on the real broker, with a password found nowhere else."""
    tag = uuid.uuid4().hex[:12]
    user, password = f"amqpprox-trace-{tag}", f"Pw-{tag}-n0t-for-logs"

    def rabbitmqctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)

    rabbitmqctl("add_user", user, password)
    try:
        rabbitmqctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
        yield user, password
    finally:
        rabbitmqctl("delete_user", user)


async def test_password_is_in_no_output(
    proxy: RunningProxy,
    broker_user: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="amqpprox")
    user, password = broker_user
    started = await rest(proxy, "POST", "/traces", {"vhost": "/", "bodies": True, "file": "t"}, 201)
    file = Path(started["file"])
    params = pika_params(proxy.port)
    params.credentials = pika.PlainCredentials(user, password)
    conn = await asyncio.to_thread(pika.BlockingConnection, params)
    try:
        session_id = max(s.id for s in proxy.ctx.sessions)
        await asyncio.to_thread(lambda: conn.channel().close())
        assert proxy.ctx.sessions.get(session_id).identity.user == user
        pages: list[str] = []
        async with aiohttp.ClientSession() as http:
            for path in (
                "/api/v1/sessions",
                f"/api/v1/sessions/{session_id}",
                "/api/v1/traces",
                "/api/v1/traces/1/events?format=jsonl",
                "/sessions",
                f"/sessions/{session_id}",
                "/traces/1",
            ):
                async with http.get(proxy.admin_url + path) as response:
                    assert response.status == 200, path
                    pages.append(await response.text())
    finally:
        await asyncio.to_thread(conn.close)

    # A client that sends its credentials again once live (StartOk, SecureOk): the
    # relay forwards them as any frame; the trace shows them redacted.
    raw = await RawClient.connect(proxy.port)
    await raw.open()
    again = start_ok(user, password)
    await raw.send(encode_method(again) + encode_frame(1, 0, _secure_ok(password)))
    closed = await raw.read_method()  # the broker refuses a StartOk on an open connection
    assert type(closed).__name__ == "ConnectionClose"
    await raw.close_ok()
    found = await until(lambda: _has_start_ok(proxy), "the repeated StartOk in the trace")
    redacted = next(e for e in found if e.get("method") == "Connection.StartOk")
    assert redacted["arguments"]["response"] == "<redacted>"
    assert redacted["arguments"]["user"] == user

    await rest(proxy, "DELETE", "/traces/1")
    await until(lambda: not proxy.ctx.traces.tasks, "the trace file closed")
    written = await asyncio.to_thread(file.read_text)
    assert '"method": "Channel.Open"' in written and '"method": "Connection.StartOk"' in written
    outputs = [*pages, written]
    outputs.append(await rest(proxy, "GET", "/traces/1/events?format=jsonl"))
    assert "trace 1 started" in caplog.text  # every log record of the run, DEBUG included
    outputs.append(caplog.text)
    assert any(user in text for text in outputs)  # the outputs are real: the user is shown
    b64 = base64.b64encode(password.encode()).decode()
    for text in outputs:
        assert password not in text and b64[:16] not in text


def _secure_ok(password: str) -> bytes:
    return encode_method(ConnectionSecureOk(f"\0x\0{password}".encode()))[7:-1]


def _has_start_ok(proxy: RunningProxy) -> list[dict[str, object]]:
    trace = proxy.ctx.traces.get(1)
    found = trace.buffered()
    return found if any(e.get("method") == "Connection.StartOk" for e in found) else []


async def test_events_of_a_stopped_trace_stay_readable(proxy: RunningProxy) -> None:
    started = await rest(proxy, "POST", "/traces", {"vhost": "/"}, 201)
    await rest(proxy, "DELETE", f"/traces/{started['id']}")
    assert await events(proxy, started["id"]) == []
