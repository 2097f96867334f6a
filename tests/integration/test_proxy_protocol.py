"""The PROXY protocol both ways, against a real RabbitMQ that speaks it.

A second RabbitMQ node (``amqpprox_pp@localhost``) is started for this module with
``proxy_protocol = true``: it refuses any connection without a header and reports the
header's source as the connection's peer. So ``list_connections peer_host peer_port``
shows whether the proxy passed the real client's address on (SEND-PROXY, SEND-PROXY-V2),
including an address the proxy itself learned from a load balancer's header
(``LISTEN START port PROXY``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pika
import pytest

from amqpprox.amqp.frames import PROTOCOL_HEADER
from amqpprox.core.model import ListenerSpec
from amqpprox.proxy import proxy_protocol as pp
from amqpprox.proxy.listener import ListenerManager
from tests.conftest import (
    BROKER_PORT,
    RunningProxy,
    ctl,
    free_closed_port,
    running_proxy,
)
from tests.polling import until
from tests.rabbitnode import rabbitmq_node
from tests.rawamqp import RawClient

pytestmark = pytest.mark.broker

# One node name per test process, so two runs on one machine never fight over a node.
NODE = f"amqpprox_pp_{os.getpid()}@localhost"


@dataclass(frozen=True)
class ProxyProtocolBroker:
    port: int
    env: dict[str, str]

    def rabbitmqctl(self, *args: str, timeout: float = 30.0) -> str:
        result = subprocess.run(
            ["rabbitmqctl", "-q", "-n", NODE, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return result.stdout

    def connections(self) -> list[dict[str, str]]:
        fields = ("peer_host", "peer_port", "host", "port", "client_properties")
        out = self.rabbitmqctl("list_connections", *fields)
        rows = [line.split("\t") for line in out.splitlines() if line.strip()]
        return [dict(zip(fields, row, strict=True)) for row in rows if row[0] != "peer_host"]


@pytest.fixture(scope="session")
def pp_broker() -> Iterator[ProxyProtocolBroker]:
    """A RabbitMQ node with ``proxy_protocol = true`` on free ports, stopped at the end."""
    with rabbitmq_node(NODE, "proxy_protocol = true\nloopback_users = none\n") as node:
        yield ProxyProtocolBroker(node.port, node.env)


@pytest.fixture
async def pp_proxy(tmp_socket_dir: str) -> AsyncIterator[RunningProxy]:
    """A proxy with a plain listener and nothing configured (a tiny PROXY header deadline)."""
    async with running_proxy(tmp_socket_dir, simple=False, proxy_header_timeout=0.5) as running:
        yield running


async def _closed_without_a_byte(client: RawClient) -> bool:
    """EOF, or a reset (closing with unread bytes in the socket sends RST), and no data."""
    try:
        return await client.read_eof() == b""
    except ConnectionResetError:
        return True


def _pika_connect(port: int) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1",
            port,
            "/",
            pika.PlainCredentials("guest", "guest"),
            connection_attempts=1,
            socket_timeout=5,
        )
    )


async def test_send_proxy_v1_v2_and_dns_backends_give_rabbitmq_the_real_client(
    pp_proxy: RunningProxy, pp_broker: ProxyProtocolBroker
) -> None:
    path, port = pp_proxy.control_socket, pp_broker.port
    assert await ctl(path, f"BACKEND ADD pp1 dc 127.0.0.1 {port} SEND-PROXY") == ""
    assert await ctl(path, f"BACKEND ADD pp2 dc 127.0.0.1 {port} send-proxy-v2") == ""
    # A DNS backend: "localhost" may resolve to ::1 first, where nothing listens; the
    # header must name the address actually connected to.
    assert await ctl(path, f"BACKEND ADD_DNS pp3 dc localhost {port} SEND-PROXY") == ""
    printed = set((await ctl(path, "BACKEND PRINT")).splitlines())
    assert printed == {
        f"pp1 (dc): 127.0.0.1 127.0.0.1:{port} PROXY PROTOCOL V1 ENABLED",
        f"pp2 (dc): 127.0.0.1 127.0.0.1:{port} PROXY PROTOCOL V2 ENABLED",
        f"pp3 (dc): localhost :{port} PROXY PROTOCOL V1 ENABLED",
    }
    sessions = pp_proxy.ctx.sessions
    pika_conn = None
    try:
        # 1. pika through a plain listener, backend with SEND-PROXY (v1).
        await ctl(path, "MAP BACKEND / pp1")
        pika_conn = await asyncio.to_thread(_pika_connect, pp_proxy.port)
        # 2. a client through the same listener, backend with SEND-PROXY-V2.
        await ctl(path, "MAP BACKEND / pp2")
        raw = await RawClient.connect(pp_proxy.port)
        assert type(await raw.open()).__name__ == "ConnectionOpenOk"
        raw_port = raw.writer.get_extra_info("sockname")[1]
        # 3. a client behind a load balancer (PROXY listener), DNS backend with SEND-PROXY.
        await ctl(path, "MAP BACKEND / pp3")
        lb_port = await pp_proxy.runtime.listeners.start(ListenerSpec(0, proxy_protocol=True))
        behind = await RawClient.connect(lb_port)
        await behind.send(pp.encode_v1(("2001:db8::7", 4711), ("2001:db8::1", 5672)))
        assert type(await behind.open()).__name__ == "ConnectionOpenOk"

        by_backend = {s.backend_name: s for s in sessions}
        assert set(by_backend) == {"pp1", "pp2", "pp3"}
        pika_port = by_backend["pp1"].client[1]
        assert by_backend["pp2"].client == ("127.0.0.1", raw_port)
        assert by_backend["pp3"].client == ("2001:db8::7", 4711)
        assert by_backend["pp3"].egress_remote == ("127.0.0.1", port)

        rows = await asyncio.to_thread(pp_broker.connections)
        peers = {(r["peer_host"], int(r["peer_port"])): r for r in rows}
        assert set(peers) == {
            ("127.0.0.1", pika_port),
            ("127.0.0.1", raw_port),
            ("2001:db8::7", 4711),
        }, rows
        for row in rows:
            # The destination RabbitMQ was told is the address the proxy connected to.
            assert row["host"].endswith("127.0.0.1") and int(row["port"]) == port, row
        # The address learned from the load balancer is the client's everywhere.
        assert "2001:db8::7:4711" in peers[("2001:db8::7", 4711)]["client_properties"]
        conn = await ctl(path, "CONN")
        assert "ingressRemote=2001:db8::7:4711 " in conn
    finally:
        if pika_conn is not None:
            await asyncio.to_thread(pika_conn.close)


async def test_a_proxy_listener_reads_v1_and_v2_and_refuses_the_rest(
    pp_proxy: RunningProxy,
) -> None:
    path = pp_proxy.control_socket
    await ctl(path, f"BACKEND ADD rabbit dc 127.0.0.1 {BROKER_PORT}")
    await ctl(path, "MAP BACKEND / rabbit")
    listeners = pp_proxy.runtime.listeners
    assert isinstance(listeners, ListenerManager)
    assert await ctl(path, "LISTEN START 0 PROXY") == "Invalid port provided.\n"
    port = free_closed_port()
    assert await ctl(path, f"LISTEN START {port} proxy") == ""
    assert [s.proxy_protocol for s in listeners.specs() if s.port == port] == [True]

    # v2 over IPv4, the header split across writes and followed at once by the handshake.
    client = await RawClient.connect(port)
    header = pp.encode_v2(("198.51.100.9", 50000), ("203.0.113.1", 5672))
    await client.send(header[:5])
    await client.send(header[5:20])
    await until(lambda: listeners.counters(port)["accepted"] == 1, timeout=5.0)
    await client.send(header[20:])
    assert type(await client.open()).__name__ == "ConnectionOpenOk"
    # A v2 LOCAL header (a balancer's health check): the socket's own address is used.
    local = await RawClient.connect(port)
    await local.send(pp.encode_v2_local())
    assert type(await local.open()).__name__ == "ConnectionOpenOk"
    clients = sorted(s.client for s in pp_proxy.ctx.sessions)
    assert ("198.51.100.9", 50000) in clients
    assert ("127.0.0.1", local.writer.get_extra_info("sockname")[1]) in clients
    conn = await ctl(path, "CONN")
    assert "ingressRemote=198.51.100.9:50000 " in conn

    # No header (an AMQP client straight in), garbage, a truncated header, silence.
    refused = [PROTOCOL_HEADER, b"PROXY TCP4 1.2.3.4\n", b"PROXY TCP4 1.2.3.4 "]
    for data in [*refused, b""]:
        bad = await RawClient.connect(port)
        if data:
            await bad.send(data)
        if data.endswith(b" "):
            bad.writer.write_eof()
        assert await _closed_without_a_byte(bad), data
    counters = listeners.counters(port)
    assert counters["proxy_header_rejected"] == 4
    assert counters["accepted"] == 6
    assert len([s for s in pp_proxy.ctx.sessions if not s.finished]) == 2


async def test_a_plain_listener_never_interprets_a_proxy_header(pp_proxy: RunningProxy) -> None:
    client = await RawClient.connect(pp_proxy.port)
    await client.send(pp.encode_v1(("10.9.9.9", 1), ("10.0.0.1", 5672)) + PROTOCOL_HEADER)
    # Not an AMQP header: the proxy answers with the one it speaks and closes.
    assert await client.read_eof() == PROTOCOL_HEADER
    assert all(s.client[0] == "127.0.0.1" for s in pp_proxy.ctx.sessions)
