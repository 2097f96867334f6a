"""REST for limits and auth: the same state as the control socket, in the definitions too."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from amqpprox.runtime import Runtime
from tests.admin.conftest import API
from tests.conftest import ctl

Client = TestClient[Any, Any]


async def test_limits_round_trip_and_parity_with_the_control_socket(
    client: Client, runtime: Runtime
) -> None:
    response = await client.put(API + "/limits/default", json={"conn_rate": 7, "data_rate": 1000})
    assert response.status == 200 and "ETag" in response.headers
    assert (await response.json())["conn_rate"] == 7
    assert await ctl(runtime.settings.control_socket, "LIMIT PRINT") == (
        "Default limit for any vhost, allow average 7 connections per second.\n"
        "Default data limit for any vhost, allow max 1000 bytes per second.\n"
    )
    response = await client.put(API + "/limits/vhosts/%2F", json={"connections": 2})
    assert response.status == 201
    body = await response.json()
    assert body["vhost"] == "/" and body["connections"] == 2 and body["conn_rate"] is None
    assert body["effective"]["conn_rate"] == 7 and body["effective"]["connections"] == 2
    await ctl(runtime.settings.control_socket, "LIMIT CONN_RATE_ALARM VHOST / 3")
    listing = await (await client.get(API + "/limits")).json()
    assert listing["vhosts"]["/"]["conn_rate_alarm"] == 3
    definitions = await (await client.get(API + "/definitions")).json()
    assert definitions["limits"] == listing
    assert (await client.delete(API + "/limits/vhosts/%2F")).status == 204
    assert (await client.get(API + "/limits/vhosts/%2F")).status == 404
    assert (await client.delete(API + "/limits/vhosts/%2F")).status == 404
    # The document restores them.
    response = await client.put(API + "/definitions", json={"limits": listing})
    assert response.status == 200, await response.text()
    assert (await (await client.get(API + "/limits")).json()) == listing
    assert (await client.delete(API + "/limits/default")).status == 204
    assert runtime.ctx.state.default_limits.empty


async def test_limits_are_validated(client: Client) -> None:
    for body in (
        {"data_rate": 0},
        {"conn_rate": -1},
        {"conn_rate": "5"},
        {"total_connections": 5},
        {"bogus": 1},
    ):
        response = await client.put(API + "/limits/vhosts/vh", json=body)
        assert response.status == 400, body
    response = await client.put(API + "/limits/default", json={"total_connections": 5})
    assert response.status == 200


async def test_auth_round_trip(client: Client, runtime: Runtime) -> None:
    assert await (await client.get(API + "/auth")).json() == {"mode": "always_allow"}
    body = {"mode": "service", "host": "127.0.0.1", "port": 8080, "target": "/a", "format": "json"}
    response = await client.put(API + "/auth", json=body)
    assert response.status == 200
    assert (await response.json())["url"] == "http://127.0.0.1:8080/a"
    assert await ctl(runtime.settings.control_socket, "AUTH PRINT") == (
        "HTTP Auth service will be used to authn/authz client connections: "
        "http://127.0.0.1:8080/a (JSON)\n"
    )
    assert (await client.put(API + "/auth", json={"mode": "service"})).status == 400
    response = await client.put(API + "/auth", json={"mode": "always_allow"})
    assert response.status == 200 and not runtime.ctx.state.auth.service
