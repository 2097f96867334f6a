"""AUTH SERVICE with a fake auth service (ours to fake) and the real RabbitMQ.

The service is a small aiohttp app answering the original's protobuf messages (or their
JSON mapping): ALLOW, DENY, ALLOW with other credentials, garbage, or nothing at all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from google.protobuf import json_format

from amqpprox.amqp.fields import encode_table
from amqpprox.amqp.frames import PROTOCOL_HEADER
from amqpprox.amqp.methods import (
    ConnectionClose,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionStartOk,
    ConnectionTuneOk,
    encode_method,
)
from amqpprox.core.sessions import CloseReason
from amqpprox.proxy.proto import authproto_pb2 as pb
from amqpprox.runtime import Runtime, SimpleMode
from tests.conftest import BROKER_HOST, BROKER_PORT, RunningProxy, ctl, make_settings
from tests.integration.test_limits import rabbitmqctl
from tests.integration.test_statistics import scrape, value
from tests.polling import until
from tests.rawamqp import OPEN_CLIENTS, RawClient

pytestmark = pytest.mark.broker

OTHER_USER = "amqpprox-auth-test"
OTHER_PASSWORD = "s3cret-auth-test"


@dataclass
class FakeAuthService:
    """What to answer next, and what was asked."""

    answer: str = "allow"
    reason: str = ""
    requests: list[pb.AuthRequest] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    port: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.content_types.append(request.content_type)
        as_json = request.content_type == "application/json"
        message = pb.AuthRequest()
        if as_json:
            json_format.Parse(body.decode(), message)
        else:
            message.ParseFromString(body)
        self.requests.append(message)
        if self.answer == "nothing":
            await asyncio.Event().wait()  # until the proxy gives up and disconnects
        if self.answer == "garbage":
            return web.Response(body=b"\xff\xff\xff not a protobuf")
        response = pb.AuthResponse(reason=self.reason)
        if self.answer == "deny":
            response.result = pb.AuthResponse.DENY
        if self.answer == "replace":
            response.authData.authMechanism = "PLAIN"
            response.authData.credentials = f"\0{OTHER_USER}\0{OTHER_PASSWORD}".encode()
        if as_json:
            return web.json_response(json.loads(json_format.MessageToJson(response)))
        return web.Response(body=response.SerializeToString())


@pytest.fixture
async def service() -> AsyncIterator[FakeAuthService]:
    fake = FakeAuthService()
    app = web.Application()
    app.router.add_post("/auth", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    fake.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture
async def guarded(tmp_socket_dir: str, service: FakeAuthService) -> AsyncIterator[RunningProxy]:
    """A proxy in simple mode asking ``service`` about every connection (0.5 s deadline)."""
    runtime = Runtime(make_settings(tmp_socket_dir, auth_timeout=0.5))
    await runtime.start()
    port = await runtime.configure_simple(SimpleMode(0, BROKER_HOST, BROKER_PORT))
    proxy = RunningProxy(runtime, port, runtime.settings.control_socket)
    assert await ctl(proxy.control_socket, f"AUTH SERVICE 127.0.0.1 {service.port} /auth") == (
        f"HTTP Auth service will be used to authn/authz client connections: "
        f"http://127.0.0.1:{service.port}/auth\n"
    )
    try:
        yield proxy
    finally:
        for client in OPEN_CLIENTS:  # no drain to wait for
            client.abort()
        await runtime.stop()


async def open_raw(proxy: RunningProxy, **kw: str) -> tuple[RawClient, object]:
    client = await RawClient.connect(proxy.port)
    return client, await client.open("/", **kw)


async def test_allow_connects_and_the_request_carries_the_connection(
    guarded: RunningProxy, service: FakeAuthService
) -> None:
    client, answer = await open_raw(guarded)
    assert isinstance(answer, ConnectionOpenOk)
    client.abort()
    (request,) = service.requests
    assert request.vhostName == "/"
    assert request.authData.authMechanism == "PLAIN"
    assert request.authData.credentials == b"\0guest\0guest"
    assert request.clientHostname == "127.0.0.1"
    assert request.connectionName == "rawamqp"
    assert service.content_types == ["application/octet-stream"]


async def test_deny_closes_403_with_the_reason_on_start_ok(
    guarded: RunningProxy, service: FakeAuthService
) -> None:
    service.answer, service.reason = "deny", "no entry for you " + "x" * 300
    _, answer = await open_raw(guarded)
    assert isinstance(answer, ConnectionClose)
    assert (answer.reply_code, answer.class_id, answer.method_id) == (403, 10, 11)
    assert answer.reply_text == service.reason.encode()[:255].decode()
    (session,) = list(guarded.ctx.sessions)
    assert session.auth_denied and session.close_reason is CloseReason.AUTH_DENIED


async def test_deny_without_authentication_failure_close_just_closes(
    guarded: RunningProxy, service: FakeAuthService
) -> None:
    service.answer = "deny"
    client = await RawClient.connect(guarded.port)
    start_ok = ConnectionStartOk(encode_table({"product": "old"}), "PLAIN", b"\0g\0g", "en_US")
    await client.send(
        PROTOCOL_HEADER
        + encode_method(start_ok)
        + encode_method(ConnectionTuneOk(2047, 131072, 0))
        + encode_method(ConnectionOpen("/"))
    )
    seen = []
    with pytest.raises(EOFError):
        while True:
            seen.append(type(await client.read_method()).__name__)
    assert seen == ["ConnectionStart", "ConnectionTune"]


@pytest.mark.parametrize("answer", ["garbage", "nothing"])
async def test_a_broken_or_silent_service_is_a_deny_within_the_deadline(
    guarded: RunningProxy, service: FakeAuthService, answer: str, caplog: pytest.LogCaptureFixture
) -> None:
    service.answer = answer
    loop = asyncio.get_running_loop()
    started = loop.time()
    _, refused = await open_raw(guarded)
    assert isinstance(refused, ConnectionClose) and refused.reply_code == 403
    assert loop.time() - started < 3
    # The client learns only that the service is unavailable; the log says what failed.
    assert refused.reply_text == "Authentication service unavailable"
    wanted = "could not be parsed" if answer == "garbage" else "did not answer within 0.5s"
    await until(lambda: wanted in caplog.text, "the service's fault in the log")


async def test_a_slow_service_does_not_hold_up_other_sessions(
    guarded: RunningProxy, service: FakeAuthService
) -> None:
    service.answer = "nothing"
    waiting = asyncio.get_running_loop().create_task(open_raw(guarded))
    await until(lambda: len(service.requests) == 1, "the first request")
    assert await ctl(guarded.control_socket, "AUTH ALWAYS_ALLOW") == (
        "All connections are authorised to route to any vhost. No auth service requests "
        "will be made.\n"
    )
    client, answer = await open_raw(guarded)  # while the first one still waits
    assert isinstance(answer, ConnectionOpenOk)
    client.abort()
    assert not waiting.done()
    _, refused = await waiting
    assert isinstance(refused, ConnectionClose) and refused.reply_code == 403


async def test_unreachable_service_is_a_deny(
    guarded: RunningProxy, caplog: pytest.LogCaptureFixture
) -> None:
    await ctl(guarded.control_socket, "AUTH SERVICE 127.0.0.1 1 /auth")
    _, refused = await open_raw(guarded)
    assert isinstance(refused, ConnectionClose) and refused.reply_code == 403
    assert refused.reply_text == "Authentication service unavailable"
    assert "127.0.0.1:1" not in refused.reply_text
    await until(
        lambda: "Unable to reach auth service http://127.0.0.1:1/auth" in caplog.text,
        "the service's address and error in the log",
    )


async def test_allow_with_new_credentials_reaches_rabbitmq_as_that_user(
    guarded: RunningProxy, service: FakeAuthService
) -> None:
    await rabbitmqctl("add_user", OTHER_USER, OTHER_PASSWORD)
    try:
        await rabbitmqctl("set_permissions", "-p", "/", OTHER_USER, ".*", ".*", ".*")
        service.answer, service.reason = "replace", "mapped by the test service"
        # JSON this time: the same messages in their proto3 JSON mapping.
        await ctl(guarded.control_socket, f"AUTH SERVICE 127.0.0.1 {service.port} /auth JSON")
        client, answer = await open_raw(guarded, user="nobody", password="wrong")
        assert isinstance(answer, ConnectionOpenOk)
        assert service.content_types == ["application/json"]
        assert service.requests[0].authData.credentials == b"\0nobody\0wrong"
        listing = await rabbitmqctl("list_connections", "user", "client_properties")
        # This client's connection: the broker may hold others of the same product.
        port = client.writer.get_extra_info("sockname")[1]
        lines = [line for line in listing.splitlines() if f'"127.0.0.1:{port}"' in line]
        assert len(lines) == 1 and lines[0].startswith(OTHER_USER), listing
        assert "amqpprox_auth" in lines[0] and "mapped by the test service" in lines[0]
        client.abort()
    finally:
        await rabbitmqctl("delete_user", OTHER_USER)


async def test_auth_answers_and_latency_are_counted(
    guarded: RunningProxy, service: FakeAuthService
) -> None:
    requests, latency = "amqpprox_auth_requests_total", "amqpprox_auth_latency_seconds"
    samples = await scrape(guarded.admin_url)
    for result in ("allow", "deny", "error", "timeout"):
        assert value(samples, requests, result=result) == 0
    client, answer = await open_raw(guarded)
    assert isinstance(answer, ConnectionOpenOk)
    client.abort()
    for kind in ("deny", "garbage", "nothing"):
        service.answer = kind
        _, refused = await open_raw(guarded)
        assert isinstance(refused, ConnectionClose)
    samples = await scrape(guarded.admin_url)
    for result in ("allow", "deny", "error", "timeout"):
        assert value(samples, requests, result=result) == 1, result
    assert value(samples, latency + "_count") == 4
    # The timeout waited the whole deadline (0.5 s); the other three took less.
    assert value(samples, latency + "_bucket", le="0.25") >= 3
    assert value(samples, latency + "_sum") >= 0.5
