"""Every REST route, status code and error body, on a proxy with nothing configured."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from amqpprox import __version__
from amqpprox.admin.rest import MOUNT, RestApi
from amqpprox.runtime import Runtime
from tests.admin.conftest import API

Client = TestClient[Any, Any]
TOP_LEVEL_CONTRACT = Path(__file__).resolve().parents[2] / "openapi.yaml"
BACKEND = {"datacenter": "dc1", "host": "127.0.0.1", "port": 5672}
JSON = {"Content-Type": "application/json"}  # a REST POST must declare it, body or not


async def expect_error(response: Any, status: int, code: str, *fragments: str) -> str:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code, body
    for fragment in fragments:
        assert fragment in body["message"], body
    return str(body["message"])


async def put(client: Client, path: str, body: object, status: int = 201) -> Any:
    response = await client.put(API + path, json=body)
    assert response.status == status, await response.text()
    return await response.json()


# -- overview and contract ---------------------------------------------------------------------
async def test_overview(client: Client, runtime: Runtime) -> None:
    await put(client, "/backends/b1", BACKEND)
    await put(client, "/datacenter", {"name": "dc1"}, 200)
    response = await client.get(API + "/overview")
    assert response.status == 200
    body = await response.json()
    assert body["version"] == __version__
    assert body["datacenter"] == "dc1"
    assert body["uptime_seconds"] >= 0
    assert body["config_version"] == runtime.ctx.state.version
    assert body["counts"] == {
        "sessions": 0,
        "backends": 1,
        "farms": 0,
        "mappings": 0,
        "listeners": 0,
        "vhosts": 0,
    }
    assert body["totals"]["sessions_opened"] == 0


async def test_openapi_is_served_and_is_the_shipped_file(client: Client) -> None:
    response = await client.get(API + "/openapi.yaml")
    assert response.status == 200
    text = await response.text()
    assert text == TOP_LEVEL_CONTRACT.read_text()
    assert yaml.safe_load(text)["openapi"].startswith("3.")


async def test_every_route_is_in_the_contract_and_back(client: Client, runtime: Runtime) -> None:
    spec = yaml.safe_load(await (await client.get(API + "/openapi.yaml")).text())
    documented = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete")
    }
    served: set[tuple[str, str]] = set()
    for route in client.app.router.routes():  # type: ignore[union-attr]
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method == "HEAD" or path is None:
            continue
        if path.endswith("/{action}"):
            base = path.removesuffix("/{action}")
            actions = (
                ["pause", "unpause", "disconnect", "force-disconnect"]
                if "sessions" in base
                else ["pause", "unpause", "backend-disconnect", "force-disconnect"]
            )
            served.update((route.method, f"{base}/{a}") for a in actions)
        else:
            served.add((route.method, path))
    # Every documented operation is served, and every REST route is documented (other
    # modules' routes, such as /api/v1/stats, are theirs to describe).
    assert documented <= served
    # RestApi's routes are relative to the REST sub-app's mount.
    ours = {(r.method, MOUNT + r.path) for r in RestApi(runtime.ctx).routes()}
    assert {(m, p) for m, p in served if (m, p.rsplit("/", 1)[0] + "/{action}") in ours} | {
        (m, p) for m, p in ours if not p.endswith("{action}")
    } <= documented


# -- backends ----------------------------------------------------------------------------------
async def test_backend_create_replace_get_list_delete(client: Client) -> None:
    created = await put(client, "/backends/b1", {**BACKEND, "proxy_protocol": True})
    assert created == {
        "name": "b1",
        "datacenter": "dc1",
        "host": "127.0.0.1",
        "port": 5672,
        "dns": False,
        "proxy_protocol": True,
        "tls": False,
        "state": "ready",
        "health": {
            "status": "unknown",
            "checked_at": None,
            "last_error": None,
            "consecutive_successes": 0,
            "consecutive_failures": 0,
            "check": None,
        },
        "stream_port": 5552,
    }
    replaced = await put(client, "/backends/b1", {**BACKEND, "dns": True, "name": "b1"}, 200)
    assert replaced["dns"] is True and replaced["proxy_protocol"] is False
    response = await client.get(API + "/backends/b1")
    assert response.status == 200 and await response.json() == replaced
    await put(client, "/backends/a0", BACKEND)
    listed = await (await client.get(API + "/backends")).json()
    assert [b["name"] for b in listed] == ["b1", "a0"]  # BACKEND PRINT order: insertion
    response = await client.delete(API + "/backends/b1")
    assert response.status == 204
    await expect_error(await client.get(API + "/backends/b1"), 404, "not_found", "b1")
    await expect_error(await client.delete(API + "/backends/b1"), 404, "not_found", "b1")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({**BACKEND, "port": 0}, "port"),
        ({**BACKEND, "port": 70000}, "port"),
        ({**BACKEND, "port": "5672"}, "port"),
        ({**BACKEND, "port": 5672.0}, "port"),
        ({**BACKEND, "port": True}, "port"),
        ({**BACKEND, "dns": "yes"}, "dns"),
        ({**BACKEND, "tls": 1}, "tls"),
        ({"datacenter": "dc1", "port": 5672}, "host"),
        ({**BACKEND, "host": ""}, "host"),
        ({**BACKEND, "colour": "blue"}, "colour"),
        ({**BACKEND, "name": "other"}, "name"),
    ],
)
async def test_backend_invalid_bodies_are_400(client: Client, body: object, fragment: str) -> None:
    response = await client.put(API + "/backends/b1", json=body)
    await expect_error(response, 400, "invalid_argument", fragment)
    assert await (await client.get(API + "/backends")).json() == []


async def test_backend_name_with_space_and_unresolvable_host_are_400(client: Client) -> None:
    await expect_error(
        await client.put(API + "/backends/has%20space", json=BACKEND), 400, "invalid_argument"
    )
    await expect_error(
        await client.put(API + "/backends/b1", json={**BACKEND, "host": "nosuchhost.invalid"}),
        400,
        "invalid_argument",
        "resolve",
    )


async def test_deleting_a_backend_in_use_is_409(client: Client) -> None:
    await put(client, "/backends/b1", BACKEND)
    await put(client, "/farms/f1", {"backends": ["b1"]})
    message = await expect_error(
        await client.delete(API + "/backends/b1"), 409, "invalid_state", "farm f1"
    )
    assert "still used" in message
    await client.delete(API + "/farms/f1")
    await put(client, "/mappings/v1", {"backend": "b1"})
    await expect_error(await client.delete(API + "/backends/b1"), 409, "invalid_state", "v1")


# -- request hygiene ---------------------------------------------------------------------------
async def test_malformed_json_is_400(client: Client) -> None:
    response = await client.put(
        API + "/backends/b1", data=b'{"host": ', headers={"Content-Type": "application/json"}
    )
    await expect_error(response, 400, "invalid_json")
    response = await client.put(
        API + "/backends/b1", data=b"\xff\xfe", headers={"Content-Type": "application/json"}
    )
    await expect_error(response, 400, "invalid_json")
    deep = b"[" * 100_000 + b"]" * 100_000
    response = await client.put(
        API + "/definitions", data=deep, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400


async def test_non_object_and_missing_bodies_are_400(client: Client) -> None:
    await expect_error(
        await client.put(API + "/backends/b1", json=[1, 2]), 400, "invalid_argument", "object"
    )
    await expect_error(
        await client.put(
            API + "/backends/b1", data=b"null", headers={"Content-Type": "application/json"}
        ),
        400,
        "invalid_argument",
        "object",
    )
    await expect_error(await client.put(API + "/backends/b1"), 400, "invalid_body")


async def test_wrong_content_type_is_415(client: Client) -> None:
    response = await client.put(
        API + "/backends/b1", data=json.dumps(BACKEND), headers={"Content-Type": "text/plain"}
    )
    await expect_error(response, 415, "unsupported_media_type", "text/plain")


async def test_oversized_body_is_413(client: Client) -> None:
    big = json.dumps({"backends": [], "amqpprox_version": "x" * (2 * 1024 * 1024)}).encode()
    response = await client.put(
        API + "/definitions",
        data=io.BytesIO(big),
        headers={"Content-Type": "application/json", "Content-Length": str(len(big))},
    )
    await expect_error(response, 413, "payload_too_large")


async def test_unknown_route_and_method_are_json(client: Client) -> None:
    await expect_error(await client.get(API + "/nosuch"), 404, "not_found")
    response = await client.post(API + "/backends/b1", json=BACKEND)
    await expect_error(response, 405, "method_not_allowed")
    assert "PUT" in response.headers["Allow"]
    await expect_error(
        await client.post(API + "/sessions/1/explode", headers=JSON), 404, "not_found"
    )
    await expect_error(await client.post(API + "/vhosts/v/explode", headers=JSON), 404, "not_found")


# -- farms -------------------------------------------------------------------------------------
async def test_farm_routes(client: Client) -> None:
    message = await expect_error(
        await client.put(API + "/farms/f1", json={"backends": ["b1", "b2"]}), 404, "not_found"
    )
    assert "b1" in message and "b2" in message
    await put(client, "/backends/b1", BACKEND)
    await put(client, "/backends/b2", BACKEND)
    farm = await put(
        client, "/farms/f1", {"backends": ["b2", "b1"], "partitions": ["datacenter-affinity"]}
    )
    assert farm == {
        "name": "f1",
        "selector": "round-robin",
        "backends": ["b2", "b1"],
        "partitions": ["datacenter-affinity"],
    }
    assert await put(client, "/farms/f1", {"backends": ["b1"]}, 200) == {
        "name": "f1",
        "selector": "round-robin",
        "backends": ["b1"],
        "partitions": [],
    }
    assert [f["name"] for f in await (await client.get(API + "/farms")).json()] == ["f1"]
    assert (await (await client.get(API + "/farms/f1")).json())["backends"] == ["b1"]
    for body, fragment in [
        ({"backends": []}, "backends"),
        ({"backends": ["b1"], "selector": "random"}, "selector"),
        ({"backends": ["b1"], "partitions": ["nope"]}, "policy"),
        ({"backends": ["b1", "b1"]}, "once"),
        ({"backends": "b1"}, "backends"),
    ]:
        response = await client.put(API + "/farms/f1", json=body)
        await expect_error(response, 400, "invalid_argument", fragment)
    assert (await client.delete(API + "/farms/f1")).status == 204
    await expect_error(await client.get(API + "/farms/f1"), 404, "not_found")
    await expect_error(await client.delete(API + "/farms/f1"), 404, "not_found")


# -- mappings and the default farm ---------------------------------------------------------------
async def test_mapping_routes_with_the_root_vhost(client: Client) -> None:
    assert await put(client, "/mappings/%2F", {"farm": "f1"}) == {"vhost": "/", "farm": "f1"}
    assert await put(client, "/mappings/%2F", {"backend": "b1"}, 200) == {
        "vhost": "/",
        "backend": "b1",
    }
    await put(client, "/mappings/a-vhost", {"farm": "f1", "vhost": "a-vhost"})
    listed = await (await client.get(API + "/mappings")).json()
    assert listed == [{"vhost": "/", "backend": "b1"}, {"vhost": "a-vhost", "farm": "f1"}]
    assert await (await client.get(API + "/mappings/%2F")).json() == listed[0]
    for body in ({"farm": "f1", "backend": "b1"}, {}, {"farm": "has space"}):
        await expect_error(
            await client.put(API + "/mappings/x", json=body), 400, "invalid_argument"
        )
    assert (await client.delete(API + "/mappings/%2F")).status == 204
    await expect_error(await client.get(API + "/mappings/%2F"), 404, "not_found")
    await expect_error(await client.delete(API + "/mappings/%2F"), 404, "not_found")


async def test_default_farm_routes(client: Client) -> None:
    await expect_error(await client.get(API + "/default-farm"), 404, "not_found")
    await expect_error(await client.delete(API + "/default-farm"), 404, "not_found")
    assert await put(client, "/default-farm", {"farm": "f1"}) == {"farm": "f1"}
    assert await put(client, "/default-farm", {"farm": "f2"}, 200) == {"farm": "f2"}
    assert await (await client.get(API + "/default-farm")).json() == {"farm": "f2"}
    await expect_error(await client.put(API + "/default-farm", json={}), 400, "invalid_argument")
    assert (await client.delete(API + "/default-farm")).status == 204
    await expect_error(await client.get(API + "/default-farm"), 404, "not_found")


# -- listeners ---------------------------------------------------------------------------------
async def test_listener_routes(client: Client, runtime: Runtime, reserved_port: int) -> None:
    assert await (await client.get(API + "/listeners")).json() == []
    created = await put(client, f"/listeners/{reserved_port}", {"tls": False})
    assert created == {
        "port": reserved_port,
        "address": "0.0.0.0",
        "tls": False,
        "proxy_protocol": False,
        "protocol": "amqp",
        "node": None,
    }
    # Idempotent; a PUT states the listener whole: without "tls" it is refused.
    response = await client.put(API + f"/listeners/{reserved_port}", json={"tls": False})
    assert response.status == 200 and await response.json() == created
    await expect_error(
        await client.put(API + f"/listeners/{reserved_port}"), 400, "invalid_argument", "tls"
    )
    assert await (await client.get(API + "/listeners")).json() == [created]
    assert [s.port for s in runtime.ctx.listeners.specs()] == [reserved_port]
    assert (await client.delete(API + f"/listeners/{reserved_port}")).status == 204
    await expect_error(await client.delete(API + f"/listeners/{reserved_port}"), 404, "not_found")
    for bad in ("0", "70000", "abc", "\u00b2"):
        await expect_error(await client.put(API + f"/listeners/{bad}"), 400, "invalid_argument")


async def test_listening_on_a_busy_port_is_409(client: Client) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        await expect_error(
            await client.put(API + f"/listeners/{port}", json={"tls": False}),
            409,
            "invalid_state",
            str(port),
        )


# -- datacenter, vhosts, sessions without traffic ---------------------------------------------
async def test_datacenter_routes(client: Client) -> None:
    assert await (await client.get(API + "/datacenter")).json() == {"name": ""}
    assert await put(client, "/datacenter", {"name": "london"}, 200) == {"name": "london"}
    assert await (await client.get(API + "/datacenter")).json() == {"name": "london"}
    await expect_error(await client.put(API + "/datacenter", json={}), 400, "invalid_argument")


async def test_vhost_routes_without_sessions(client: Client) -> None:
    assert await (await client.get(API + "/vhosts")).json() == []
    response = await client.post(API + "/vhosts/%2F/pause", headers=JSON)
    assert response.status == 200
    assert await response.json() == {"name": "/", "paused": True, "affected": []}
    assert await (await client.get(API + "/vhosts")).json() == [
        {"name": "/", "paused": True, "sessions": 0}
    ]
    response = await client.post(API + "/vhosts/%2F/unpause", headers=JSON)
    assert (await response.json())["paused"] is False
    for action in ("backend-disconnect", "force-disconnect"):
        response = await client.post(API + f"/vhosts/v1/{action}", headers=JSON)
        assert response.status == 200 and (await response.json())["affected"] == []
    response = await client.post(API + "/vhosts/v1/pause", json={"unexpected": 1})
    await expect_error(response, 400, "invalid_argument", "unexpected")


async def test_sessions_without_traffic(client: Client) -> None:
    body = await (await client.get(API + "/sessions")).json()
    assert body == {
        "items": [],
        "page": 1,
        "page_size": 100,
        "page_count": 1,
        "filtered_count": 0,
        "total_count": 0,
    }
    await expect_error(await client.get(API + "/sessions/7"), 404, "not_found", "7")
    await expect_error(await client.get(API + "/sessions/x"), 404, "not_found")
    # Digits to str.isdigit() that int() refuses: not found, not a server error.
    await expect_error(await client.get(API + "/sessions/\u00b2"), 404, "not_found")
    await expect_error(
        await client.post(API + "/sessions/\u00b2/disconnect", headers=JSON), 404, "not_found"
    )
    for action in ("pause", "unpause", "disconnect", "force-disconnect"):
        await expect_error(
            await client.post(API + f"/sessions/7/{action}", headers=JSON), 404, "not_found"
        )
    for query in ("page=0", "page_size=501", "sort=colour", "state=sleepy", "page=x"):
        await expect_error(await client.get(API + "/sessions?" + query), 400, "invalid_argument")


# -- versions: ETag and If-Match ---------------------------------------------------------------
async def test_etag_follows_the_configuration_version(client: Client, runtime: Runtime) -> None:
    response = await client.get(API + "/backends")
    first = response.headers["ETag"]
    assert first == f'"{runtime.ctx.state.version}"'
    response = await client.put(API + "/backends/b1", json=BACKEND)
    assert response.headers["ETag"] != first
    assert response.headers["ETag"] == f'"{runtime.ctx.state.version}"'
    assert "ETag" not in (await client.get(API + "/sessions")).headers


async def test_stale_if_match_is_412_and_changes_nothing(client: Client) -> None:
    tag = (await client.get(API + "/backends")).headers["ETag"]
    response = await client.put(API + "/backends/b1", json=BACKEND, headers={"If-Match": tag})
    assert response.status == 201
    response = await client.put(API + "/backends/b2", json=BACKEND, headers={"If-Match": tag})
    await expect_error(response, 412, "precondition_failed")
    response = await client.delete(API + "/backends/b1", headers={"If-Match": tag})
    await expect_error(response, 412, "precondition_failed")
    assert [b["name"] for b in await (await client.get(API + "/backends")).json()] == ["b1"]
    current = (await client.get(API + "/backends")).headers["ETag"]
    response = await client.delete(API + "/backends/b1", headers={"If-Match": current})
    assert response.status == 204
    response = await client.put(API + "/datacenter", json={"name": "x"}, headers={"If-Match": "*"})
    assert response.status == 200
