"""What clients can and cannot add to the proxy's state, and the metrics an operator
alerts on, against the real broker (scraping /metrics as Prometheus does).

Clients naming vhosts that nobody configured (with a wrong password: the broker says
no) must add no per-vhost series, no VHOST PRINT lines and no vhost rows; a vhost that
is configured or was opened still has its own label.
"""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families

from amqpprox.amqp.methods import ConnectionClose, ConnectionOpenOk
from amqpprox.core.sessions import SessionState
from tests.conftest import (
    RunningProxy,
    ctl,
    free_closed_port,
    promtool_check_metrics,
    running_proxy,
)
from tests.integration.test_statistics import BACKEND, scrape, value
from tests.polling import until
from tests.rawamqp import RawClient

pytestmark = pytest.mark.broker

STRANGERS = 300
BATCH = 50
# A scrape's growth for all of them together: a handful of series under vhost "".
BODY_GROWTH_LIMIT = 4000


async def get_text(url: str, accept: str | None = None) -> str:
    headers = {"Accept": accept} if accept else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 200
        return await resp.text()


async def stranger(proxy: RunningProxy) -> None:
    """A client naming a vhost nobody configured, with a wrong password: refused."""
    client = await RawClient.connect(proxy.port)
    answer = await client.open(f"stranger-{uuid.uuid4().hex}", password="wrong")
    assert isinstance(answer, ConnectionClose) and answer.reply_code in (403, 530)
    client.abort()


def vhost_labels(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> set[str]:
    return {v for _name, labels in samples for k, v in labels if k == "vhost"}


async def test_clients_inventing_vhosts_add_no_per_vhost_state(proxy: RunningProxy) -> None:
    path = proxy.control_socket
    # Configured (a mapping to the default farm; the broker has no such vhost) and opened.
    assert await ctl(path, "MAP FARM configured-vh default") == ""
    configured = await RawClient.connect(proxy.port)
    assert isinstance(await configured.open("configured-vh"), ConnectionClose)
    opened = await RawClient.connect(proxy.port)
    assert isinstance(await opened.open("/"), ConnectionOpenOk)
    await until(lambda: "/" in proxy.ctx.state.paused_vhosts, "the opened vhost to be recorded")
    proxy.runtime.cleanup_once()
    before = await get_text(proxy.admin_url + "/metrics")

    for _ in range(STRANGERS // BATCH):
        await asyncio.gather(*(stranger(proxy) for _ in range(BATCH)))
    await until(
        lambda: sum(s.finished for s in proxy.ctx.sessions) >= STRANGERS,
        "every stranger's session to end",
    )
    during = await scrape(proxy.admin_url)  # finished, not yet removed
    proxy.runtime.cleanup_once()  # removed: folded into the retained totals
    after_text = await get_text(proxy.admin_url + "/metrics")
    after = await scrape(proxy.admin_url)

    assert vhost_labels(during) == vhost_labels(after) == {"", "/", "configured-vh"}
    assert len(after_text) - len(before) < BODY_GROWTH_LIMIT, (len(before), len(after_text))
    # All of them counted, under the bounded labels.
    refused = sum(
        v
        for (name, labels), v in after.items()
        if name == "amqpprox_sessions_closed_total" and ("vhost", "") in labels
    )
    assert refused == STRANGERS
    assert (
        value(
            after,
            "amqpprox_sessions_closed_total",
            vhost="configured-vh",
            backend=BACKEND,
            reason="broker_snapped",
        )
        == 1
    )
    assert value(after, "amqpprox_sessions_opened_total", vhost="/", backend=BACKEND) == 1
    # The control socket, REST and STAT: no line or row for them either.
    assert await ctl(path, "VHOST PRINT") == "/ = UNPAUSED\n"
    async with (
        aiohttp.ClientSession() as http,
        http.get(proxy.admin_url + "/api/v1/vhosts") as resp,
    ):
        assert [v["name"] for v in await resp.json()] == ["/"]
    last = proxy.ctx.stats.last
    assert last is not None and set(last.vhosts) <= {"", "/", "configured-vh"}
    opened.abort()
    configured.abort()


async def test_a_mapping_to_a_missing_farm_is_named(bare_proxy: RunningProxy) -> None:
    path = bare_proxy.control_socket
    assert await ctl(path, "MAP FARM orders orders-farm") == ""
    client = await RawClient.connect(bare_proxy.port)
    answer = await client.open("orders")
    assert isinstance(answer, ConnectionClose)
    assert (answer.reply_code, answer.reply_text) == (506, "No farm orders-farm for vhost orders")
    client.abort()
    await until(lambda: all(s.finished for s in bare_proxy.ctx.sessions), "the refusal")
    samples = await scrape(bare_proxy.admin_url)
    closed = "amqpprox_sessions_closed_total"
    assert value(samples, closed, vhost="orders", backend="", reason="broken_mapping") == 1
    # Nothing mapped at all stays "no mapping".
    other = await RawClient.connect(bare_proxy.port)
    answer = await other.open("unmapped")
    assert isinstance(answer, ConnectionClose)
    assert answer.reply_text == "No known broker mapping for vhost unmapped"
    other.abort()


async def test_connect_failures_have_zeros_and_reasons(bare_proxy: RunningProxy) -> None:
    path = bare_proxy.control_socket
    # A port that accepts and says nothing AMQP: closes at once.
    server = await asyncio.start_server(_hang_up, "127.0.0.1", 0)
    mute = server.sockets[0].getsockname()[1]
    dead = free_closed_port()
    try:
        assert await ctl(path, f"BACKEND ADD dead dc 127.0.0.1 {dead}") == ""
        assert await ctl(path, f"BACKEND ADD mute dc 127.0.0.1 {mute}") == ""
        assert await ctl(path, "BACKEND ADD_DNS nx dc amqpprox-no-such-host.invalid 5672") == ""
        assert await ctl(path, "FARM ADD failing round-robin dead mute nx") == ""
        assert await ctl(path, "MAP FARM failing-vh failing") == ""
        failures = "amqpprox_backend_connect_failures_total"
        samples = await scrape(bare_proxy.admin_url)
        for backend in ("dead", "mute", "nx"):
            for reason in ("refused", "timeout", "tls", "dns", "no_amqp"):
                assert value(samples, failures, backend=backend, reason=reason) == 0
        client = await RawClient.connect(bare_proxy.port)
        answer = await client.open("failing-vh")
        assert isinstance(answer, ConnectionClose) and answer.reply_code == 506
        client.abort()
        samples = await scrape(bare_proxy.admin_url)
        assert value(samples, failures, backend="dead", reason="refused") == 1
        assert value(samples, failures, backend="mute", reason="no_amqp") == 1
        assert value(samples, failures, backend="nx", reason="dns") == 1
        assert value(samples, failures, backend="dead", reason="dns") == 0
    finally:
        server.close()


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def test_listener_up_for_a_listener_no_scrape_saw(bare_proxy: RunningProxy) -> None:
    path = bare_proxy.control_socket
    port = free_closed_port()
    assert await ctl(path, f"LISTEN START {port}") == ""
    assert await ctl(path, f"LISTEN STOP {port}") == ""
    samples = await scrape(bare_proxy.admin_url)
    assert value(samples, "amqpprox_listener_up", port=str(port), tls="false") == 0
    assert value(samples, "amqpprox_listener_up", port=str(bare_proxy.port), tls="false") == 1


async def test_handshake_histogram_leaves_out_the_vhost_pause_hold(
    tmp_socket_dir: str,
) -> None:
    hold = 0.5
    async with running_proxy(tmp_socket_dir) as proxy:
        path = proxy.control_socket
        assert await ctl(path, "VHOST PAUSE /") == ""
        client = await RawClient.connect(proxy.port)
        opening = asyncio.create_task(client.open("/"))
        await until(
            lambda: any(s.state is SessionState.HELD for s in proxy.ctx.sessions),
            "the session to be held at Open",
        )
        await asyncio.sleep(hold)  # not synchronisation: the hold must last a known time
        assert await ctl(path, "VHOST UNPAUSE /") == ""
        assert isinstance(await asyncio.wait_for(opening, 10), ConnectionOpenOk)
        samples = await scrape(proxy.admin_url)
        name = "amqpprox_handshake_duration_seconds"
        assert value(samples, name + "_count") == 1
        assert value(samples, name + "_sum") < hold
        client.abort()


async def test_limit_refusals_name_the_limit(tmp_socket_dir: str) -> None:
    async with running_proxy(tmp_socket_dir, limit_close_delay=0.01) as proxy:
        path = proxy.control_socket
        assert await ctl(path, "LIMIT CONNECTIONS VHOST / 1") != ""
        refusals = "amqpprox_limit_refusals_total"
        samples = await scrape(proxy.admin_url)
        assert value(samples, refusals, vhost="/", limit="connections") == 0
        first = await RawClient.connect(proxy.port)
        assert isinstance(await first.open("/"), ConnectionOpenOk)
        second = await RawClient.connect(proxy.port)
        refused = await second.open("/")
        assert isinstance(refused, ConnectionClose) and refused.reply_code == 530
        samples = await scrape(proxy.admin_url)
        assert value(samples, refusals, vhost="/", limit="connections") == 1
        first.abort()
        second.abort()


async def test_both_formats_parse_and_pass_promtool(proxy: RunningProxy) -> None:
    client = await RawClient.connect(proxy.port)
    assert isinstance(await client.open("/"), ConnectionOpenOk)
    text = await get_text(proxy.admin_url + "/metrics")
    openmetrics = await get_text(
        proxy.admin_url + "/metrics", "application/openmetrics-text; version=1.0.0"
    )
    assert openmetrics.endswith("# EOF\n") and openmetrics.count("# EOF") == 1
    names = {family.name for family in om_families(openmetrics)}  # the strict parser
    assert {"amqpprox_sessions_opened", "amqpprox_auth_requests", "process_cpu_seconds"} <= names
    # The backend label is the configured name everywhere (STAT keeps the original's host_port).
    samples = await scrape(proxy.admin_url)
    backends = {v for _name, labels in samples for k, v in labels if k == "backend"}
    assert backends == {BACKEND}
    await promtool_check_metrics(text)
    client.abort()
