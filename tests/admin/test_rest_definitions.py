"""GET/PUT /api/v1/definitions, amqpprox --definitions, and the admin token."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from amqpprox.admin.app import make_admin_app
from amqpprox.runtime import Runtime
from tests.admin.conftest import API, ClientFactory
from tests.admin.test_rest_routes import expect_error
from tests.conftest import make_settings

Client = TestClient[Any, Any]

DOC: dict[str, Any] = {
    "datacenter": "dc1",
    "backends": [
        {"name": "b1", "datacenter": "dc1", "host": "127.0.0.1", "port": 5672},
        {"name": "b2", "datacenter": "dc2", "host": "localhost", "port": 5673, "dns": True},
    ],
    "farms": [{"name": "f1", "backends": ["b2", "b1"], "partitions": ["datacenter-affinity"]}],
    "mappings": [{"vhost": "/", "farm": "f1"}, {"vhost": "v2", "backend": "b2"}],
    "default_farm": "f1",
}


NO_TLS: dict[str, Any] = {
    "key_file": None,
    "cert_chain_file": None,
    "rsa_key_file": None,
    "tmp_dh_file": None,
    "ca_cert_file": None,
    "verify_mode": [],
    "ciphers": None,
}


async def test_export_of_an_empty_proxy(client: Client) -> None:
    response = await client.get(API + "/definitions")
    assert response.status == 200 and "ETag" in response.headers
    body = await response.json()
    assert {k: v for k, v in body.items() if k != "amqpprox_version"} == {
        "datacenter": "",
        "backends": [],
        "farms": [],
        "mappings": [],
        "default_farm": None,
        "listeners": [],
        "limits": {
            "default": {
                "conn_rate": None,
                "conn_rate_alarm": None,
                "data_rate": None,
                "data_rate_alarm": None,
                "connections": None,
                "out_data_rate": None,
                "total_connections": None,
            },
            "vhosts": {},
        },
        "auth": {"mode": "always_allow"},
        "tls": {direction: dict(NO_TLS) for direction in ("ingress", "egress")},
        "paused_vhosts": [],
        "health": {"default_check": None, "checks": {}, "states": {}},
    }


async def test_dry_run_reports_the_difference_and_changes_nothing(client: Client) -> None:
    response = await client.put(API + "/definitions?dry_run=true", json=DOC)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["dry_run"] is True and "definitions" not in body
    assert body["changes"]["backends"] == {"added": ["b1", "b2"], "removed": [], "changed": []}
    assert body["changes"]["mappings"]["added"] == ["/", "v2"]
    assert body["changes"]["datacenter"] == {"from": "", "to": "dc1"}
    assert body["changes"]["listeners"] == {"added": [], "removed": [], "changed": []}
    assert (await (await client.get(API + "/definitions")).json())["backends"] == []


async def test_apply_then_export_round_trips(client: Client, runtime: Runtime) -> None:
    response = await client.put(API + "/definitions", json=DOC)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["dry_run"] is False
    exported = body["definitions"]
    assert exported == await (await client.get(API + "/definitions")).json()
    assert exported["farms"] == [
        {
            "name": "f1",
            "selector": "round-robin",
            "backends": ["b2", "b1"],
            "partitions": ["datacenter-affinity"],
        }
    ]
    assert runtime.ctx.state.farm_partitions("f1") == [["b1"], ["b2"]]
    # Applying the export again changes nothing.
    again = await (await client.put(API + "/definitions", json=exported)).json()
    assert all(
        v is None or not any(v.values()) for k, v in again["changes"].items() if k != "datacenter"
    )
    assert again["changes"]["datacenter"] is None
    # A smaller document removes what it leaves out.
    smaller = {**DOC, "backends": DOC["backends"][:1], "farms": [], "mappings": []}
    smaller["default_farm"] = None
    result = await (await client.put(API + "/definitions", json=smaller)).json()
    assert result["changes"]["backends"]["removed"] == ["b2"]
    assert result["definitions"]["farms"] == [] and result["definitions"]["default_farm"] is None


async def test_a_left_out_key_keeps_that_part(client: Client) -> None:
    await client.put(API + "/definitions", json=DOC)
    response = await client.put(API + "/definitions", json={"datacenter": "dc2"})
    body = await response.json()
    assert body["definitions"]["datacenter"] == "dc2"
    assert len(body["definitions"]["backends"]) == 2


async def test_an_invalid_document_changes_nothing(client: Client, runtime: Runtime) -> None:
    await client.put(API + "/definitions", json=DOC)
    before = await (await client.get(API + "/definitions")).json()
    version = runtime.ctx.state.version
    cases: list[tuple[dict[str, Any], str]] = [
        ({**DOC, "farms": [{"name": "f1", "backends": ["nosuch"]}]}, "nosuch"),
        ({**DOC, "backends": [{**DOC["backends"][0], "port": 0}]}, "backends.0.port"),
        ({**DOC, "backends": [DOC["backends"][0], DOC["backends"][0]]}, "twice"),
        ({**DOC, "mappings": [{"vhost": "x"}]}, "mappings.0"),
        ({**DOC, "surprise": 1}, "surprise"),
        ({**DOC, "backends": [{**DOC["backends"][0], "host": "nosuch.invalid"}]}, "resolve"),
        ({**DOC, "listeners": [{"port": 0}]}, "listeners.0.port"),
        # The document deletes b2 while a mapping keeps it.
        ({**DOC, "backends": DOC["backends"][:1], "farms": []}, "removes"),
    ]
    for document, fragment in cases:
        response = await client.put(API + "/definitions", json=document)
        await expect_error(response, 400, "invalid_argument", fragment)
    assert runtime.ctx.state.version == version
    assert await (await client.get(API + "/definitions")).json() == before


async def test_a_listener_that_cannot_bind_undoes_the_others(
    client: Client, runtime: Runtime, reserved_port: int
) -> None:
    busy = await asyncio.start_server(lambda r, w: None, "0.0.0.0", 0)
    busy_port = busy.sockets[0].getsockname()[1]
    try:
        document = {**DOC, "listeners": [{"port": reserved_port}, {"port": busy_port}]}
        response = await client.put(API + "/definitions", json=document)
        await expect_error(response, 409, "invalid_state", str(busy_port))
    finally:
        busy.close()
        await busy.wait_closed()
    assert runtime.ctx.listeners.specs() == []
    assert runtime.ctx.state.backends == {}
    # And a good one starts it, and a later document without it stops it.
    response = await client.put(
        API + "/definitions", json={**DOC, "listeners": [{"port": reserved_port}]}
    )
    assert response.status == 200
    assert [s.port for s in runtime.ctx.listeners.specs()] == [reserved_port]
    response = await client.put(API + "/definitions", json={"listeners": []})
    assert (await response.json())["changes"]["listeners"]["removed"] == [str(reserved_port)]
    assert runtime.ctx.listeners.specs() == []


async def test_definitions_honour_if_match(client: Client) -> None:
    tag = (await client.get(API + "/definitions")).headers["ETag"]
    await client.put(API + "/datacenter", json={"name": "elsewhere"})
    response = await client.put(API + "/definitions", json=DOC, headers={"If-Match": tag})
    await expect_error(response, 412, "precondition_failed")


# -- amqpprox --definitions ----------------------------------------------------------------------
async def test_runtime_applies_a_definitions_file(tmp_socket_dir: str, tmp_path: Path) -> None:
    path = tmp_path / "defs.json"
    path.write_text(json.dumps(DOC))
    runtime = Runtime(make_settings(tmp_socket_dir, definitions_file=str(path)))
    await runtime.start()
    try:
        assert sorted(runtime.ctx.state.backends) == ["b1", "b2"]
        assert runtime.ctx.state.default_farm == "f1"
    finally:
        await runtime.stop()


async def run_amqpprox(tmp_socket_dir: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "amqpprox",
        "--controlSocket",
        os.path.join(tmp_socket_dir, "ctl2"),
        "--logDirectory",
        os.path.join(tmp_socket_dir, "logs2"),
        "--adminPort",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_an_invalid_definitions_file_stops_the_start(
    tmp_socket_dir: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**DOC, "farms": [{"name": "f1", "backends": ["ghost"]}]}))
    code, out = await run_amqpprox(tmp_socket_dir, "--definitions", str(bad))
    assert code == 1
    assert f"Failed to start: definitions file {bad}" in out and "ghost" in out
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    code, out = await run_amqpprox(tmp_socket_dir, "--definitions", str(broken))
    assert code == 1 and "not valid JSON" in out
    code, out = await run_amqpprox(tmp_socket_dir, "--definitions", str(tmp_path / "missing"))
    assert code == 1 and "No such file" in out


async def test_token_for_reads_needs_a_token(tmp_socket_dir: str) -> None:
    code, out = await run_amqpprox(tmp_socket_dir, "--adminTokenForReads")
    assert code == 2 and "--adminToken" in out


# -- the admin token ---------------------------------------------------------------------------
async def token_client(
    tmp_socket_dir: str, aiohttp_client: ClientFactory, *, for_reads: bool
) -> tuple[Runtime, Client]:
    settings = make_settings(tmp_socket_dir, admin_token="s3cret", admin_token_for_reads=for_reads)
    runtime = Runtime(settings)
    return runtime, await aiohttp_client(make_admin_app(runtime.ctx))


async def test_writes_need_the_token(tmp_socket_dir: str, aiohttp_client: ClientFactory) -> None:
    _runtime, client = await token_client(tmp_socket_dir, aiohttp_client, for_reads=False)
    body = {"name": "dc"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        response = await client.put(API + "/datacenter", json=body, headers=headers)
        await expect_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = await client.put(
        API + "/datacenter", json=body, headers={"Authorization": "Bearer s3cret"}
    )
    assert response.status == 200
    assert (await client.get(API + "/datacenter")).status == 200
    assert (await client.get("/healthz")).status == 200


async def test_reads_need_the_token_when_asked(
    tmp_socket_dir: str, aiohttp_client: ClientFactory
) -> None:
    _runtime, client = await token_client(tmp_socket_dir, aiohttp_client, for_reads=True)
    await expect_error(await client.get(API + "/backends"), 401, "unauthorized")
    ok = await client.get(API + "/backends", headers={"Authorization": "Bearer s3cret"})
    assert ok.status == 200
    assert (await client.get("/healthz")).status == 200
