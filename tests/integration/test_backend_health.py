"""Backend health checks, passive detection and backend states, against the real broker.

Each backend is a FaultyForwarder in front of RabbitMQ (``tests/faults.py``): passing,
refusing connections, or accepting them and staying silent, so no broker is stopped.
Clients are pika (what users run) and the scripted raw client (exact Close codes/texts).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from amqpprox.amqp.methods import ConnectionClose, ConnectionCloseOk, ConnectionOpenOk
from amqpprox.core.model import ListenerSpec
from amqpprox.proxy import connector
from tests.conftest import (
    BROKER_HOST,
    BROKER_PORT,
    RunningProxy,
    ctl,
    pika_round_trip,
    running_proxy,
)
from tests.faults import Fault, FaultyForwarder
from tests.integration.test_tls import _serving as tls_serving
from tests.integration.test_tls import _start as tls_start
from tests.integration.test_tls import _to_rabbit as tls_to_rabbit
from tests.polling import until
from tests.rawamqp import RawClient
from tests.tlscerts import Pki, make_pki

# Small intervals so that fall x interval and rise x interval stay well under a second.
INTERVAL_MS, TIMEOUT_MS, RISE, FALL = 60, 50, 2, 2
# Scheduling slack on a shared 2-core machine (checks are timers on a busy loop).
SLACK = 1.5


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with tempfile.TemporaryDirectory(prefix="apx-pki") as directory:
        yield make_pki(directory)


@pytest.fixture
async def bare(tmp_socket_dir: str) -> AsyncIterator[RunningProxy]:
    async with running_proxy(
        tmp_socket_dir, simple=False, health_passive_retry=3600.0, connect_timeout=1.0,
        broker_handshake_timeout=1.0,
    ) as running:  # fmt: skip
        yield running


@pytest.fixture
async def forwarders() -> AsyncIterator[list[FaultyForwarder]]:
    started = [await FaultyForwarder((BROKER_HOST, BROKER_PORT)).start() for _ in range(2)]
    yield started
    for forwarder in started:
        await forwarder.stop()


async def configure(proxy: RunningProxy, *lines: str) -> None:
    for line in lines:
        assert await ctl(proxy.control_socket, line) == "", line


async def farm_of_two(proxy: RunningProxy, fwds: list[FaultyForwarder]) -> None:
    await configure(
        proxy,
        f"BACKEND ADD b1 dc 127.0.0.1 {fwds[0].port}",
        f"BACKEND ADD b2 dc 127.0.0.1 {fwds[1].port}",
        "FARM ADD f round-robin b1 b2",
        "MAP DEFAULT f",
    )


def status(proxy: RunningProxy, name: str) -> str:
    return str(proxy.ctx.health.status(name))


async def test_checked_backend_goes_down_and_comes_back(
    bare: RunningProxy, forwarders: list[FaultyForwarder], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "amqpprox.health")
    fwd = forwarders[0]
    await configure(
        bare,
        f"BACKEND ADD b1 dc 127.0.0.1 {fwd.port}",
        f"HEALTH CHECK b1 {INTERVAL_MS} {TIMEOUT_MS} {RISE} {FALL}",
    )
    await until(lambda: status(bare, "b1") == "up", "the first check")
    line = await ctl(bare.control_socket, "BACKEND HEALTH")
    assert line.startswith("b1 state=ready health=up last_check=ok age=")
    assert f"check={INTERVAL_MS}/{TIMEOUT_MS}/{RISE}/{FALL}\n" in line

    for fault, error in ((Fault.REFUSE, "ConnectionRefusedError"), (Fault.STALL, "timed out")):
        await fwd.set_mode(fault)
        started = time.monotonic()
        await until(lambda: status(bare, "b1") == "down", f"down ({fault.value})")
        went_down = time.monotonic() - started
        assert went_down < (FALL * INTERVAL_MS + TIMEOUT_MS) / 1000 + SLACK, went_down
        line = await ctl(bare.control_socket, "BACKEND HEALTH b1")
        assert "health=down last_check=failed" in line and error in line, line
        await fwd.set_mode(Fault.PASS)
        started = time.monotonic()
        await until(lambda: status(bare, "b1") == "up", f"up again after {fault.value}")
        came_back = time.monotonic() - started
        assert came_back < RISE * INTERVAL_MS / 1000 + SLACK, came_back
    # Logged on change only: unknown->up, then down and up twice; never once per check.
    changes = [r.getMessage() for r in caplog.records if r.name == "amqpprox.health"]
    assert len([m for m in changes if " is down " in m]) == 2, changes
    assert len([m for m in changes if " is up " in m]) == 3, changes
    entry = bare.ctx.health.entry("b1")
    assert entry is not None and entry.checks_ok > 3 and entry.checks_failed >= 2 * FALL

    # Turning the checks off forgets the verdict; the task stops (no more checks).
    await configure(bare, "HEALTH DISABLE b1")
    assert status(bare, "b1") == "unknown"
    assert "b1" not in bare.runtime.health_checker._tasks


async def test_new_connections_avoid_a_down_member(
    bare: RunningProxy, forwarders: list[FaultyForwarder]
) -> None:
    await farm_of_two(bare, forwarders)
    await forwarders[0].set_mode(Fault.STALL)  # accepts, never answers: the slowest failure
    await configure(bare, f"HEALTH CHECK DEFAULT {INTERVAL_MS} {TIMEOUT_MS} {RISE} {FALL}")
    await until(lambda: status(bare, "b1") == "down" and status(bare, "b2") == "up", "verdicts")
    for index in range(4):  # round-robin would have started at b1 for half of these
        body = f"avoid {index}".encode()
        assert await asyncio.to_thread(pika_round_trip, bare.port, body) == body
    sessions = list(bare.ctx.sessions)
    assert len(sessions) == 4
    assert all(s.backend_name == "b2" and s.connect_failures == 0 for s in sessions)
    assert bare.runtime.plane.connect_failures["b1"] == 0


async def test_every_member_down_is_still_tried_and_logged(
    bare: RunningProxy, forwarders: list[FaultyForwarder], caplog: pytest.LogCaptureFixture
) -> None:
    await farm_of_two(bare, forwarders)
    for fwd in forwarders:
        await fwd.set_mode(Fault.REFUSE)
    # One failed check marks a backend down; the next check is an hour away.
    await configure(bare, "HEALTH CHECK DEFAULT 3600000 200 1 1")
    await until(lambda: status(bare, "b1") == status(bare, "b2") == "down", "both down")
    await forwarders[1].set_mode(Fault.PASS)  # b2 is back, but no check has seen it yet
    assert await asyncio.to_thread(pika_round_trip, bare.port, b"anyway") == b"anyway"
    [session] = list(bare.ctx.sessions)
    assert session.backend_name == "b2"
    assert "Every ready member of farm f for vhost=/ down: trying" in caplog.text


async def test_passive_detection_without_checks(
    bare: RunningProxy, forwarders: list[FaultyForwarder]
) -> None:
    await farm_of_two(bare, forwarders)
    await forwarders[0].set_mode(Fault.REFUSE)
    rounds = 0
    while status(bare, "b1") != "down":  # each session that starts at b1 fails over to b2
        rounds += 1
        assert rounds <= 8, "three failed attempts must mark b1 down"
        assert await asyncio.to_thread(pika_round_trip, bare.port, b"p") == b"p"
    failures = bare.runtime.plane.connect_failures["b1"]
    assert failures == 3  # fall defaults to 3 without checks
    for _ in range(3):
        assert await asyncio.to_thread(pika_round_trip, bare.port, b"q") == b"q"
    assert bare.runtime.plane.connect_failures["b1"] == failures  # skipped, not tried
    line = await ctl(bare.control_socket, "BACKEND HEALTH b1")
    assert "health=down last_check=none age=- successes=0 failures=3 check=off" in line
    assert "error=refused (127.0.0.1:" in line
    # After the back-off one session tries it again; its success marks it up.
    await forwarders[0].set_mode(Fault.PASS)
    bare.ctx.health.passive_retry = 0.0
    for _ in range(2):
        assert await asyncio.to_thread(pika_round_trip, bare.port, b"r") == b"r"
    assert status(bare, "b1") == "up"


async def test_drain_maint_ready_and_the_506(
    bare: RunningProxy, forwarders: list[FaultyForwarder]
) -> None:
    await farm_of_two(bare, forwarders)
    await configure(bare, "BACKEND STATE b1 drain")
    for _ in range(3):
        assert await asyncio.to_thread(pika_round_trip, bare.port, b"d") == b"d"
    assert {s.backend_name for s in bare.ctx.sessions} == {"b2"}
    assert forwarders[0].accepted == 0

    # A session on b2 stays up while b2 goes to maintenance; new ones are refused.
    kept = await RawClient.connect(bare.port)
    assert isinstance(await kept.open(), ConnectionOpenOk)
    await configure(bare, "BACKEND STATE b2 MAINT")
    client = await RawClient.connect(bare.port)
    closed = await client.open()
    assert isinstance(closed, ConnectionClose)
    assert (closed.reply_code, closed.reply_text) == (506, "No ready broker for vhost /")
    line = await ctl(bare.control_socket, "BACKEND HEALTH")
    assert line.startswith("b1 state=drain health=unknown") and "\nb2 state=maint " in line
    assert isinstance(await kept.close(), ConnectionCloseOk)

    # A vhost mapped to one backend obeys the state too.
    await configure(bare, "MAP BACKEND solo b2")
    client = await RawClient.connect(bare.port)
    closed = await client.open("solo")
    assert isinstance(closed, ConnectionClose)
    assert closed.reply_text == "No ready broker for vhost solo"

    await configure(bare, "BACKEND STATE b1 ready", "BACKEND STATE b2 ready")
    assert forwarders[0].accepted == 0
    for _ in range(2):
        assert await asyncio.to_thread(pika_round_trip, bare.port, b"r") == b"r"
    assert forwarders[0].accepted == 1 and forwarders[1].accepted >= 2


async def test_dns_backend_is_up_while_any_address_is(
    bare: RunningProxy, forwarders: list[FaultyForwarder], monkeypatch: pytest.MonkeyPatch
) -> None:
    fwd = forwarders[0]
    real = connector.resolve_host

    async def two_addresses(host: str, port: int, timeout: float) -> list[tuple[str, int]]:
        if host == "two.amqpprox.test":  # a dead loopback address first, then the live one
            return [("127.0.0.2", port), ("127.0.0.1", port)]
        return await real(host, port, timeout)

    monkeypatch.setattr(connector, "resolve_host", two_addresses)
    await configure(
        bare,
        f"BACKEND ADD_DNS two dc two.amqpprox.test {fwd.port}",
        "MAP BACKEND / two",
        f"HEALTH CHECK two {INTERVAL_MS} {TIMEOUT_MS} {RISE} {FALL}",
    )
    await until(lambda: status(bare, "two") == "up", "two up")
    entry = bare.ctx.health.entry("two")
    assert entry is not None
    await until(lambda: entry.addresses == {"127.0.0.2": False, "127.0.0.1": True}, "per address")
    # Sessions try the address that answers checks first: no failed attempt.
    assert await asyncio.to_thread(pika_round_trip, bare.port, b"dns") == b"dns"
    [session] = list(bare.ctx.sessions)
    assert session.connect_failures == 0 and session.egress_remote[0] == "127.0.0.1"
    await fwd.set_mode(Fault.REFUSE)
    await until(lambda: status(bare, "two") == "down", "two down")
    assert "127.0.0.2" in (entry.last_error or "") and "127.0.0.1" in (entry.last_error or "")


async def test_tls_backend_with_proxy_header_is_checked(pki: Pki) -> None:
    """proxy A checks backend 'secure': proxy B's secure PROXY listener (in front of
    RabbitMQ), which needs the PROXY header before TLS and answers Connection.Start."""
    with (
        tempfile.TemporaryDirectory(prefix="apx") as dir_a,
        tempfile.TemporaryDirectory(prefix="apx") as dir_b,
    ):
        b = await tls_start(dir_b, *tls_serving(pki), *tls_to_rabbit())
        a = await tls_start(dir_a)
        try:
            b_port = await b.listeners.start(ListenerSpec(0, tls=True, proxy_protocol=True))
            a_proxy = RunningProxy(a, 0, a.settings.control_socket)
            await configure(
                a_proxy,
                f"TLS EGRESS CA_CERT_FILE {pki.ca_cert}",
                "TLS EGRESS VERIFY_MODE PEER",
                f"BACKEND ADD secure dc localhost {b_port} TLS SEND-PROXY",
                f"HEALTH CHECK secure {INTERVAL_MS} 2000 1 1",
            )
            await until(lambda: a.ctx.health.status("secure") == "up", "TLS check passes")
            counters = b.listeners.counters(b_port)
            assert counters["accepted"] >= 1 and counters["proxy_header_rejected"] == 0
            assert counters["tls_handshake_failures"] == 0
            # A CA that did not sign B's certificate: every check fails in TLS.
            await configure(a_proxy, f"TLS EGRESS CA_CERT_FILE {pki.other_ca_cert}")
            await until(lambda: a.ctx.health.status("secure") == "down", "TLS check fails")
            entry = a.ctx.health.entry("secure")
            assert entry is not None and "CERTIFICATE_VERIFY_FAILED" in (entry.last_error or "")
        finally:
            await a.stop()
            await b.stop()
