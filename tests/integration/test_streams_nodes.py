"""Two real broker nodes behind the proxy: node listeners pin each, and what the brokers
advertise (Open, Metadata) reaches clients as proxy endpoints only.

A second RabbitMQ node (``amqpprox_st_<pid>@localhost``, rabbitmq_stream enabled, on free
ports) is started for this module and stopped at its end; the shared broker is the
first node. The two are not clustered: each leads the streams created on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from amqpprox.core import operations as ops
from amqpprox.stream import codec
from tests.conftest import RunningProxy, free_closed_port, running_proxy
from tests.rabbitnode import rabbitmq_node
from tests.rawstream import CREATE, DELETE, RawStream, ensure_stream_plugin, request, string

pytestmark = pytest.mark.timeout(120)
NODE = f"amqpprox_st_{os.getpid()}@localhost"


@dataclass(frozen=True)
class SecondNode:
    amqp_port: int
    stream_port: int
    env: dict[str, str]

    def stream_peer_ports(self) -> set[int]:
        out = subprocess.run(
            ["rabbitmqctl", "-q", "-n", NODE, "list_stream_connections", "--formatter", "json",
             "peer_port"],
            env=self.env, capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        return {int(row["peer_port"]) for row in json.loads(out or "[]")}


@pytest.fixture(scope="module")
def second_node() -> Iterator[SecondNode]:
    ensure_stream_plugin()
    stream_port = free_closed_port()
    conf = f"loopback_users = none\nstream.listeners.tcp.1 = 127.0.0.1:{stream_port}\n"
    with rabbitmq_node(NODE, conf, "[rabbitmq_stream].\n") as node:
        yield SecondNode(node.port, stream_port, node.env)


@pytest.fixture
async def two_nodes(
    tmp_socket_dir: str, second_node: SecondNode
) -> AsyncIterator[tuple[RunningProxy, int, int, int]]:
    """Backends one (the shared broker) and two (the second node) in a farm for "/", a
    stream entry listener and a node listener for each."""
    async with running_proxy(tmp_socket_dir, simple=False) as running:
        ctx = running.ctx
        await ops.add_backend(ctx, "one", "dc", "127.0.0.1", 5672)
        await ops.add_backend(
            ctx, "two", "dc", "127.0.0.1", second_node.amqp_port,
            stream_port=second_node.stream_port,
        )  # fmt: skip
        ops.set_farm(ctx, "both", ["one", "two"])
        ops.set_default_farm(ctx, "both")
        start = ops.start_listener
        entry = await start(ctx, 0, host="127.0.0.1", protocol="stream")
        node_one = await start(ctx, 0, host="127.0.0.1", protocol="stream", node="one")
        node_two = await start(ctx, 0, host="127.0.0.1", protocol="stream", node="two")
        yield running, entry, node_one, node_two


async def _open(port: int) -> tuple[RawStream, dict[str, str]]:
    client = await RawStream.connect(port)
    await client.handshake()
    code, props = await client.open("/")
    assert code == codec.OK
    return client, props


async def test_each_node_listener_pins_its_node_and_metadata_names_it(
    two_nodes: tuple[RunningProxy, int, int, int], second_node: SecondNode
) -> None:
    running, entry, node_one, node_two = two_nodes
    clients: list[RawStream] = []
    try:
        for node_port, backend in ((node_one, "one"), (node_two, "two")):
            client, props = await _open(node_port)
            clients.append(client)
            # Open's advertised endpoint is the listener the client came in on.
            assert (props["advertised_host"], props["advertised_port"]) == (
                "127.0.0.1",
                str(node_port),
            )
            [session] = [s for s in running.ctx.sessions if s.local[1] == node_port]
            assert session.backend_name == backend
            stream = f"amqpprox-{backend}-{uuid.uuid4().hex[:8]}"
            client.send(request(CREATE, 5, string(stream) + b"\x00\x00\x00\x00"))
            created = await client.frame_of(CREATE | codec.RESPONSE)
            assert codec.response_code(created.body) == (5, codec.OK)
            # The stream lives on this node: its Metadata names this node's listener.
            client.send(request(codec.METADATA, 6, b"\x00\x00\x00\x01" + string(stream)))
            got = await client.frame_of(codec.METADATA | codec.RESPONSE)
            brokers = codec.read_metadata_brokers(got.body)
            assert {(h, p) for _r, h, p in brokers} == {("127.0.0.1", node_port)}
            client.send(request(DELETE, 7, string(stream)))
            await client.frame_of(DELETE | codec.RESPONSE)
        # Through the entry listener, round robin lands on each node in turn; whichever
        # it is, the endpoints the client is given are the proxy's only.
        for _ in range(2):
            client, props = await _open(entry)
            clients.append(client)
            assert props["advertised_port"] == str(entry)
        assert {s.backend_name for s in running.ctx.sessions if s.local[1] == entry} == {
            "one",
            "two",
        }
        # The second node sees only the proxy as the peer of its stream connections.
        egress = {
            s.egress_local[1]
            for s in running.ctx.sessions
            if s.backend_name == "two" and not s.finished
        }
        assert egress and second_node.stream_peer_ports() == egress
    finally:
        for client in clients:
            client.close()
