"""REST and control-socket errors of evictions and migrations: bodies, names, targets, ids.

No sessions are needed here (the moves with sessions are in tests/integration); the
backends point at a closed port and are never connected to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from amqpprox.core import moves
from amqpprox.core import operations as ops
from amqpprox.core.health import PASSIVE_FALL
from amqpprox.errors import InvalidState
from amqpprox.runtime import Runtime
from tests.admin.conftest import API
from tests.conftest import ctl, free_closed_port, make_settings
from tests.polling import until

Client = TestClient[Any, Any]


@pytest.fixture
async def configured(runtime: Runtime) -> Runtime:
    port = free_closed_port()
    for name in ("b1", "b2"):
        await ops.add_backend(runtime.ctx, name, "dc", "127.0.0.1", port)
    ops.set_farm(runtime.ctx, "f1", ["b1"])
    ops.set_farm(runtime.ctx, "f2", ["b2"])
    ops.map_vhost_to_farm(runtime.ctx, "/", "f1")
    return runtime


def unchanged(runtime: Runtime) -> bool:
    state = runtime.ctx.state
    return (
        state.mappings["/"].target == "f1"
        and not state.is_vhost_paused("/")
        and runtime.ctx.moves.migrations == {}
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"farm": "f2", "backend": "b2"},
        {"farm": 5},
        {"farm": ""},
        {"farm": "f2", "per_second": 0},
        {"farm": "f2", "per_second": -1},
        {"farm": "f2", "per_second": "10"},
        {"farm": "f2", "per_second": 1.5},
        {"farm": "f2", "per_second": True},
        {"farm": "f2", "per_second": 10_001},
        {"farm": "f2", "bogus": 1},
        {"farm": "a b"},
        {"farm": "f\u0000"},
        {"backend": "b\u001b[31m"},
        [],
    ],
)
async def test_a_bad_migrate_body_is_a_400(
    client: Client, configured: Runtime, body: object
) -> None:
    response = await client.post(API + "/vhosts/%2F/migrate", json=body)
    assert response.status == 400, await response.text()
    assert (await response.json())["error"] == "invalid_argument"
    assert unchanged(configured)


async def test_migrate_body_must_be_json(client: Client, configured: Runtime) -> None:
    response = await client.post(
        API + "/vhosts/%2F/migrate", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert (response.status, (await response.json())["error"]) == (400, "invalid_json")
    response = await client.post(
        API + "/vhosts/%2F/migrate",
        data=b'{"farm": "\\ud800"}',
        headers={"Content-Type": "application/json"},
    )
    assert (response.status, (await response.json())["error"]) == (400, "invalid_argument")
    response = await client.post(
        API + "/vhosts/%2F/migrate", headers={"Content-Type": "application/json"}
    )
    assert (response.status, (await response.json())["error"]) == (400, "invalid_body")
    assert unchanged(configured)


async def test_unknown_and_hostile_vhosts(client: Client, configured: Runtime) -> None:
    response = await client.post(API + "/vhosts/nope/migrate", json={"farm": "f2"})
    assert response.status == 404
    assert (await response.json())["message"] == (
        "vhost 'nope' is not known (neither configured nor opened)"
    )
    response = await client.post(API + "/vhosts/a%0Ab/migrate", json={"farm": "f2"})
    assert (response.status, (await response.json())["error"]) == (400, "invalid_argument")
    # Not UTF-8: aiohttp decodes the path leniently, to a vhost nobody has.
    response = await client.post(API + "/vhosts/%ED%A0%80/migrate", json={"farm": "f2"})
    assert (response.status, (await response.json())["error"]) == (404, "not_found")
    assert unchanged(configured)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"farm": "nope"}, "Cannot migrate vhost '/': farm 'nope' does not exist"),
        ({"backend": "nope"}, "Cannot migrate vhost '/': backend 'nope' does not exist"),
    ],
)
async def test_a_missing_target_is_refused_at_once(
    client: Client, configured: Runtime, body: dict[str, str], message: str
) -> None:
    response = await client.post(API + "/vhosts/%2F/migrate", json=body)
    assert response.status == 409
    assert await response.json() == {"error": "invalid_state", "message": message}
    assert unchanged(configured)


async def test_a_target_without_a_ready_member_is_refused(
    client: Client, configured: Runtime
) -> None:
    socket = configured.settings.control_socket
    assert await ctl(socket, "BACKEND STATE b2 drain") == ""
    response = await client.post(API + "/vhosts/%2F/migrate", json={"farm": "f2"})
    assert response.status == 409
    assert (await response.json())["message"] == (
        "Cannot migrate vhost '/': farm 'f2' has no ready member that is up"
    )
    assert await ctl(socket, "VHOST MIGRATE / BACKEND b2") == (
        "Cannot migrate vhost '/': backend 'b2' is not ready and up\n"
    )
    assert await ctl(socket, "BACKEND STATE b2 maint") == ""
    assert await ctl(socket, "VHOST MIGRATE / FARM f2 5") == (
        "Cannot migrate vhost '/': farm 'f2' has no ready member that is up\n"
    )
    assert unchanged(configured)
    assert await ctl(socket, "BACKEND STATE b2 ready") == ""
    response = await client.post(API + "/vhosts/%2F/migrate", json={"farm": "f2"})
    assert response.status == 202


async def test_a_migration_lifecycle_and_its_ids(client: Client, configured: Runtime) -> None:
    response = await client.post(
        API + "/vhosts/%2F/migrate", json={"backend": "b2", "per_second": 7}
    )
    assert response.status == 202
    started = await response.json()
    assert started["id"] == 1 and started["per_second"] == 7 and started["sessions_total"] == 0
    assert started["to"] == {"kind": "backend", "name": "b2"}
    migration = moves.get_migration(configured.ctx, 1)
    await until(lambda: not migration.running, "the migration to end")
    listing = await (await client.get(API + "/migrations")).json()
    assert [(m["id"], m["state"]) for m in listing] == [(1, "done")]
    assert (await client.get(API + "/migrations/1")).status == 200
    for missing in ("2", "abc", "-1", "1" * 30):
        response = await client.get(API + f"/migrations/{missing}")
        assert response.status == 404, missing
        response = await client.post(API + f"/migrations/{missing}/cancel", json={})
        assert response.status == 404, missing
    response = await client.post(API + "/migrations/1/cancel", json={"x": 1})
    assert response.status == 400
    response = await client.post(API + "/migrations/1/cancel", json={})
    assert response.status == 409
    assert configured.ctx.state.mappings["/"].target == "b2"
    assert not configured.ctx.state.is_vhost_paused("/")


async def test_one_migration_of_a_vhost_at_a_time(configured: Runtime) -> None:
    ctx = configured.ctx
    first = moves.migrate_vhost(ctx, "/", "farm", "f2")
    with pytest.raises(InvalidState, match="migration 1 of it is still running"):
        moves.migrate_vhost(ctx, "/", "backend", "b2")
    await until(lambda: not first.running, "the migration to end")


async def test_a_vhost_paused_before_stays_paused(configured: Runtime) -> None:
    ctx = configured.ctx
    ops.pause_vhost(ctx, "/")
    migration = moves.migrate_vhost(ctx, "/", "farm", "f2")
    await until(lambda: not migration.running, "the migration to end")
    assert ctx.state.is_vhost_paused("/")


@pytest.mark.parametrize(
    "body", [{"per_second": 0}, {"per_second": "x"}, {"per_second": -2}, {"bogus": 1}]
)
async def test_a_bad_evict_body_is_a_400(client: Client, configured: Runtime, body: object) -> None:
    response = await client.post(API + "/backends/b1/evict", json=body)
    assert (response.status, (await response.json())["error"]) == (400, "invalid_argument")
    assert configured.ctx.moves.evictions == {}


async def test_evictions_and_their_errors(client: Client, configured: Runtime) -> None:
    response = await client.post(API + "/backends/nope/evict", json={})
    assert response.status == 404
    assert (await response.json())["message"] == "backend 'nope' not found"
    response = await client.post(
        API + "/backends/b1/evict", headers={"Content-Type": "application/json"}
    )
    assert response.status == 202  # no body: the default pace
    body = await response.json()
    assert (body["id"], body["backend"], body["per_second"], body["reason"]) == (
        1,
        "b1",
        10,
        "evict",
    )
    eviction = moves.get_eviction(configured.ctx, 1)
    await until(lambda: not eviction.running, "the eviction to end")
    listing = await (await client.get(API + "/evictions")).json()
    assert [(e["id"], e["state"], e["sessions_total"]) for e in listing] == [(1, "done", 0)]
    assert (await client.get(API + "/evictions/1")).status == 200
    assert (await client.get(API + "/evictions/2")).status == 404
    assert (await client.post(API + "/evictions/2/cancel", json={})).status == 404
    response = await client.post(API + "/evictions/1/cancel", json={})
    assert response.status == 409
    assert (await response.json())["message"] == "eviction 1 is done already"


MIGRATE_USAGE = "Usage: VHOST MIGRATE vhost (FARM farm | BACKEND backend) [per_second]\n"
NOT_KNOWN = "vhost 'nope' is not known (neither configured nor opened)\n"
BAD_VHOST = "vhost name must be 1..255 characters without control characters: '\\x1b[31m'\n"
BAD_FARM = "farm name must be 1..255 printable characters without spaces: 'f\\x07'\n"
NO_FARM = "Cannot migrate vhost '/': farm 'nope' does not exist\n"
NO_BACKEND = "Cannot migrate vhost '/': backend 'nope' does not exist\n"


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("BACKEND EVICT", "Usage: BACKEND EVICT name [per_second]\n"),
        ("BACKEND EVICT b1 10 more", "Usage: BACKEND EVICT name [per_second]\n"),
        ("BACKEND EVICT nope", "backend 'nope' not found\n"),
        ("BACKEND EVICT b1 0", "per_second must be from 1 to 10000: 0\n"),
        ("BACKEND EVICT b1 10001", "per_second must be from 1 to 10000: 10001\n"),
        ("BACKEND EVICT b1 -3", "per_second must be a whole number: '-3'\n"),
        ("BACKEND EVICT b1 ten", "per_second must be a whole number: 'ten'\n"),
        ("BACKEND EVICTIONS CANCEL", "Usage: BACKEND EVICTIONS [CANCEL id]\n"),
        ("BACKEND EVICTIONS CANCEL x", "Usage: BACKEND EVICTIONS [CANCEL id]\n"),
        ("BACKEND EVICTIONS CANCEL 9", "eviction 9 not found\n"),
        ("BACKEND EVICTIONS", ""),
        ("VHOST MIGRATE", MIGRATE_USAGE),
        ("VHOST MIGRATE / POOL f2", MIGRATE_USAGE),
        ("VHOST MIGRATE / FARM", MIGRATE_USAGE),
        ("VHOST MIGRATE / FARM nope", NO_FARM),
        ("VHOST MIGRATE / BACKEND nope", NO_BACKEND),
        ("VHOST MIGRATE / FARM f2 0", "per_second must be from 1 to 10000: 0\n"),
        ("VHOST MIGRATE / FARM f2 x", "per_second must be a whole number: 'x'\n"),
        ("VHOST MIGRATE nope FARM f2", NOT_KNOWN),
        ("VHOST MIGRATE \x1b[31m FARM f2", BAD_VHOST),
        ("VHOST MIGRATE / FARM f\x07", BAD_FARM),
        ("VHOST MIGRATIONS", ""),
        ("VHOST MIGRATIONS CANCEL 9", "migration 9 not found\n"),
        ("VHOST MIGRATIONS STOP 1", "Usage: VHOST MIGRATIONS [CANCEL id]\n"),
    ],
)  # fmt: skip
async def test_control_errors(configured: Runtime, line: str, reply: str) -> None:
    assert await ctl(configured.settings.control_socket, line) == reply
    assert unchanged(configured)
    assert configured.ctx.moves.evictions == {}


async def test_the_migration_hold_is_never_saved_but_the_new_mapping_is(
    tmp_socket_dir: str, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    runtime = Runtime(make_settings(tmp_socket_dir, state_file=str(path)))
    await runtime.start()
    try:
        ctx = runtime.ctx
        await ops.add_backend(ctx, "b1", "dc", "127.0.0.1", free_closed_port())
        ops.set_farm(ctx, "f1", ["b1"])
        ops.set_farm(ctx, "f2", ["b1"])
        ops.map_vhost_to_farm(ctx, "/", "f1")
        migration = moves.migrate_vhost(ctx, "/", "farm", "f2")
        assert ctx.state.is_vhost_paused("/")  # held while it runs...
        saved = json.loads(path.read_text())
        assert saved["paused_vhosts"] == []  # ... but a restart would hold nothing
        assert {"vhost": "/", "farm": "f2"} in saved["mappings"]
        await until(lambda: not migration.running, "the migration to end")
        assert not ctx.state.is_vhost_paused("/")
    finally:
        await runtime.stop()


async def test_a_target_that_is_down_is_refused(client: Client, configured: Runtime) -> None:
    health = configured.ctx.health
    for _ in range(PASSIVE_FALL):  # as the data plane books failed session attempts
        health.record_attempt("b2", False, "connection refused")
    assert health.status("b2") == "down"
    response = await client.post(API + "/vhosts/%2F/migrate", json={"backend": "b2"})
    assert response.status == 409
    assert (await response.json())["message"] == (
        "Cannot migrate vhost '/': backend 'b2' is not ready and up"
    )
    assert await ctl(configured.settings.control_socket, "VHOST MIGRATE / FARM f2") == (
        "Cannot migrate vhost '/': farm 'f2' has no ready member that is up\n"
    )
    assert unchanged(configured)
    health.record_attempt("b2", True)  # a session reached it: up again
    response = await client.post(API + "/vhosts/%2F/migrate", json={"backend": "b2"})
    assert response.status == 202


async def test_hostile_names_are_text_on_the_dashboard_panels(
    client: Client, configured: Runtime
) -> None:
    ctx = configured.ctx
    vhost = "<img src=x onerror=alert(1)>"
    ops.map_vhost_to_farm(ctx, vhost, "f1")
    migration = moves.migrate_vhost(ctx, vhost, "farm", "f2")
    await until(lambda: not migration.running, "the migration to end")
    html = await (await client.get("/vhosts")).text()
    assert 'data-migration="1"' in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img src=x" not in html
    live = await (await client.get("/vhosts", headers={"X-Dashboard-Live": "1"})).json()
    assert "&lt;img src=x" in live["regions"]["migrations"]
    assert "<img src=x" not in live["regions"]["migrations"]
