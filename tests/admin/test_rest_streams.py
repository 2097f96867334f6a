"""REST for RabbitMQ Streams: stream listeners (``"protocol": "stream"``, node listeners)
and backends' ``stream_port``, their error paths, and the same state through the control
socket and in definitions."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from amqpprox.runtime import Runtime
from tests.admin.conftest import API
from tests.admin.test_rest_routes import BACKEND, expect_error, put
from tests.conftest import ctl

Client = TestClient[Any, Any]


async def test_backend_stream_port_default_set_and_shown(client: Client, runtime: Runtime) -> None:
    created = await put(client, "/backends/b1", BACKEND)
    assert created["stream_port"] == 5552
    replaced = await put(client, "/backends/b1", {**BACKEND, "stream_port": 15552}, 200)
    assert replaced["stream_port"] == 15552
    reply = await ctl(runtime.settings.control_socket, "BACKEND STREAM_PORT b1 5553")
    assert reply == ""
    got = await (await client.get(API + "/backends/b1")).json()
    assert got["stream_port"] == 5553
    exported = await (await client.get(API + "/definitions")).json()
    assert exported["backends"][0]["stream_port"] == 5553


@pytest.mark.parametrize("bad", [0, 65536, "5552", None, True, 1.5])
async def test_backend_stream_port_refused(client: Client, bad: object) -> None:
    response = await client.put(API + "/backends/b1", json={**BACKEND, "stream_port": bad})
    await expect_error(response, 400, "invalid_argument", "stream_port")


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("BACKEND STREAM_PORT", "STREAM_PORT requires a name and a port"),
        ("BACKEND STREAM_PORT b1", "STREAM_PORT requires a name and a port"),
        ("BACKEND STREAM_PORT b1 0", "Arguments not correctly provided"),
        ("BACKEND STREAM_PORT b1 99999", "Arguments not correctly provided"),
        ("BACKEND STREAM_PORT b1 x", "Arguments not correctly provided"),
        ("BACKEND STREAM_PORT ghost 5552", "backend 'ghost' not found"),
        ("BACKEND STREAM_PORT ev\x1bil 5552", "backend 'ev\\x1bil' not found"),
    ],
)
async def test_backend_stream_port_control_errors(runtime: Runtime, line: str, reply: str) -> None:
    assert await ctl(runtime.settings.control_socket, line) == reply


async def test_stream_listener_and_node_listener(
    client: Client, runtime: Runtime, reserved_port: int
) -> None:
    await put(client, "/backends/b1", BACKEND)
    body = {"tls": False, "address": "127.0.0.1", "protocol": "stream", "node": "b1"}
    created = await put(client, f"/listeners/{reserved_port}", body)
    assert created == {
        "port": reserved_port,
        "address": "127.0.0.1",
        "tls": False,
        "proxy_protocol": False,
        "protocol": "stream",
        "node": "b1",
    }
    [spec] = runtime.ctx.listeners.specs()
    assert spec.protocol == "stream" and spec.node == "b1"
    printed = await ctl(runtime.settings.control_socket, "LISTEN PRINT")
    assert printed == (
        f"port={reserved_port} address=127.0.0.1 tls=N proxyProtocol=N protocol=stream node=b1\n"
    )
    exported = await (await client.get(API + "/definitions")).json()
    assert exported["listeners"] == [created]
    # Back to AMQP: the same port, another protocol, replaced.
    amqp = await put(client, f"/listeners/{reserved_port}", {"tls": False}, 200)
    assert amqp["protocol"] == "amqp" and amqp["node"] is None


@pytest.mark.parametrize(
    "case",
    [
        ({"tls": False, "protocol": "mqtt"}, 400, "invalid_argument", "protocol"),
        ({"tls": False, "protocol": 1}, 400, "invalid_argument", "protocol"),
        ({"tls": False, "node": "b1"}, 400, "invalid_argument", "node listener"),
        ({"tls": False, "protocol": "stream", "node": ""}, 400, "invalid_argument", "node"),
        ({"tls": False, "protocol": "stream", "node": "ghost"}, 404, "not_found", "ghost"),
        ({"tls": False, "protocol": "stream", "node": "a\nb"}, 400, "invalid_argument", ""),
    ],
)
async def test_stream_listener_refused(
    client: Client, reserved_port: int, case: tuple[dict[str, object], int, str, str]
) -> None:
    body, status, code, fragment = case
    await put(client, "/backends/b1", BACKEND)
    response = await client.put(API + f"/listeners/{reserved_port}", json=body)
    await expect_error(response, status, code, fragment)


async def test_definitions_round_trip_a_node_listener(
    client: Client, runtime: Runtime, reserved_port: int
) -> None:
    document = {
        "backends": [{**BACKEND, "name": "b1", "stream_port": 15552}],
        "listeners": [
            {"port": reserved_port, "address": "127.0.0.1", "protocol": "stream", "node": "b1"}
        ],
    }
    response = await client.put(API + "/definitions", json=document)
    assert response.status == 200, await response.text()
    [spec] = runtime.ctx.listeners.specs()
    assert (spec.protocol, spec.node) == ("stream", "b1")
    assert runtime.ctx.state.backends["b1"].stream_port == 15552
    exported = await (await client.get(API + "/definitions")).json()
    again = await client.put(API + "/definitions", json=exported)
    assert again.status == 200
    assert (await again.json())["changes"]["listeners"] == {
        "added": [],
        "removed": [],
        "changed": [],
    }


async def test_definitions_refuse_a_node_listener_of_no_backend(
    client: Client, runtime: Runtime, reserved_port: int
) -> None:
    document = {
        "backends": [],
        "listeners": [{"port": reserved_port, "protocol": "stream", "node": "ghost"}],
    }
    response = await client.put(API + "/definitions", json=document)
    await expect_error(response, 400, "invalid_argument", "listeners.0", "ghost")
    assert runtime.ctx.listeners.specs() == []
