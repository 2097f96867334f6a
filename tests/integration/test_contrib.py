"""contrib/: the Prometheus alerting rules (promtool) and the Grafana dashboard, whose every
panel query a real Prometheus server answers with data while scraping a proxy that real
pika clients publish and consume through."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pika
import pytest

from tests.conftest import RunningProxy, ctl, free_closed_port, pika_params, running_proxy

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
RULES = CONTRIB / "prometheus" / "amqpprox-rules.yml"
RULES_TESTS = CONTRIB / "prometheus" / "amqpprox-rules.test.yml"
DASHBOARD = CONTRIB / "grafana" / "amqpprox.json"
DEADLINE = 40.0
T = TypeVar("T")


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} missing: apt-get install prometheus (as .ci/run does)"
    return path


def test_rules_pass_promtool_check() -> None:
    done = subprocess.run(
        [_tool("promtool"), "check", "rules", str(RULES)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def test_rules_unit_tests_pass() -> None:
    """Every alert fires on its input series and stays quiet on the healthy ones."""
    done = subprocess.run(
        [_tool("promtool"), "test", "rules", RULES_TESTS.name],
        cwd=RULES_TESTS.parent,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = set(re.findall(r"^\s+- alert: (\w+)$", RULES.read_text(), re.MULTILINE))
    tested = set(re.findall(r"alertname: (\w+)", RULES_TESTS.read_text()))
    assert alerts == tested


def _dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def test_dashboard_is_importable() -> None:
    """Grafana's import form: a ${DS_PROMETHEUS} input that every panel and variable uses."""
    doc = _dashboard()
    assert doc["schemaVersion"] == 38
    assert [i["name"] for i in doc["__inputs"]] == ["DS_PROMETHEUS"]
    variables = doc["templating"]["list"]
    assert variables[0] == variables[0] | {"name": "DS_PROMETHEUS", "type": "datasource"}
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
    for owner in [*panels, *variables[1:]]:
        assert owner["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    for panel in panels:
        assert panel["targets"], panel["title"]


def _panel_queries() -> list[tuple[str, str]]:
    """(panel title, expr) with Grafana's variables replaced by what "All" selects."""
    queries = []
    for panel in _dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "30s")
            expr = re.sub(r"\$\{?\w+\}?", ".*", expr)
            queries.append((panel["title"], expr))
    return queries


def _pika_traffic(port: int) -> int:
    """Publish and consume 200 messages through the proxy with a blocking pika client."""
    conn = pika.BlockingConnection(pika_params(port))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        queue = ch.queue_declare("", exclusive=True).method.queue
        for i in range(200):
            ch.basic_publish("", queue, b"x" * (100 + i), mandatory=True)
        got = 0
        for method, _props, _body in ch.consume(queue, inactivity_timeout=5):
            if method is None:
                break
            ch.basic_ack(method.delivery_tag)
            got += 1
            if got == 200:
                break
        ch.cancel()
        return got
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def _prometheus(tmp: Path, proxy: RunningProxy) -> AsyncIterator[str]:
    """A Prometheus server on loopback scraping the proxy every second, with our rules."""
    port = free_closed_port()
    admin = proxy.admin_url.removeprefix("http://")
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {json.dumps(str(RULES))}\n"
        "scrape_configs:\n  - job_name: amqpprox\n"
        f"    static_configs:\n      - targets: [{json.dumps(admin)}]\n"
    )
    log = tmp / "prometheus.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            _tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    except BaseException:
        print(log.read_text()[-4000:])
        raise
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _query(http: aiohttp.ClientSession, base: str, expr: str) -> dict[str, Any]:
    async with http.get(base + "/api/v1/query", params={"query": expr}) as response:
        body: dict[str, Any] = await response.json()
        return body


def _now(http: aiohttp.ClientSession, base: str) -> Callable[[], Awaitable[str | None]]:
    async def now() -> str | None:
        body = await _query(http, base, "time()")
        return str(body["data"]["result"][1]) if body["status"] == "success" else None

    return now


async def _poll(what: str, probe: Callable[[], Awaitable[T | None]]) -> T:
    """Await ``probe()`` until it returns something truthy (connection errors while
    Prometheus starts count as not yet); fail after DEADLINE seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            if value := await probe():
                return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.broker
async def test_every_panel_query_returns_data_from_a_real_prometheus(
    tmp_socket_dir: str, tmp_path: Path
) -> None:
    async with running_proxy(tmp_socket_dir) as proxy:
        # A limit of its own gives "/" its refusal series before any refusal.
        await ctl(proxy.control_socket, "LIMIT CONNECTIONS VHOST / 1000")
        async with (
            _prometheus(tmp_path, proxy) as base,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        ):
            assert await asyncio.to_thread(_pika_traffic, proxy.port) == 200

            # Prometheus's clock once the traffic is over: wait for two scrapes after it
            # and three in all, so every rate over 30s has its points.
            ended = float(await _poll("Prometheus to answer", _now(http, base)))
            scraped = (
                f'count_over_time(up{{job="amqpprox"}}[30s]) >= 3 and up == 1'
                f' and timestamp(up{{job="amqpprox"}}) > {ended + 2}'
            )

            async def scrapes_after_traffic() -> bool:
                body = await _query(http, base, scraped)
                return body["status"] == "success" and bool(body["data"]["result"])

            await _poll("three scrapes of the proxy", scrapes_after_traffic)
            empty = []
            for title, expr in _panel_queries():
                body = await _query(http, base, expr)
                assert body["status"] == "success", (title, expr, body)
                if not body["data"]["result"]:
                    empty.append((title, expr))
            assert not empty, empty
            # Traffic in and out is what the pika client sent and received.
            body = await _query(http, base, "sum by (direction) (amqpprox_bytes_total)")
            moved = {r["metric"]["direction"]: float(r["value"][1]) for r in body["data"]["result"]}
            assert moved["client_to_broker"] > 200 * 100 and moved["broker_to_client"] > 200 * 100

            async def rules_evaluated() -> list[dict[str, Any]] | None:
                async with http.get(base + "/api/v1/rules") as response:
                    groups = (await response.json())["data"]["groups"]
                rules = [rule for group in groups for rule in group["rules"]]
                return rules if rules and all(r["health"] == "ok" for r in rules) else None

            # The rules load and evaluate against the real series; a healthy proxy raises none.
            rules = await _poll("the rules to evaluate", rules_evaluated)
            assert len(rules) == 8
            assert [r["name"] for r in rules if r["alerts"]] == []
