"""REST and the control socket are two front ends over the same operations.

The same configuration built once through REST and once through amqpprox_ctl's socket
gives the same definitions and the same BACKEND/FARM/MAP PRINT text; and a change made
through either is visible through the other at once.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from amqpprox.runtime import Runtime
from tests.conftest import ctl, make_settings

CTL_SCRIPT = [
    "DATACENTER SET dc1",
    "BACKEND ADD b1 dc1 127.0.0.1 5672",
    "BACKEND ADD b2 dc2 localhost 5673 SEND-PROXY",
    "BACKEND ADD_DNS b3 dc1 localhost 5674 TLS",
    "FARM ADD f1 round-robin b3 b1 b2",
    "FARM PARTITION f1 datacenter-affinity",
    "FARM ADD f2 round-robin b2",
    "MAP FARM / f1",
    "MAP BACKEND v2 b2",
    "MAP FARM v3 f2",
    "MAP DEFAULT f2",
]

REST_SCRIPT: list[tuple[str, str, dict[str, Any]]] = [
    ("PUT", "/datacenter", {"name": "dc1"}),
    ("PUT", "/backends/b1", {"datacenter": "dc1", "host": "127.0.0.1", "port": 5672}),
    (
        "PUT",
        "/backends/b2",
        {"datacenter": "dc2", "host": "localhost", "port": 5673, "proxy_protocol": True},
    ),
    (
        "PUT",
        "/backends/b3",
        {"datacenter": "dc1", "host": "localhost", "port": 5674, "dns": True, "tls": True},
    ),
    (
        "PUT",
        "/farms/f1",
        {"selector": "round-robin", "backends": ["b3", "b1", "b2"], "partitions": []},
    ),
    ("PUT", "/farms/f1", {"backends": ["b3", "b1", "b2"], "partitions": ["datacenter-affinity"]}),
    ("PUT", "/farms/f2", {"backends": ["b2"]}),
    ("PUT", "/mappings/%2F", {"farm": "f1"}),
    ("PUT", "/mappings/v2", {"backend": "b2"}),
    ("PUT", "/mappings/v3", {"farm": "f2"}),
    ("PUT", "/default-farm", {"farm": "f2"}),
]

JSON = {"Content-Type": "application/json"}  # a REST POST must declare it, body or not
PRINTS = ["BACKEND PRINT", "FARM PRINT", "MAP PRINT", "DATACENTER PRINT", "VHOST PRINT"]


@contextlib.asynccontextmanager
async def bare() -> AsyncIterator[tuple[Runtime, str]]:
    with tempfile.TemporaryDirectory(prefix="apx") as path:
        runtime = Runtime(make_settings(path))
        await runtime.start()
        try:
            yield runtime, f"http://127.0.0.1:{runtime.admin_port}/api/v1"
        finally:
            await runtime.stop()


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200
        return await response.json()


async def test_same_configuration_through_rest_and_control_socket() -> None:
    async with bare() as (via_rest, rest_url), bare() as (via_ctl, ctl_url):
        async with aiohttp.ClientSession() as http:
            for method, path, body in REST_SCRIPT:
                async with http.request(method, rest_url + path, json=body) as response:
                    assert response.status in (200, 201), await response.text()
            for line in CTL_SCRIPT:
                assert await ctl(via_ctl.settings.control_socket, line) == "", line
            from_rest = await get_json(http, rest_url + "/definitions")
            from_ctl = await get_json(http, ctl_url + "/definitions")
        assert from_rest == from_ctl
        assert from_rest["default_farm"] == "f2" and len(from_rest["backends"]) == 3
        for line in PRINTS:
            rest_text = await ctl(via_rest.settings.control_socket, line)
            ctl_text = await ctl(via_ctl.settings.control_socket, line)
            assert rest_text == ctl_text, line
        backends = await ctl(via_rest.settings.control_socket, "BACKEND PRINT")
        assert "b1 (dc1): 127.0.0.1 127.0.0.1:5672\n" in backends
        assert ":5673 PROXY PROTOCOL V1 ENABLED\n" in backends
        assert "b3 (dc1): localhost :5674 TLS\n" in backends
        assert via_rest.ctx.state.farm_partitions("f1") == via_ctl.ctx.state.farm_partitions("f1")


async def test_changes_are_visible_at_once_through_the_other_front_end() -> None:
    async with bare() as (runtime, url), aiohttp.ClientSession() as http:
        sock = runtime.settings.control_socket
        body = {"datacenter": "dc1", "host": "127.0.0.1", "port": 5672}
        async with http.put(url + "/backends/b1", json=body) as response:
            assert response.status == 201
        assert await ctl(sock, "BACKEND PRINT") == "b1 (dc1): 127.0.0.1 127.0.0.1:5672\n"
        assert await ctl(sock, "FARM ADD f1 round-robin b1") == ""
        assert (await get_json(http, url + "/farms/f1"))["backends"] == ["b1"]
        async with http.delete(url + "/backends/b1") as response:
            assert response.status == 409
        assert await ctl(sock, "BACKEND DELETE b1") == "Backend 'b1' is still used by farm f1"
        async with http.post(url + "/vhosts/v1/pause", headers=JSON) as response:
            assert response.status == 200
        assert await ctl(sock, "VHOST PRINT") == "v1 = PAUSED\n"
        assert await ctl(sock, "VHOST UNPAUSE v1") == ""
        assert await get_json(http, url + "/vhosts") == [
            {"name": "v1", "paused": False, "sessions": 0}
        ]
