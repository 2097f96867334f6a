"""Security of the admin plane and of credentials.

* The admin plane binds 127.0.0.1 unless told otherwise.
* With a token set, every mutating route of the app's router (walked generically, REST
  and dashboard alike) refuses a request without it, or with a wrong one, and nothing
  changes; the same requests with the token are not refused.
* A password used to log in through the proxy never appears in the logs (console and
  file at verbosity 5), in CONN, in REST, on the dashboard or in the metrics.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from amqpprox import logsetup
from amqpprox.admin.app import make_admin_app
from amqpprox.amqp.methods import ConnectionClose, ConnectionOpenOk
from amqpprox.cli import build_parser
from amqpprox.core.context import Settings
from amqpprox.runtime import Runtime, SimpleMode
from tests.conftest import BROKER_HOST, BROKER_PORT, RunningProxy, ctl, make_settings, running_proxy
from tests.integration.test_limits import rabbitmqctl
from tests.rawamqp import RawClient

pytestmark = pytest.mark.broker

TOKEN = "t0ken-" + uuid.uuid4().hex
# Public on purpose: a browser must be able to sign in and out.
PUBLIC_MUTATIONS = {"/login", "/logout"}


def test_admin_binds_loopback_by_default() -> None:
    assert Settings().admin_host == "127.0.0.1"
    assert build_parser().parse_args([]).adminHost == "127.0.0.1"


async def test_running_admin_plane_listens_on_loopback_only(proxy: RunningProxy) -> None:
    runner = proxy.runtime._admin_runner
    assert runner is not None
    assert {address[0] for address in runner.addresses} == {"127.0.0.1"}


@pytest.fixture
async def guarded(tmp_socket_dir: str) -> AsyncIterator[RunningProxy]:
    async with running_proxy(tmp_socket_dir, admin_token=TOKEN) as running:
        yield running


def _concrete(path: str) -> str:
    values = {"name": "default-backend", "vhost": "v", "port": "65002", "id": "1"}
    values.update(action="pause", direction="INGRESS")
    return re.sub(r"\{(\w+)[^}]*\}", lambda m: values.get(m.group(1), "x"), path)


async def test_every_mutating_route_needs_the_token(guarded: RunningProxy) -> None:
    ctx = guarded.ctx
    client = await RawClient.connect(guarded.port)
    assert isinstance(await client.open("/"), ConnectionOpenOk)
    [session] = list(ctx.sessions)
    routes = [
        (route.method, _concrete(route.resource.canonical))
        for route in make_admin_app(ctx).router.routes()
        if route.resource is not None and route.method not in ("GET", "HEAD", "OPTIONS")
    ]
    walked = [r for r in routes if r[1] not in PUBLIC_MUTATIONS]
    assert len(walked) >= 20, walked
    version = ctx.state.version
    body = b'{"host": "127.0.0.1", "port": 5672, "datacenter": "x", "members": []}'
    refused: dict[str, int] = {}
    async with aiohttp.ClientSession(guarded.admin_url) as http:
        for method, path in walked:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                async with http.request(
                    method,
                    path,
                    data=body,
                    headers={"Content-Type": "application/json", **headers},
                    allow_redirects=False,
                ) as response:
                    refused[f"{method} {path}"] = response.status
                    if path.startswith("/api/"):
                        assert response.status == 401, (method, path, headers, response.status)
                        assert response.headers["WWW-Authenticate"].startswith("Bearer")
                    else:  # dashboard forms: refused too (no sign-in, no CSRF token)
                        assert response.status in (401, 403), (method, path, response.status)
        assert ctx.state.version == version, "a refused request changed the configuration"
        assert not session.paused and not session.finished
        # The walk means something: with the token, REST writes are not refused.
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for method, path in walked:
            if not path.startswith("/api/"):
                continue
            async with http.request(
                method, path, data=body, headers={"Content-Type": "application/json", **auth}
            ) as response:
                assert response.status != 401, (method, path)
    await client.close()


@pytest.fixture
async def broker_user() -> AsyncIterator[tuple[str, str]]:
    """A user of the broker's vhost / with a unique password, deleted afterwards; the
    test errors out if ``rabbitmqctl`` cannot make it."""
    user = "apx-sec-" + uuid.uuid4().hex[:8]
    password = "pw-" + uuid.uuid4().hex  # unique: any hit is a leak
    await rabbitmqctl("add_user", user, password)
    try:
        await rabbitmqctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
        yield user, password
    finally:
        await rabbitmqctl("delete_user", user)


async def test_passwords_never_appear_in_logs_conn_rest_dashboard_or_metrics(
    tmp_socket_dir: str, capfd: pytest.CaptureFixture[str], broker_user: tuple[str, str]
) -> None:
    user, password = broker_user
    refused_password = "pw-refused-" + uuid.uuid4().hex
    logs = os.path.join(tmp_socket_dir, "logs")
    settings = make_settings(tmp_socket_dir, log_directory=logs)
    logsetup.configure(logs, console_verbosity=5, file_verbosity=5)
    runtime = Runtime(settings)
    await runtime.start()
    try:
        port = await runtime.configure_simple(SimpleMode(0, BROKER_HOST, BROKER_PORT))
        proxy = RunningProxy(runtime, port, settings.control_socket)
        await ctl(proxy.control_socket, "LOG CONSOLE 5")
        await ctl(proxy.control_socket, "LOG FILE 5")
        # A refused login with a unique password, and a successful one that stays open
        # while everything is read.
        refused = await RawClient.connect(port)
        answer = await refused.open("/", user="guest", password=refused_password)
        assert isinstance(answer, ConnectionClose) and answer.reply_code == 403
        client = await RawClient.connect(port)
        assert isinstance(await client.open("/", user=user, password=password), ConnectionOpenOk)
        texts: list[str] = []
        session_ids = [s.id for s in runtime.ctx.sessions]
        assert len(session_ids) == 2
        texts.append(await ctl(proxy.control_socket, "CONN"))
        texts.append(await ctl(proxy.control_socket, "STAT"))
        async with aiohttp.ClientSession(proxy.admin_url) as http:
            paths = ["/api/v1/sessions", "/api/v1/stats", "/metrics", "/", "/sessions"]
            for sid in session_ids:
                paths += [f"/api/v1/sessions/{sid}", f"/sessions/{sid}"]
            for path in paths:
                async with http.get(path) as response:
                    assert response.status == 200, path
                    texts.append(await response.text())
        await client.close()
    finally:
        await runtime.stop()
        logsetup.unconfigure()
    captured = capfd.readouterr()
    texts += [captured.out, captured.err]
    texts += _read_logs(logs)
    everything = "\n".join(texts)
    assert "Starting connection for" in everything  # the logs at verbosity 5 were captured
    for secret in (refused_password, password):
        assert secret not in everything
        assert secret.encode().hex() not in everything


def _read_logs(directory: str) -> list[str]:
    return [p.read_text(encoding="utf-8", errors="replace") for p in Path(directory).iterdir()]
