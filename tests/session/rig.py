"""The session tests' rig: a proxy (tiny deadlines) in front of a scripted broker.

The proxy is a ``Runtime`` with one listener and nothing else, configured through the
control socket as an operator would; the broker is ``tests.scripted_broker``; clients
are ``tests.rawamqp`` clients. Nothing here needs RabbitMQ, and nothing looks inside
``Session``: what is asserted is bytes on the wire and the text of ``CONN``.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

from amqpprox.amqp.frames import FRAME_BODY, FRAME_HEADER, FRAME_METHOD, encode_frame
from amqpprox.amqp.methods import ConnectionOpenOk, ConnectionStart, ConnectionTune, Method
from tests.conftest import RunningProxy, ctl, running_proxy
from tests.rawamqp import OPEN_CLIENTS, RawClient, handshake_bytes
from tests.scripted_broker import BrokerConnection, Hold, Script, ScriptedBroker, Stage

# Every wait of the proxy is short, so a test of a deadline lasts a second at most.
CLOSE_DEADLINE = 1.0
FAST: dict[str, object] = {
    "client_handshake_timeout": 2.0,
    "connect_timeout": 1.0,
    "broker_handshake_timeout": 2.0,
    "graceful_close_timeout": CLOSE_DEADLINE,
}
TIMEOUT = 5.0


@dataclass
class Live:
    """A session relaying between a raw client and a scripted broker connection."""

    client: RawClient
    broker: BrokerConnection
    id: int


@dataclass
class Rig:
    proxy: RunningProxy
    broker: ScriptedBroker

    async def ctl(self, line: str) -> str:
        return await ctl(self.proxy.control_socket, line)

    async def ok(self, line: str) -> None:
        """A control command that succeeds silently."""
        reply = await self.ctl(line)
        assert reply == "", f"{line!r} answered {reply!r}"

    async def add_backend(self, name: str, port: int) -> None:
        await self.ok(f"BACKEND ADD {name} dc1 127.0.0.1 {port}")

    async def client(self) -> RawClient:
        return await RawClient.connect(self.proxy.port)

    async def conn(self) -> dict[int, dict[str, str]]:
        """CONN, parsed: session id -> its key=value fields."""
        sessions = {}
        for line in (await self.ctl("CONN")).splitlines():
            fields = dict(token.split("=", 1) for token in line.split() if "=" in token)
            sessions[int(fields["id"])] = fields
        return sessions

    async def session_of(self, client: RawClient) -> tuple[int, dict[str, str]]:
        """The CONN entry of ``client`` (matched by its local port)."""
        port = client.writer.get_extra_info("sockname")[1]
        for session_id, fields in (await self.conn()).items():
            if fields["ingressRemote"] == f"127.0.0.1:{port}":
                return session_id, fields
        raise AssertionError(f"no session for client port {port} in CONN")

    async def conn_until(self, client: RawClient, **expected: str) -> dict[str, str]:
        """Poll CONN until ``client``'s entry shows ``expected`` (e.g. disconnected="Y")."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while True:
            _, fields = await self.session_of(client)
            if all(fields.get(key) == value for key, value in expected.items()):
                return fields
            if loop.time() > deadline:
                raise AssertionError(f"CONN shows {fields}, expected {expected}")
            await asyncio.sleep(0.01)

    async def held_at_open(self, pipelined: bytes = b"") -> tuple[RawClient, BrokerConnection]:
        """A client that sent its handshake (plus ``pipelined``), its broker connection
        planned to hold at Open and now holding (``connection.release()`` lets it go)."""
        self.broker.plan(Script(at=Stage.OPEN, do=Hold()))
        index = len(self.broker.connections)
        client = await self.client()
        await client.send(handshake_bytes("/") + pipelined)
        connection = await self.broker.connection(index)
        await connection.until(lambda: connection.held, "the broker to hold at Open")
        return client, connection

    async def open_session(self, vhost: str = "/", pipelined: bytes = b"") -> Live:
        """Connect a client through the whole handshake (plus ``pipelined`` after Open)."""
        index = len(self.broker.connections)
        client = await self.client()
        await client.send(handshake_bytes(vhost) + pipelined)
        answer = await open_answer(client)
        assert answer == ConnectionOpenOk(""), answer
        broker = await self.broker.opened(index)
        session_id, fields = await self.session_of(client)
        assert (fields["disconnected"], fields["paused"]) == ("N", "N")
        return Live(client, broker, session_id)


@contextlib.asynccontextmanager
async def rig_for(
    tmp_socket_dir: str, broker: ScriptedBroker, **overrides: object
) -> AsyncIterator[Rig]:
    """A proxy (``FAST`` deadlines, then ``overrides``) with vhost / mapped to ``broker``."""
    settings = {**FAST, **overrides}
    async with running_proxy(tmp_socket_dir, simple=False, **settings) as proxy:
        rig = Rig(proxy, broker)
        await rig.add_backend("scripted", broker.port)
        await rig.ok("MAP BACKEND / scripted")
        try:
            yield rig
        finally:
            # Clients gone first: the proxy's shutdown then has no session to drain.
            for client in OPEN_CLIENTS:
                client.abort()


# -- reading the client's side byte for byte ------------------------------------------------
async def open_answer(client: RawClient) -> Method:
    """The first method after Start and Tune: what answered the client's Open."""
    while True:
        method = await client.read_method()
        if not isinstance(method, (ConnectionStart, ConnectionTune)):
            return method


async def read_exactly(client: RawClient, size: int, timeout: float = TIMEOUT) -> bytes:
    """Exactly ``size`` bytes from the client's stream (what its frame reader held first)."""
    data = client.frames.take_buffered()
    if len(data) > size:
        client.frames.feed(data[size:])
        return data[:size]
    if len(data) < size:
        data += await asyncio.wait_for(client.reader.readexactly(size - len(data)), timeout)
    return data


async def read_to_eof(client: RawClient, timeout: float = TIMEOUT) -> bytes:
    """Everything until the proxy closes the client's socket."""
    return client.frames.take_buffered() + await asyncio.wait_for(client.reader.read(), timeout)


# -- frames ------------------------------------------------------------------------------
def message(channel: int, body: bytes, frame_max: int = 131072) -> bytes:
    """Basic.Publish, its content header and ``body`` in frames of at most ``frame_max``."""
    exchange, key = b"", b"q"
    publish = struct.pack(">HHH", 60, 40, 0) + bytes([len(exchange)]) + exchange
    publish += bytes([len(key)]) + key + b"\x00"
    header = struct.pack(">HHQH", 60, 0, len(body), 0)
    out = encode_frame(FRAME_METHOD, channel, publish) + encode_frame(FRAME_HEADER, channel, header)
    step = frame_max - 8
    for start in range(0, len(body), step):
        out += encode_frame(FRAME_BODY, channel, body[start : start + step])
    return out


def chunks(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` cut at the given sizes, the rest as the last piece."""
    pieces, start = [], 0
    for size in sizes:
        pieces.append(data[start : start + size])
        start += size
    pieces.append(data[start:])
    return [piece for piece in pieces if piece]
