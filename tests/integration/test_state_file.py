"""--stateFile: every acknowledged change is on disk, a restart restores it, a bad file stops
the start, and SIGKILL at any point leaves a file that loads the last acknowledged state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from amqpprox.runtime import Runtime, SimpleMode
from tests.conftest import (
    BROKER_HOST,
    BROKER_PORT,
    ctl,
    free_closed_port,
    started_runtime,
)

PY = sys.executable
JSON = {"Content-Type": "application/json"}


@contextlib.asynccontextmanager
async def started(folder: str, **overrides: object) -> AsyncIterator[Runtime]:
    values: dict[str, object] = {"state_file": os.path.join(folder, "state.json"), **overrides}
    async with started_runtime(folder, **values) as runtime:
        yield runtime


def write(path: str, text: str) -> None:
    Path(path).write_text(text)


def read(path: str) -> str:
    return Path(path).read_text()


def saved(folder: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(Path(folder, "state.json").read_text())
    return document


async def rest(
    http: aiohttp.ClientSession, runtime: Runtime, method: str, path: str, body: object = None
) -> Any:
    url = f"http://127.0.0.1:{runtime.admin_port}/api/v1{path}"
    kwargs: dict[str, Any] = {"headers": JSON} if body is None else {"json": body, "headers": JSON}
    async with http.request(method, url, **kwargs) as response:
        text = await response.text()
        assert response.status < 300, f"{method} {path}: {response.status} {text}"
        return json.loads(text) if text else None


async def test_each_front_end_change_is_saved_before_its_reply(tmp_socket_dir: str) -> None:
    async with started(tmp_socket_dir) as runtime, aiohttp.ClientSession() as http:
        path = runtime.settings.control_socket
        mode = stat.S_IMODE(os.stat(os.path.join(tmp_socket_dir, "state.json")).st_mode)
        assert mode == 0o600
        assert saved(tmp_socket_dir)["backends"] == []

        assert await ctl(path, "BACKEND ADD b1 dc1 127.0.0.1 5672") == ""
        assert [b["name"] for b in saved(tmp_socket_dir)["backends"]] == ["b1"]

        body = {"datacenter": "dc2", "host": "127.0.0.1", "port": 5673}
        await rest(http, runtime, "PUT", "/backends/b2", body)
        await rest(http, runtime, "PUT", "/farms/f", {"backends": ["b1", "b2"]})
        await rest(http, runtime, "PUT", "/mappings/v1", {"farm": "f"})
        document = saved(tmp_socket_dir)
        assert [b["name"] for b in document["backends"]] == ["b1", "b2"]
        assert document["mappings"] == [{"vhost": "v1", "farm": "f"}]

        assert await ctl(path, "VHOST PAUSE v1") == ""
        assert saved(tmp_socket_dir)["paused_vhosts"] == ["v1"]
        assert await ctl(path, "VHOST UNPAUSE v1") == ""
        assert saved(tmp_socket_dir)["paused_vhosts"] == []

        imported = {**document, "paused_vhosts": ["v2"], "datacenter": "dc9"}
        dry = await rest(http, runtime, "PUT", "/definitions?dry_run=true", imported)
        assert dry["changes"]["paused_vhosts"] == {"from": [], "to": ["v2"]}
        assert saved(tmp_socket_dir)["paused_vhosts"] == []
        await rest(http, runtime, "PUT", "/definitions", imported)
        assert saved(tmp_socket_dir) == await rest(http, runtime, "GET", "/definitions")
        assert saved(tmp_socket_dir)["paused_vhosts"] == ["v2"]
        mode = stat.S_IMODE(os.stat(os.path.join(tmp_socket_dir, "state.json")).st_mode)
        assert mode == 0o600
        # Only the state file in the folder: no temporary file is left behind.
        assert sorted(p for p in os.listdir(tmp_socket_dir) if "state" in p) == ["state.json"]


async def test_restart_restores_the_definitions_and_paused_vhosts(tmp_socket_dir: str) -> None:
    port = free_closed_port()
    async with started(tmp_socket_dir) as first, aiohttp.ClientSession() as http:
        path = first.settings.control_socket
        assert await ctl(path, "DATACENTER SET east") == ""
        assert await ctl(path, "BACKEND ADD b1 east 127.0.0.1 5672") == ""
        assert await ctl(path, "BACKEND ADD_DNS b2 west localhost 5672") == ""
        assert await ctl(path, "FARM ADD f round-robin b1 b2") == ""
        assert await ctl(path, "MAP FARM v1 f") == ""
        assert await ctl(path, "MAP DEFAULT f") == ""
        assert "Allow average 5" in await ctl(path, "LIMIT CONN_RATE VHOST v1 5")
        assert await ctl(path, f"LISTEN START {port}") == ""
        assert await ctl(path, "VHOST PAUSE v1") == ""
        before = await rest(http, first, "GET", "/definitions")
    assert before["listeners"][0]["port"] == port
    async with started(tmp_socket_dir) as second, aiohttp.ClientSession() as http:
        assert await rest(http, second, "GET", "/definitions") == before
        assert second.ctx.state.is_vhost_paused("v1")
        assert await ctl(second.settings.control_socket, "VHOST PRINT") == "v1 = PAUSED\n"


async def test_simple_mode_restarts_over_its_own_state_file(tmp_socket_dir: str) -> None:
    port = free_closed_port()
    simple = SimpleMode(port, BROKER_HOST, BROKER_PORT, listen_host="127.0.0.1")
    async with started(tmp_socket_dir) as first:
        assert await first.configure_simple(simple) == port
        backends_before = await ctl(first.settings.control_socket, "BACKEND PRINT")
    # The state file restored the simple configuration; applying it again must not fail.
    async with started(tmp_socket_dir) as second:
        assert await second.configure_simple(simple) == port
        path = second.settings.control_socket
        assert await ctl(path, "BACKEND PRINT") == backends_before
        assert await ctl(path, "LISTEN PRINT") == (
            f"port={port} address=127.0.0.1 tls=N proxyProtocol=N\n"
        )


async def test_an_existing_state_file_wins_over_definitions(tmp_socket_dir: str) -> None:
    seed = os.path.join(tmp_socket_dir, "seed.json")
    write(seed, json.dumps({"datacenter": "seeded", "paused_vhosts": ["p"]}))
    async with started(tmp_socket_dir, definitions_file=seed) as runtime:
        assert runtime.ctx.state.datacenter == "seeded"  # a missing state file is seeded
        assert saved(tmp_socket_dir)["paused_vhosts"] == ["p"]
        assert await ctl(runtime.settings.control_socket, "DATACENTER SET later") == ""
    async with started(tmp_socket_dir, definitions_file=seed) as runtime:
        assert runtime.ctx.state.datacenter == "later"


async def test_a_change_that_cannot_be_saved_is_not_acknowledged(tmp_socket_dir: str) -> None:
    folder = os.path.join(tmp_socket_dir, "state")
    os.mkdir(folder)
    state = os.path.join(folder, "state.json")
    async with (
        started(tmp_socket_dir, state_file=state) as runtime,
        aiohttp.ClientSession() as http,
    ):
        os.unlink(state)
        os.rmdir(folder)  # the next write cannot create its temporary file
        reply = await ctl(runtime.settings.control_socket, "BACKEND ADD b1 dc 127.0.0.1 5672")
        assert f"state file {state}" in reply and "not saved" in reply
        url = f"http://127.0.0.1:{runtime.admin_port}/api/v1/datacenter"
        async with http.put(url, json={"name": "dc2"}, headers=JSON) as response:
            assert response.status == 500
            assert (await response.json())["error"] == "state_file"
        os.mkdir(folder)
        assert await ctl(runtime.settings.control_socket, "VHOST PAUSE v") == ""
        assert saved(folder)["paused_vhosts"] == ["v"]  # the next change saves everything


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        json.dumps({"backends": [{"name": "b", "datacenter": "", "host": "h", "port": 0}]}),
        json.dumps({"farms": [{"name": "f", "backends": ["missing"]}]}),
    ],
)
def test_a_state_file_that_does_not_load_stops_the_start(content: str) -> None:
    with tempfile.TemporaryDirectory(prefix="apx") as folder:
        state = os.path.join(folder, "state.json")
        Path(state).write_text(content)
        control = os.path.join(folder, "ctl")
        admin = free_closed_port()
        args = ["--stateFile", state, "--controlSocket", control, "--adminPort", str(admin)]
        result = subprocess.run(
            [PY, "-m", "amqpprox", *args, "--logDirectory", os.path.join(folder, "logs")],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode != 0
        assert f"state file {state}" in result.stdout + result.stderr
        assert not os.path.exists(control)  # the control socket never listened
        assert Path(state).read_text() == content  # and the file is left as it was


# -- SIGKILL at random points -----------------------------------------------------------------
# A launcher imports amqpprox once and forks a proxy per start (a cold `python -m amqpprox`
# takes ~1 s to import): each child is a real process, killed with SIGKILL.
LAUNCHER = """
import json, os, signal, sys
from amqpprox import cli
for line in sys.stdin:
    command, argument = line.split(" ", 1)
    if command == "kill":
        pid = int(argument)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        print("dead", flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os._exit(cli.main(json.loads(argument)))
    print(pid, flush=True)
"""

KILL_POINTS = 200
BUDGET = 80.0


class Launcher:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [PY, "-c", LAUNCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def _call(self, line: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def start(self, args: list[str]) -> int:
        return int(self._call("start " + json.dumps(args)))

    def kill(self, pid: int) -> None:
        assert self._call(f"kill {pid}") == "dead"

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)
        self.process.stdout.close()


def view(document: dict[str, Any]) -> dict[str, Any]:
    """The parts the clients change: the port of backends ``rest`` and ``ctl``, and the pause."""
    ports = {b["name"]: b["port"] for b in document["backends"]}
    return {
        "rest": ports.get("rest"),
        "ctl": ports.get("ctl"),
        "paused": "pv" in document["paused_vhosts"],
    }


class Client:
    """One sequential client: what it last saw acknowledged and what it has in flight."""

    def __init__(self, key: str, acked: object) -> None:
        self.key = key
        self.acked = acked
        self.pending: object = None
        self.in_flight = False
        self.acks = 0


async def wait_ready(url: str, deadline: float) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url + "/api/v1/definitions") as response:
                    if response.status == 200:
                        document: dict[str, Any] = await response.json()
                        return document
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, "the proxy did not come back"
            await asyncio.sleep(0.002)  # polling a condition with a deadline


async def run_clients(
    url: str, control: str, clients: dict[str, Client], killing: list[bool]
) -> None:
    counter = iter(range(10_000, 60_000))

    async def act(client: Client, operation: Any) -> None:
        while True:
            client.pending, client.in_flight = operation(client), True
            try:
                await do(client)
            except (OSError, aiohttp.ClientError, asyncio.IncompleteReadError):
                return
            if killing[0]:
                return  # answered while the kill was under way: it stays in flight
            client.acked, client.in_flight = client.pending, False
            client.acks += 1

    async def do(client: Client) -> None:
        if client.key == "rest":
            body = {"datacenter": "dc", "host": "127.0.0.1", "port": client.pending}
            async with http.put(url + "/api/v1/backends/rest", json=body, headers=JSON) as r:
                assert r.status in (200, 201), await r.text()
        elif client.key == "ctl":
            line = (
                "BACKEND DELETE ctl"
                if client.pending is None
                else (f"BACKEND ADD ctl dc 127.0.0.1 {client.pending}")
            )
            reply = await ctl(control, line)
            assert reply == "" or killing[0], reply
        else:
            reply = await ctl(control, "VHOST PAUSE pv" if client.pending else "VHOST UNPAUSE pv")
            assert reply == "" or killing[0], reply

    def next_value(client: Client) -> object:
        if client.key == "rest":
            return next(counter)
        if client.key == "ctl":
            return next(counter) if client.acked is None else None
        return not client.acked

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(act(c, next_value) for c in clients.values()))


async def test_sigkill_at_random_points_leaves_the_last_acknowledged_state() -> None:
    rng = random.Random(os.environ.get("AMQPPROX_KILL_SEED", "statefile"))
    launcher = Launcher()
    started_at = time.monotonic()
    kills = acknowledged = 0
    try:
        with tempfile.TemporaryDirectory(prefix="apx") as folder:
            state = os.path.join(folder, "state.json")
            control = os.path.join(folder, "ctl")
            admin = free_closed_port()
            url = f"http://127.0.0.1:{admin}"
            args = [
                "--stateFile", state, "--controlSocket", control, "--adminPort", str(admin),
                "--logDirectory", os.path.join(folder, "logs"), "--cleanupIntervalMs", "3600000",
            ]  # fmt: skip
            pid = launcher.start(args)
            document = await wait_ready(url, time.monotonic() + 20)
            baseline = {k: v for k, v in document.items() if k not in ("backends", "paused_vhosts")}
            clients = {k: Client(k, v) for k, v in view(document).items()}
            while kills < KILL_POINTS:
                assert time.monotonic() - started_at < BUDGET, f"only {kills} kill points"
                killing = [False]
                task = asyncio.create_task(run_clients(url, control, clients, killing))
                await asyncio.sleep(rng.uniform(0.005, 0.05))  # the random kill point
                killing[0] = True
                launcher.kill(pid)
                await task
                kills += 1
                json.loads(read(state))  # the file always loads
                pid = launcher.start(args)
                document = await wait_ready(url, time.monotonic() + 20)
                restored = view(document)
                for key, client in clients.items():
                    allowed = [client.acked] + ([client.pending] if client.in_flight else [])
                    assert restored[key] in allowed, (kills, key, restored[key], allowed)
                    acknowledged += client.acks
                    client.acks = 0
                    client.acked, client.in_flight = restored[key], False
                others = {
                    k: v for k, v in document.items() if k not in ("backends", "paused_vhosts")
                }
                assert others == baseline
            launcher.kill(pid)
    finally:
        launcher.close()
    elapsed = time.monotonic() - started_at
    print(f"{kills} kill points, {acknowledged} acknowledged changes, {elapsed:.1f} s")
    assert acknowledged > kills  # the clients did change the configuration between kills
