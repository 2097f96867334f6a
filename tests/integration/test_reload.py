"""Reloading --definitions while running: SIGHUP, --watchDefinitions, the reload metrics.

The in-process Runtime installs its SIGHUP handler on the test's loop, so a test signals
its own process; one test runs ``python -m amqpprox`` to see the same from outside.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families

from amqpprox import cli
from amqpprox.filewatch import InotifyUnavailable
from amqpprox.runtime import Runtime
from tests.conftest import ctl, promtool_check_metrics, started_runtime
from tests.integration.test_metrics_state import get_text
from tests.polling import until

DOC: dict[str, Any] = {
    "datacenter": "dc1",
    "backends": [{"name": "b1", "datacenter": "dc1", "host": "127.0.0.1", "port": 5672}],
    "farms": [{"name": "f1", "backends": ["b1"]}],
    "mappings": [{"vhost": "/", "farm": "f1"}],
    "default_farm": "f1",
}
B3 = {"name": "b3", "datacenter": "dc1", "host": "127.0.0.1", "port": 5673}
GROWN = {**DOC, "backends": [*DOC["backends"], B3]}
# Valid JSON and a valid new backend, but a farm naming a backend nobody defines.
PARTLY_INVALID = {**GROWN, "farms": [{"name": "f1", "backends": ["b1", "ghost"]}]}


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def reload_log() -> Iterator[Records]:
    logger = logging.getLogger("amqpprox.reload")
    records = Records()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(records)
    try:
        yield records
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)


def write_atomically(path: Path, document: object) -> None:
    """As a deployment tool does: a new file renamed over the old one."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(json.dumps(document))
    os.replace(fresh, path)


async def backends(runtime: Runtime) -> str:
    return await ctl(runtime.settings.control_socket, "BACKEND PRINT")


async def metrics(runtime: Runtime) -> dict[str, float]:
    """The reload families of /metrics, by sample name and labels."""
    url = f"http://127.0.0.1:{runtime.admin_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    found = re.findall(r"^(amqpprox_config_\S+) (\S+)$", text, re.MULTILINE)
    return {name: float(value) for name, value in found}


OK = 'amqpprox_config_reloads_total{result="ok"}'
FAILED = 'amqpprox_config_reloads_total{result="failed"}'
LAST = "amqpprox_config_last_reload_success_timestamp_seconds"


async def test_sighup_applies_a_changed_file_and_logs_the_diff(
    tmp_socket_dir: str, tmp_path: Path, reload_log: Records
) -> None:
    path = tmp_path / "defs.json"
    path.write_text(json.dumps(DOC))
    async with started_runtime(tmp_socket_dir, definitions_file=str(path)) as runtime:
        before = await metrics(runtime)
        assert before[OK] == 0 and before[FAILED] == 0 and before[LAST] > 0
        assert "b3" not in await backends(runtime)
        write_atomically(path, GROWN)
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: runtime.ctx.stats.config_reloads["ok"] == 1, "the reload")
        assert "b3 (dc1): 127.0.0.1" in await backends(runtime)
        assert "SIGHUP: reloaded definitions file" in reload_log.text()
        assert "backends added [b3]" in reload_log.text()
        after = await metrics(runtime)
        assert after[OK] == 1 and after[FAILED] == 0 and after[LAST] >= before[LAST]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({**DOC, "backends": "nope"}), "backends"),
        (json.dumps(PARTLY_INVALID), "ghost"),
    ],
    ids=["not-json", "schema", "partly-invalid"],
)
async def test_sighup_with_an_invalid_file_changes_nothing(
    tmp_socket_dir: str, tmp_path: Path, reload_log: Records, content: str, reason: str
) -> None:
    path = tmp_path / "defs.json"
    path.write_text(json.dumps(DOC))
    async with started_runtime(tmp_socket_dir, definitions_file=str(path)) as runtime:
        listing = await backends(runtime)
        version = runtime.ctx.state.version
        started_at = (await metrics(runtime))[LAST]
        path.write_text(content)
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: runtime.ctx.stats.config_reloads["failed"] == 1, "the refusal")
        assert await backends(runtime) == listing
        assert runtime.ctx.state.version == version
        assert "b3" not in runtime.ctx.state.backends
        line = reload_log.lines[-1]
        assert line.startswith("SIGHUP: reload failed, nothing changed: definitions file")
        assert reason in line
        figures = await metrics(runtime)
        assert figures[OK] == 0 and figures[FAILED] == 1 and figures[LAST] == started_at


async def test_reload_families_pass_promtool_and_the_openmetrics_parser(
    tmp_socket_dir: str, tmp_path: Path
) -> None:
    path = tmp_path / "defs.json"
    path.write_text(json.dumps(DOC))
    async with started_runtime(tmp_socket_dir, definitions_file=str(path)) as runtime:
        url = f"http://127.0.0.1:{runtime.admin_port}/metrics"
        text = await get_text(url)
        assert f"\n{LAST} " in text
        openmetrics = await get_text(url, "application/openmetrics-text; version=1.0.0")
        families = {family.name: family for family in om_families(openmetrics)}
        assert families["amqpprox_config_reloads"].type == "counter"
        assert families[LAST].type == "gauge"
        await promtool_check_metrics(text)


async def test_sighup_without_definitions_is_logged_and_not_counted(
    tmp_socket_dir: str, reload_log: Records
) -> None:
    async with started_runtime(tmp_socket_dir) as runtime:
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: reload_log.lines, "the log line")
        assert reload_log.lines == ["SIGHUP: no --definitions file to reload; nothing changed"]
        figures = await metrics(runtime)
        assert figures == {OK: 0, FAILED: 0}  # and no timestamp: nothing was ever applied


async def test_watch_applies_a_file_renamed_over_once_per_burst(
    tmp_socket_dir: str, tmp_path: Path, reload_log: Records
) -> None:
    path = tmp_path / "defs.json"
    path.write_text(json.dumps(DOC))
    async with started_runtime(
        tmp_socket_dir, definitions_file=str(path), watch_definitions=True
    ) as runtime:
        # A burst, all before the loop reads inotify: one reload, of the last content.
        for port in range(5680, 5690):
            write_atomically(path, {**GROWN, "backends": [*DOC["backends"], {**B3, "port": port}]})
        await until(lambda: "b3" in runtime.ctx.state.backends, "the change applied")
        assert runtime.ctx.state.backends["b3"].port == 5689
        assert runtime.ctx.stats.config_reloads == {"ok": 1}
        assert "definitions file changed: reloaded" in reload_log.text()
        # Same content again: the hash matches, nothing is reloaded.
        write_atomically(path, {**GROWN, "backends": [*DOC["backends"], {**B3, "port": 5689}]})
        assert await runtime.reloader.reload("test", only_if_changed=True) is None
        path.write_text("{not json")  # written in place
        await until(lambda: runtime.ctx.stats.config_reloads["failed"] == 1, "the refusal")
        assert runtime.ctx.stats.config_reloads["ok"] == 1
        assert runtime.ctx.state.backends["b3"].port == 5689


async def test_watch_follows_a_configmap_symlink_swap(tmp_socket_dir: str, tmp_path: Path) -> None:
    """The kubelet's update: a new timestamped directory, ``..data`` renamed over to it;
    the file's path (``defs.json -> ..data/defs.json``) never changes."""
    mount = tmp_path / "config"
    mount.mkdir()
    first = mount / "..2026_01_01_00_00_00.1"
    first.mkdir()
    (first / "defs.json").write_text(json.dumps(DOC))
    (mount / "..data").symlink_to(first.name)
    (mount / "defs.json").symlink_to("..data/defs.json")
    path = mount / "defs.json"
    async with started_runtime(
        tmp_socket_dir, definitions_file=str(path), watch_definitions=True
    ) as runtime:
        second = mount / "..2026_01_01_00_01_00.2"
        second.mkdir()
        (second / "defs.json").write_text(json.dumps(GROWN))
        (mount / "..data_tmp").symlink_to(second.name)
        os.replace(mount / "..data_tmp", mount / "..data")
        await until(lambda: "b3" in runtime.ctx.state.backends, "the swap applied")
        assert runtime.ctx.stats.config_reloads == {"ok": 1}


def test_watch_needs_definitions_and_inotify(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.main(["--watchDefinitions"]) == 2

    def unavailable() -> None:
        raise InotifyUnavailable("inotify is not available: test")

    monkeypatch.setattr(cli, "check_available", unavailable)
    assert cli.main(["--watchDefinitions", "--definitions", "defs.json"]) == 2


async def test_sighup_reloads_a_running_process(tmp_socket_dir: str, tmp_path: Path) -> None:
    path = tmp_path / "defs.json"
    path.write_text(json.dumps(DOC))
    control = os.path.join(tmp_socket_dir, "proc-ctl")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "amqpprox", "--definitions", str(path), "-v", "3",
        "--controlSocket", control, "--adminPort", "0",
        "--logDirectory", os.path.join(tmp_socket_dir, "proc-logs"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await until(lambda: os.path.exists(control), "the control socket")
        write_atomically(path, GROWN)
        proc.send_signal(signal.SIGHUP)
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 10)
        while b"reloaded" not in line:
            line = await asyncio.wait_for(proc.stderr.readline(), 10)
        assert b"SIGHUP: reloaded definitions file" in line and b"backends added [b3]" in line
        assert "b3 (dc1)" in await ctl(control, "BACKEND PRINT")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
