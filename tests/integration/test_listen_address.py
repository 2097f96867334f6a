"""Listeners bind the address they are given, on every front end, IPv4 and IPv6.

A listener bound to loopback answers there and nowhere else: the addresses it must not
answer on are those of this machine where a listener on every interface does answer
(``127.0.0.2``, another address of Linux's loopback, and the first non-loopback IPv4
address), so the refusals below are never vacuous. Clients are real: the scripted AMQP
client (``tests.rawamqp``) and pika, through the proxy to the real RabbitMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from amqpprox.amqp.methods import ConnectionCloseOk, ConnectionOpenOk
from amqpprox.cli import build_parser
from amqpprox.runtime import Runtime
from tests.admin.conftest import reserve_port
from tests.conftest import (
    AMQP_LISTENER,
    BROKER_HOST,
    BROKER_PORT,
    RunningProxy,
    ctl,
    free_closed_port,
    pika_round_trip,
)
from tests.polling import DEADLINE
from tests.rawamqp import RawClient

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parents[2]
CONNECT_TIMEOUT = 5.0


# -- this machine's addresses ----------------------------------------------------------------
def _candidate_other_addresses() -> list[str]:
    """Another address of this machine than 127.0.0.1: 127.0.0.2, on Linux's loopback.

    Only loopback addresses: the tests send traffic nowhere else (not even to this
    machine's own network interfaces)."""
    return ["127.0.0.2"]


def _ipv6_unavailable() -> str | None:
    """Why this machine cannot run the IPv6 tests, or None when it can."""
    if not socket.has_ipv6:
        return "Python was built without IPv6"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError as error:
        return f"no IPv6 loopback on this machine: {error}"
    return None


NO_IPV6 = _ipv6_unavailable()
needs_ipv6 = pytest.mark.skipif(NO_IPV6 is not None, reason=NO_IPV6 or "")


def absent_address() -> str:
    """An IPv4 address this machine does not have (binding it fails)."""
    for last in range(77, 90):
        address = f"203.0.113.{last}"  # TEST-NET-3, documentation only
        with socket.socket() as sock:
            try:
                sock.bind((address, 0))
            except OSError:
                return address
    raise AssertionError("every candidate address is local: pick others")


async def reachable(host: str, port: int) -> bool:
    """Whether a TCP connect to ``host:port`` is accepted (False when refused)."""
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), CONNECT_TIMEOUT
        )
    except ConnectionRefusedError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def other_addresses(ctl_path: str) -> list[str]:
    """This machine's IPv4 addresses besides 127.0.0.1 where an every-interface listener
    of the proxy answers (at least one, else the refusals would prove nothing)."""
    with reserve_port() as port:
        assert await ctl(ctl_path, f"LISTEN START {port}") == ""
        try:
            found = [a for a in _candidate_other_addresses() if await reachable(a, port)]
        finally:
            assert await ctl(ctl_path, f"LISTEN STOP {port}") == ""
    assert found, "no local address besides 127.0.0.1 answers a listener on 0.0.0.0"
    return found


async def amqp_opens(host: str, port: int) -> bool:
    """Whether an AMQP handshake at ``host:port`` reaches the broker (then closes it)."""
    client = await RawClient.connect(port, host)
    opened = isinstance(await client.open(), ConnectionOpenOk)
    if opened:
        assert isinstance(await client.close(), ConnectionCloseOk)
    client.writer.close()  # as a client does after CloseOk
    return opened


@pytest.fixture
def port() -> Iterator[int]:
    with reserve_port() as reserved:
        yield reserved


# -- LISTEN START port ADDRESS address (the control socket) ------------------------------------
async def test_a_loopback_listener_answers_on_loopback_only(proxy: RunningProxy, port: int) -> None:
    path = proxy.control_socket
    others = await other_addresses(path)
    assert await ctl(path, f"LISTEN START {port} ADDRESS 127.0.0.1") == ""
    assert f"port={port} address=127.0.0.1 tls=N proxyProtocol=N\n" in await ctl(
        path, "LISTEN PRINT"
    )
    assert await amqp_opens("127.0.0.1", port)  # through the proxy to RabbitMQ
    for address in others:
        assert not await reachable(address, port), f"the listener answers on {address}"


async def test_listen_start_options_in_any_order_and_canonical_addresses(
    proxy: RunningProxy,
) -> None:
    path = proxy.control_socket
    with reserve_port() as first, reserve_port() as second:
        assert await ctl(path, f"LISTEN START {first} proxy ADDRESS localhost") == ""
        assert await ctl(path, f"listen start {second} address 127.0.0.1 PROXY") == ""
        lines = (await ctl(path, "LISTEN PRINT")).splitlines()
        assert f"port={first} address=127.0.0.1 tls=N proxyProtocol=Y" in lines
        assert f"port={second} address=127.0.0.1 tls=N proxyProtocol=Y" in lines


async def test_listen_start_errors(proxy: RunningProxy, port: int) -> None:
    path = proxy.control_socket
    before = await ctl(path, "LISTEN PRINT")
    absent = absent_address()
    for line, reply in [
        (f"LISTEN START {port} ADDRESS", "No address provided.\n"),
        (
            f"LISTEN START {port} ADDRESS example.com",
            "invalid listen address 'example.com': give an IPv4 or IPv6 address, or localhost\n",
        ),
        (
            f"LISTEN START {port} ADDRESS 127.000.0.1",
            "invalid listen address '127.000.0.1': give an IPv4 or IPv6 address, or localhost\n",
        ),
        (
            f"LISTEN START_SECURE {port} ADDRESS [::1]",
            "invalid listen address '[::1]': give an IPv4 or IPv6 address, or localhost\n",
        ),
        (f"LISTEN START {port} 127.0.0.1", "Unknown option: 127.0.0.1\n"),
        (f"LISTEN START {port} ADRESS 127.0.0.1", "Unknown option: ADRESS\n"),
        (f"LISTEN START {port} PROXY PROXY", "Option given twice: PROXY\n"),
        (
            f"LISTEN START {port} ADDRESS 127.0.0.1 ADDRESS ::1",
            "Option given twice: ADDRESS\n",
        ),
        ("LISTEN START 0 ADDRESS 127.0.0.1", "Invalid port provided.\n"),
    ]:
        assert await ctl(path, line) == reply, line
    reply = await ctl(path, f"LISTEN START {port} ADDRESS {absent}")
    assert reply.startswith(f"Failed to listen on port {port}: ")
    assert reply.endswith(f" (address {absent})\n")
    assert await ctl(path, "LISTEN PRINT") == before  # nothing started
    # One listener per port: another address on a port we listen on is the busy-port error.
    assert await ctl(path, f"LISTEN START {port} ADDRESS 127.0.0.1") == ""
    assert await ctl(path, f"LISTEN START {port} ADDRESS 127.0.0.2") == (
        f"Already listening on port: {port}\n"
    )
    assert f"port={port} address=127.0.0.1 " in await ctl(path, "LISTEN PRINT")


@needs_ipv6
async def test_an_ipv6_loopback_listener_serves_pika_over_ipv6(
    proxy: RunningProxy, port: int
) -> None:
    path = proxy.control_socket
    assert await ctl(path, f"LISTEN START {port} ADDRESS 0:0:0:0:0:0:0:1") == ""
    assert f"port={port} address=::1 tls=N proxyProtocol=N\n" in await ctl(path, "LISTEN PRINT")
    sent = uuid.uuid4().bytes
    body = await asyncio.to_thread(pika_round_trip, port, sent, "::1")
    assert len(body) == 16
    assert not await reachable("127.0.0.1", port)  # IPv6 only
    assert await amqp_opens("::1", port)
    conns = await ctl(path, "CONN")
    assert re.search(r"ingressRemote=::1:\d+ ingressLocal=::1 ", conns), conns


@needs_ipv6
async def test_an_ipv6_any_listener(proxy: RunningProxy, port: int) -> None:
    path = proxy.control_socket
    assert await ctl(path, f"LISTEN START {port} ADDRESS ::") == ""
    assert f"port={port} address=:: tls=N proxyProtocol=N\n" in await ctl(path, "LISTEN PRINT")
    assert await amqp_opens("::1", port)


# -- REST and definitions ----------------------------------------------------------------------
class Rest:
    def __init__(self, runtime: Runtime, http: aiohttp.ClientSession) -> None:
        self.runtime = runtime
        self.http = http
        self.base = f"http://127.0.0.1:{runtime.admin_port}/api/v1"

    async def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        async with self.http.request(method, self.base + path, **kwargs) as response:
            text = await response.text()
            return response.status, (await response.json() if text else None)


@pytest.fixture
async def rest(proxy: RunningProxy) -> AsyncIterator[Rest]:
    async with aiohttp.ClientSession() as http:
        yield Rest(proxy.runtime, http)


async def test_rest_listener_address(proxy: RunningProxy, rest: Rest, port: int) -> None:
    others = await other_addresses(proxy.control_socket)
    status, body = await rest.call(
        "PUT", f"/listeners/{port}", {"tls": False, "address": "127.0.0.1"}
    )
    assert (status, body) == (
        201,
        {
            "port": port,
            "address": "127.0.0.1",
            "tls": False,
            "proxy_protocol": False,
            **AMQP_LISTENER,
        },
    )
    assert body in (await rest.call("GET", "/listeners"))[1]
    assert await amqp_opens("127.0.0.1", port)
    for address in others:
        assert not await reachable(address, port), f"the listener answers on {address}"
    # Idempotent; the same address written another way is the same listener.
    assert (await rest.call("PUT", f"/listeners/{port}", {"tls": False, "address": "localhost"}))[
        0
    ] == 200
    # Errors leave the listener as it was.
    status, error = await rest.call(
        "PUT", f"/listeners/{port}", {"tls": False, "address": "not-an-ip"}
    )
    assert status == 400 and error["error"] == "invalid_argument"
    assert "invalid listen address 'not-an-ip'" in error["message"]
    status, error = await rest.call("PUT", f"/listeners/{port}", {"tls": False, "address": 127})
    assert status == 400 and error["error"] == "invalid_argument"
    absent = absent_address()
    status, error = await rest.call("PUT", f"/listeners/{port}", {"tls": False, "address": absent})
    assert status == 409 and error["error"] == "invalid_state"
    assert error["message"].startswith(f"Failed to listen on port {port}: ")
    assert error["message"].endswith(f"(address {absent})")
    assert body in (await rest.call("GET", "/listeners"))[1]
    assert await amqp_opens("127.0.0.1", port)
    # Another address replaces the listener (listeners are keyed by port).
    status, moved = await rest.call(
        "PUT", f"/listeners/{port}", {"tls": False, "address": "127.0.0.2"}
    )
    assert status == 200 and moved["address"] == "127.0.0.2"
    assert await amqp_opens("127.0.0.2", port)
    assert not await reachable("127.0.0.1", port)


@needs_ipv6
async def test_rest_ipv6_listener(rest: Rest, port: int) -> None:
    status, body = await rest.call("PUT", f"/listeners/{port}", {"tls": False, "address": "::1"})
    assert status == 201 and body["address"] == "::1"
    assert await amqp_opens("::1", port)


async def test_definitions_keep_the_address(proxy: RunningProxy, rest: Rest, port: int) -> None:
    status, _ = await rest.call("PUT", f"/listeners/{port}", {"tls": False, "address": "127.0.0.1"})
    assert status == 201
    status, exported = await rest.call("GET", "/definitions")
    assert status == 200
    mine = {
        "port": port,
        "address": "127.0.0.1",
        "tls": False,
        "proxy_protocol": False,
        **AMQP_LISTENER,
    }
    assert mine in exported["listeners"]
    # A round trip changes nothing.
    status, result = await rest.call("PUT", "/definitions", exported)
    assert status == 200, result
    assert result["changes"]["listeners"] == {"added": [], "removed": [], "changed": []}
    assert mine in result["definitions"]["listeners"]
    # Only the address differs: a dry run reports the change and changes nothing.
    moved = {**exported, "listeners": [{"port": port, "address": "127.0.0.2"}]}
    status, result = await rest.call("PUT", "/definitions?dry_run=true", moved)
    assert status == 200, result
    assert result["changes"]["listeners"]["changed"] == [str(port)]
    assert await amqp_opens("127.0.0.1", port)
    status, result = await rest.call("PUT", "/definitions", moved)
    assert status == 200, result
    assert {**mine, "address": "127.0.0.2"} in result["definitions"]["listeners"]
    assert await amqp_opens("127.0.0.2", port)
    assert not await reachable("127.0.0.1", port)
    # Bad addresses: refused whole, nothing changes.
    for address, status_code, code in [
        ("nowhere", 400, "invalid_argument"),
        (absent_address(), 409, "invalid_state"),
    ]:
        bad = {"listeners": [{"port": port, "address": address}]}
        status, error = await rest.call("PUT", "/definitions", bad)
        assert (status, error["error"]) == (status_code, code), error
        assert address in error["message"]
    assert await amqp_opens("127.0.0.2", port)


# -- amqpprox --listenHost and make run -------------------------------------------------------
def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amqpprox", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def simple_flags(directory: str, port: int) -> list[str]:
    return [
        "--listenPort", str(port), "--destinationDNS", BROKER_HOST,
        "--destinationPort", str(BROKER_PORT), "--adminPort", "0",
        "--controlSocket", os.path.join(directory, "ctl"),
        "--logDirectory", os.path.join(directory, "logs"),
    ]  # fmt: skip


@pytest.mark.parametrize("address", ["example.com", "127.1", "[::1]", "", "fe80::1%lo"])
def test_cli_refuses_an_invalid_listen_host(tmp_socket_dir: str, address: str) -> None:
    flags = simple_flags(tmp_socket_dir, free_closed_port())
    result = run_cli(*flags, "--listenHost", address)
    assert result.returncode == 2
    assert result.stdout.strip() == (
        f"--listenHost: invalid listen address {address!r}: "
        "give an IPv4 or IPv6 address, or localhost"
    )


def test_cli_listen_host_needs_simple_mode() -> None:
    result = run_cli("--listenHost", "127.0.0.1")
    assert result.returncode == 2
    assert result.stdout.strip() == (
        "--listenHost is for simple mode: --listenPort, --destinationPort and "
        "--destinationDNS must be set too"
    )
    assert "--listenHost ADDRESS" in run_cli("--help").stdout


def test_cli_address_not_on_this_host_fails_to_start(tmp_socket_dir: str) -> None:
    port, absent = free_closed_port(), absent_address()
    result = run_cli(*simple_flags(tmp_socket_dir, port), "--listenHost", absent)
    assert result.returncode == 1
    assert (
        f"Failed to start: Failed to listen on port {port}: " in result.stdout
        and f"(address {absent})\n" in result.stdout
    ), result.stdout


async def test_cli_listen_host_binds_that_address(tmp_socket_dir: str) -> None:
    port = free_closed_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "amqpprox", *simple_flags(tmp_socket_dir, port),
        "--listenHost", "localhost",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    path = os.path.join(tmp_socket_dir, "ctl")
    try:
        line = f"port={port} address=127.0.0.1 tls=N proxyProtocol=N\n"
        assert await poll_ctl(path, "LISTEN PRINT", line) == line
        assert await amqp_opens("127.0.0.1", port)
        for address in await other_addresses(path):
            assert not await reachable(address, port), f"the listener answers on {address}"
        assert await ctl(path, "EXIT") == "Exiting.\n"
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def poll_ctl(path: str, line: str, wanted: str) -> str:
    """``line``'s reply once it is ``wanted`` (the process may still be starting)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    reply = ""
    while True:
        with contextlib.suppress(OSError):
            reply = await ctl(path, line)
        if reply == wanted:
            return reply
        assert loop.time() < deadline, f"{line!r} never replied {wanted!r}, last {reply!r}"
        await asyncio.sleep(0.02)


def test_make_run_binds_loopback() -> None:
    if shutil.which("make") is None:
        pytest.fail("make is needed to read the run target")
    listing = subprocess.run(
        ["make", "-n", "run"], cwd=REPO, capture_output=True, text=True, timeout=30, check=True
    ).stdout.replace("\\\n", " ")
    command = next(line for line in listing.splitlines() if " -m amqpprox " in line)
    words = shlex.split(command)
    args = build_parser().parse_args(words[words.index("amqpprox") + 1 :])
    assert args.listenHost is not None, command
    assert ipaddress.ip_address(args.listenHost).is_loopback, command
    assert ipaddress.ip_address(args.adminHost).is_loopback, command
