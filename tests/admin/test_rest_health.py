"""Backend states and health checks through REST, the control socket, /metrics and the
definitions document: every route and command with its error cases (no broker needed:
checks run against a port nothing listens on, or are left off)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from amqpprox.admin.control import run_line
from amqpprox.runtime import Runtime
from tests.admin.conftest import API
from tests.admin.test_rest_routes import expect_error, put
from tests.conftest import free_closed_port, make_settings, promtool_check_metrics
from tests.polling import until

Client = TestClient[Any, Any]
BACKEND = {"datacenter": "dc1", "host": "127.0.0.1", "port": 5672}
CHECK = {"interval_ms": 5000, "timeout_ms": 100, "rise": 1, "fall": 1}


async def test_backend_state_route(client: Client, runtime: Runtime) -> None:
    await put(client, "/backends/b1", BACKEND)
    response = await client.put(API + "/backends/b1/state", json={"state": "drain"})
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["name"] == "b1" and body["state"] == "drain"
    assert body["health"]["status"] == "unknown"
    assert (await (await client.get(API + "/backends/b1")).json())["state"] == "drain"
    assert [b["state"] for b in await (await client.get(API + "/backends")).json()] == ["drain"]
    assert await run_line(runtime.ctx, "BACKEND HEALTH b1") == (
        "b1 state=drain health=unknown last_check=none age=- successes=0 failures=0 check=off\n"
    )
    await expect_error(
        await client.put(API + "/backends/nope/state", json={"state": "maint"}),
        404,
        "not_found",
        "nope",
    )
    for bad, fragment in (
        ({"state": "down"}, "state"),
        ({"state": 1}, "state"),
        ({}, "state"),
        ({"state": "ready", "extra": 1}, "extra"),
        ([], "object"),
    ):
        response = await client.put(API + "/backends/b1/state", json=bad)
        await expect_error(response, 400, "invalid_argument", fragment)
    response = await client.put(
        API + "/backends/b1/state", data=b"{", headers={"Content-Type": "application/json"}
    )
    await expect_error(response, 400, "invalid_json")
    response = await client.put(
        API + "/backends/b1/state",
        data=b'{"state": "\\ud800"}',
        headers={"Content-Type": "application/json"},
    )
    await expect_error(response, 400, "invalid_argument", "surrogate")


async def test_health_check_routes(client: Client, runtime: Runtime) -> None:
    await put(client, "/backends/b1", {**BACKEND, "port": free_closed_port()})
    response = await client.get(API + "/health-checks/default")
    assert response.status == 200 and await response.json() == {"check": None}
    assert "ETag" in response.headers
    default = {"interval_ms": 3_600_000}
    response = await client.put(API + "/health-checks/default", json=default)
    assert response.status == 200
    assert await response.json() == {
        "check": {"interval_ms": 3_600_000, "timeout_ms": 1000, "rise": 2, "fall": 3}
    }
    response = await client.get(API + "/health-checks/backends/b1")
    assert await response.json() == {
        "backend": "b1",
        "check": None,
        "effective": {"interval_ms": 3_600_000, "timeout_ms": 1000, "rise": 2, "fall": 3},
    }
    response = await client.put(API + "/health-checks/backends/b1", json=CHECK)
    assert response.status == 200
    assert (await response.json())["check"] == CHECK
    # The check runs (nothing listens there): one failure is enough with fall 1.
    await until(lambda: runtime.ctx.health.status("b1") == "down", "b1 down")
    health = (await (await client.get(API + "/backends/b1")).json())["health"]
    assert health["status"] == "down" and health["check"] == CHECK
    assert health["consecutive_failures"] >= 1 and health["checked_at"] > 0
    assert "ConnectionRefusedError" in health["last_error"]
    line = await run_line(runtime.ctx, "BACKEND HEALTH")
    assert line.startswith("b1 state=ready health=down last_check=failed age=")
    assert "check=5000/100/1/1 error=127.0.0.1:" in line
    # Deleting the backend's own settings leaves the default in effect.
    response = await client.delete(API + "/health-checks/backends/b1")
    assert response.status == 204
    response = await client.get(API + "/health-checks/backends/b1")
    assert (await response.json())["check"] is None
    response = await client.delete(API + "/health-checks/default")
    assert response.status == 204
    assert await (await client.get(API + "/health-checks/default")).json() == {"check": None}
    await until(lambda: runtime.ctx.health.status("b1") == "unknown", "checks off: forgotten")

    for path in ("/health-checks/backends/nope",):
        await expect_error(await client.get(API + path), 404, "not_found", "nope")
        await expect_error(await client.put(API + path, json=CHECK), 404, "not_found", "nope")
        await expect_error(await client.delete(API + path), 404, "not_found", "nope")
    for bad, fragment in (
        ({}, "interval_ms"),
        ({"interval_ms": 5}, "interval_ms"),
        ({"interval_ms": "100"}, "interval_ms"),
        ({"interval_ms": 100.0}, "interval_ms"),
        ({"interval_ms": True}, "interval_ms"),
        ({"interval_ms": 100, "rise": 0}, "rise"),
        ({"interval_ms": 100, "fall": 1001}, "fall"),
        ({"interval_ms": 100, "timeout_ms": 0}, "timeout_ms"),
        ({"interval_ms": 100, "bogus": 1}, "bogus"),
    ):
        for path in ("/health-checks/default", "/health-checks/backends/b1"):
            response = await client.put(API + path, json=bad)
            await expect_error(response, 400, "invalid_argument", fragment)
    # If-Match: these are configuration.
    response = await client.put(
        API + "/health-checks/default", json=CHECK, headers={"If-Match": '"0"'}
    )
    await expect_error(response, 412, "precondition_failed")


async def test_control_commands_and_their_errors(runtime: Runtime) -> None:
    ctx = runtime.ctx

    async def say(line: str) -> str:
        return await run_line(ctx, line)

    assert await say(f"BACKEND ADD b1 dc 127.0.0.1 {free_closed_port()}") == ""
    assert await say("BACKEND STATE b1 maint") == ""
    assert ctx.state.backend_state("b1").value == "maint"
    assert await say("BACKEND STATE b1") == (
        "BACKEND STATE requires a backend name and a state: ready | drain | maint\n"
    )
    assert await say("BACKEND STATE b1 up") == "State must be one of ready | drain | maint\n"
    assert await say("BACKEND STATE nope drain") == "Backend 'nope' not found\n"
    assert await say("BACKEND HEALTH nope") == "Backend 'nope' not found\n"
    # A hostile name is one field of one line in every reply.
    assert await say("BACKEND STATE bad\x1b[31m drain") == "Backend 'bad\\x1b[31m' not found\n"
    # The original's BACKEND words are untouched.
    assert (await say("BACKEND PRINT")).startswith("b1 (dc): 127.0.0.1 127.0.0.1:")
    assert await say("BACKEND FOO") == "Subcommand 'FOO' not recognized."

    assert await say("HEALTH CHECK b1 3600000 200 3 4") == ""
    assert ctx.state.health_checks["b1"].as_dict() == {
        "interval_ms": 3600000,
        "timeout_ms": 200,
        "rise": 3,
        "fall": 4,
    }
    assert await say("HEALTH CHECK DEFAULT 3600000") == ""
    assert ctx.state.default_health_check is not None
    usage = "HEALTH CHECK requires (backend | DEFAULT) interval_ms [timeout_ms rise fall]\n"
    assert await say("HEALTH CHECK b1") == usage
    assert await say("HEALTH CHECK b1 100 50") == usage
    assert await say("HEALTH CHECK b1 -5") == "Bad number '-5'\n"
    assert await say("HEALTH CHECK b1 1e3") == "Bad number '1e3'\n"
    assert await say("HEALTH CHECK b1 99999999999") == "Bad number '99999999999'\n"
    assert await say("HEALTH CHECK b1 5") == (
        "interval_ms must be an integer from 10 to 3600000: 5\n"
    )
    assert await say("HEALTH CHECK b1 100 50 0 1") == "rise must be an integer from 1 to 1000: 0\n"
    assert await say("HEALTH CHECK nope 100") == "Backend 'nope' not found\n"
    assert await say("HEALTH DISABLE nope") == "Backend 'nope' not found\n"
    assert await say("HEALTH DISABLE") == "HEALTH DISABLE requires a backend name or DEFAULT\n"
    assert await say("HEALTH FROB") == "Subcommand 'FROB' not recognized.\n"
    assert await say("HEALTH DISABLE b1") == ""
    assert await say("HEALTH DISABLE DEFAULT") == ""
    assert ctx.state.health_checks == {} and ctx.state.default_health_check is None
    help_text = await say("HELP")
    assert "BACKEND STATE name (ready | drain | maint)" in help_text
    assert "\nHEALTH CHECK (backend | DEFAULT) interval_ms" in help_text


async def test_metrics_lines_and_promtool(client: Client, runtime: Runtime) -> None:
    await put(client, "/backends/b1", {**BACKEND, "port": free_closed_port()})
    await put(client, "/backends/b2", BACKEND)
    await client.put(API + "/backends/b2/state", json={"state": "maint"})
    await client.put(API + "/health-checks/backends/b1", json=CHECK)
    await until(lambda: runtime.ctx.health.status("b1") == "down", "b1 down")
    text = await (await client.get("/metrics")).text()
    lines = set(text.splitlines())
    assert 'amqpprox_backend_up{backend="b1"} 0' in lines
    assert not any(line.startswith('amqpprox_backend_up{backend="b2"}') for line in lines)
    assert 'amqpprox_backend_state{backend="b2",state="maint"} 1' in lines
    assert 'amqpprox_backend_state{backend="b2",state="ready"} 0' in lines
    assert 'amqpprox_backend_state{backend="b1",state="ready"} 1' in lines
    assert 'amqpprox_backend_health_checks_total{backend="b1",result="ok"} 0' in lines
    failed = [
        line
        for line in lines
        if line.startswith('amqpprox_backend_health_checks_total{backend="b1",result="failed"}')
    ]
    assert failed and int(failed[0].rsplit(" ", 1)[1]) >= 1
    assert 'amqpprox_backend_health_changes_total{backend="b1",status="down"} 1' in lines
    await promtool_check_metrics(text)


async def test_definitions_round_trip(client: Client, runtime: Runtime) -> None:
    await put(client, "/backends/b1", BACKEND)
    await put(client, "/backends/b2", BACKEND)
    await client.put(API + "/backends/b1/state", json={"state": "drain"})
    await client.put(API + "/health-checks/backends/b2", json=CHECK)
    await client.put(API + "/health-checks/default", json={"interval_ms": 3_600_000})
    exported = await (await client.get(API + "/definitions")).json()
    assert exported["health"] == {
        "default_check": {"interval_ms": 3_600_000, "timeout_ms": 1000, "rise": 2, "fall": 3},
        "checks": {"b2": CHECK},
        "states": {"b1": "drain"},
    }
    # Clear it all, then import the export: everything comes back.
    await client.put(API + "/backends/b1/state", json={"state": "ready"})
    await client.delete(API + "/health-checks/backends/b2")
    await client.delete(API + "/health-checks/default")
    response = await client.put(API + "/definitions?dry_run=true", json=exported)
    assert response.status == 200, await response.text()
    changes = (await response.json())["changes"]
    assert changes["health"]["to"] == exported["health"]
    assert runtime.ctx.state.backend_state("b1").value == "ready"  # a dry run changes nothing
    response = await client.put(API + "/definitions", json=exported)
    assert response.status == 200, await response.text()
    again = await (await client.get(API + "/definitions")).json()
    assert again["health"] == exported["health"]
    assert runtime.ctx.state.backend_state("b1").value == "drain"
    # A document naming a backend it does not define is refused, whole.
    for bad, fragment in (
        ({"states": {"ghost": "drain"}}, "ghost"),
        ({"checks": {"ghost": CHECK}}, "ghost"),
        ({"states": {"b1": "down"}}, "health.states"),
        ({"checks": {"b1": {"interval_ms": 1}}}, "health.checks"),
        ({"default_check": {"rise": 2}}, "interval_ms"),
    ):
        response = await client.put(API + "/definitions", json={**exported, "health": bad})
        await expect_error(response, 400, "invalid_argument", fragment)
    assert (await (await client.get(API + "/definitions")).json())["health"] == exported["health"]
    # Leaving "health" out keeps it; deleting a backend drops its state and check.
    without = {k: v for k, v in exported.items() if k != "health"}
    without["backends"] = [b for b in exported["backends"] if b["name"] != "b2"]
    response = await client.put(API + "/definitions", json=without)
    assert response.status == 200, await response.text()
    final = (await (await client.get(API + "/definitions")).json())["health"]
    assert final["states"] == {"b1": "drain"} and final["checks"] == {}


@pytest.mark.parametrize("name", ["nl\nx", "esc\x1b", "sp ace"])
async def test_hostile_backend_names_in_routes(client: Client, name: str) -> None:
    from urllib.parse import quote  # noqa: PLC0415

    path = f"/backends/{quote(name, safe='')}/state"
    response = await client.put(API + path, json={"state": "drain"})
    await expect_error(response, 404, "not_found")
    body = json.dumps({"interval_ms": 100})
    response = await client.put(
        API + f"/health-checks/backends/{quote(name, safe='')}",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    await expect_error(response, 404, "not_found")


def _read(path: str) -> str:
    return Path(path).read_text()


async def test_state_file_keeps_states_and_checks(tmp_socket_dir: str) -> None:
    folder = tmp_socket_dir
    state_file = os.path.join(folder, "state.json")
    first = Runtime(make_settings(folder, state_file=state_file))
    await first.start()
    try:
        for line in (
            "BACKEND ADD b1 dc 127.0.0.1 5672",
            "BACKEND STATE b1 maint",
            "HEALTH CHECK b1 3600000 100 1 1",
            "HEALTH CHECK DEFAULT 3600000",
        ):
            assert await run_line(first.ctx, line) == "", line
        saved = json.loads(_read(state_file))["health"]
        assert saved["states"] == {"b1": "maint"}  # written before the command replied
    finally:
        await first.stop()
    second = Runtime(make_settings(folder, state_file=state_file))
    await second.start()
    try:
        assert second.ctx.state.backend_state("b1").value == "maint"
        assert second.ctx.state.health_checks["b1"].as_dict() == {
            "interval_ms": 3600000,
            "timeout_ms": 100,
            "rise": 1,
            "fall": 1,
        }
        assert second.ctx.state.default_health_check is not None
        # The restored checks run: the restarted checker picked them up.
        await until(lambda: "b1" in second.health_checker._tasks, "b1's check task")
    finally:
        await second.stop()
    assert second.health_checker._tasks == {}  # every check task stopped with the proxy
