"""Backend choice and failover: what a client sees when farm members fail or refuse.

A member that refuses the TCP connect, stalls, drops or answers garbage is skipped and
the client, relayed by the next good member, sees no error; when none is left it gets
``Connection.Close 506``; a broker's own ``Connection.Close`` is final. ``CONN`` shows
the broker finally used.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from amqpprox.amqp.methods import ConnectionClose, ConnectionOpenOk
from tests.conftest import free_closed_port
from tests.rawamqp import CHANNEL_OPEN, handshake_bytes
from tests.scripted_broker import (
    Action,
    Close,
    Drop,
    Garbage,
    Hold,
    Script,
    ScriptedBroker,
    Stage,
    Stall,
)
from tests.session.rig import Rig, open_answer, read_to_eof, rig_for

BROKER_HANDSHAKE_TIMEOUT = 0.5

BAD_BROKERS: dict[str, tuple[Stage, Action]] = {
    "stalls at accept": (Stage.ACCEPT, Stall()),
    "answers garbage": (Stage.ACCEPT, Garbage()),
    "answers its own header": (Stage.ACCEPT, Garbage(b"AMQP\x00\x00\x09\x01")),
    "drops after StartOk": (Stage.START_OK, Drop()),
    "garbage instead of Tune": (Stage.START_OK, Garbage(b"\x01\x00\x00\x00\x00\x00\x04xxxx\x00")),
    "stalls at Open": (Stage.OPEN, Stall()),
    "drops at Open": (Stage.OPEN, Drop()),
}


@contextlib.asynccontextmanager
async def farm_rig(
    tmp_socket_dir: str, members: list[tuple[str, int]], good: ScriptedBroker
) -> AsyncIterator[Rig]:
    """A proxy whose vhost / maps to farm ``f`` of ``members`` (name, port), in that order."""
    async with rig_for(
        tmp_socket_dir, good, broker_handshake_timeout=BROKER_HANDSHAKE_TIMEOUT
    ) as rig:
        for name, port in members:
            await rig.add_backend(name, port)
        assert await rig.ctl(f"FARM ADD f round-robin {' '.join(n for n, _ in members)}") == ""
        await rig.ok("MAP FARM / f")
        yield rig


@pytest.mark.parametrize("bad", list(BAD_BROKERS))
async def test_failover_past_a_refused_port_and_a_bad_broker_is_invisible_to_the_client(
    tmp_socket_dir: str, broker: ScriptedBroker, bad: str
) -> None:
    stage, action = BAD_BROKERS[bad]
    async with ScriptedBroker(default=Script(at=stage, do=action)) as faulty:
        members = [("refused", free_closed_port()), ("faulty", faulty.port)]
        members.append(("good", broker.port))
        async with farm_rig(tmp_socket_dir, members, broker) as rig:
            client = await rig.client()
            await client.send(handshake_bytes("/") + CHANNEL_OPEN)
            # Start, Tune, then OpenOk: nothing of the failed attempts reaches the client.
            assert await open_answer(client) == ConnectionOpenOk("")
            good = await broker.opened(0)
            assert await good.received_at_least(len(CHANNEL_OPEN)) == CHANNEL_OPEN
            attempt = await faulty.connection(0)
            assert attempt.stages[-1] is stage
            await attempt.wait_lost()  # the proxy gave that attempt up and closed it
            fields = await rig.conn_until(client, disconnected="N")
            assert fields["egressRemote"] == f"127.0.0.1:{broker.port}"
            assert len(faulty.connections) == 1


async def test_no_member_left_gets_close_506(tmp_socket_dir: str, broker: ScriptedBroker) -> None:
    async with (
        ScriptedBroker(default=Script(at=Stage.ACCEPT, do=Stall())) as stalling,
        ScriptedBroker(default=Script(at=Stage.START_OK, do=Garbage())) as garbage,
    ):
        members = [
            ("refused", free_closed_port()),
            ("stalling", stalling.port),
            ("garbage", garbage.port),
        ]
        async with farm_rig(tmp_socket_dir, members, broker) as rig:
            client = await rig.client()
            await client.send(handshake_bytes("/"))
            assert await open_answer(client) == ConnectionClose(
                506, "No broker reachable for vhost /", 0, 0
            )
            await client.close_ok()
            assert await read_to_eof(client) == b""
            await rig.conn_until(client, disconnected="Y")
            for tried in (stalling, garbage):
                assert len(tried.connections) == 1
                await tried.connections[0].wait_lost()
            assert broker.connections == []  # not in the farm


async def test_a_broker_close_is_final_no_other_member_is_tried(
    tmp_socket_dir: str, broker: ScriptedBroker
) -> None:
    refusal = Close(530, "NOT_ALLOWED - vhost / not found", 10, 40)
    async with ScriptedBroker(default=Script(at=Stage.OPEN, do=refusal)) as refusing:
        members = [("refusing", refusing.port), ("good", broker.port)]
        async with farm_rig(tmp_socket_dir, members, broker) as rig:
            client = await rig.client()
            await client.send(handshake_bytes("/"))
            assert await open_answer(client) == refusal.method
            await client.close_ok()
            assert await read_to_eof(client) == b""
            await rig.conn_until(client, disconnected="Y")
            assert broker.connections == []


async def test_round_robin_moves_the_next_session_to_the_next_member(
    tmp_socket_dir: str, broker: ScriptedBroker
) -> None:
    async with ScriptedBroker() as other:
        members = [("first", broker.port), ("second", other.port)]
        async with farm_rig(tmp_socket_dir, members, broker) as rig:
            one = await rig.open_session("/")
            assert one.broker is broker.connections[0]
            client = await rig.client()
            await client.send(handshake_bytes("/"))
            assert await open_answer(client) == ConnectionOpenOk("")
            await other.opened(0)
            fields = await rig.conn_until(client, disconnected="N")
            assert fields["egressRemote"] == f"127.0.0.1:{other.port}"
            assert len(broker.connections) == 1


async def test_a_vhost_without_a_mapping_gets_close_506(rig: Rig, broker: ScriptedBroker) -> None:
    client = await rig.client()
    await client.send(handshake_bytes("elsewhere"))
    assert await open_answer(client) == ConnectionClose(
        506, "No known broker mapping for vhost elsewhere", 0, 0
    )
    await client.close_ok()
    assert await read_to_eof(client) == b""
    fields = await rig.conn_until(client, disconnected="Y")
    assert fields["vhost"] == "elsewhere"
    assert broker.connections == []


async def test_backend_disconnect_while_connecting_moves_on_to_the_next_member(
    tmp_socket_dir: str, broker: ScriptedBroker
) -> None:
    async with ScriptedBroker(default=Script(at=Stage.OPEN, do=Hold())) as holding:
        members = [("holding", holding.port), ("good", broker.port)]
        async with farm_rig(tmp_socket_dir, members, broker) as rig:
            client = await rig.client()
            await client.send(handshake_bytes("/") + CHANNEL_OPEN)
            attempt = await holding.connection(0)
            await attempt.until(lambda: attempt.held, "the first member to hold at Open")
            await rig.ok("VHOST BACKEND_DISCONNECT /")
            assert await open_answer(client) == ConnectionOpenOk("")
            good = await broker.opened(0)
            assert await good.received_at_least(len(CHANNEL_OPEN)) == CHANNEL_OPEN
            await attempt.wait_lost()
            fields = await rig.conn_until(client, disconnected="N")
            assert fields["egressRemote"] == f"127.0.0.1:{broker.port}"
