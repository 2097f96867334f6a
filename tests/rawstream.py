"""A raw-frame RabbitMQ Streams client for tests: handshake steps and error paths.

Built on ``amqpprox.stream.codec`` for reading, but every request is encoded here with
``struct`` so the tests do not trust the proxy's own encoders for what a client sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator

import pytest

from amqpprox.stream import codec

STREAM_HOST = "127.0.0.1"
STREAM_PORT = 5552
CREATE, DELETE = 0x000D, 0x000E  # the Create and Delete stream commands


def string(text: str) -> bytes:
    """A protocol string: int16 length, then the UTF-8 bytes."""
    raw = text.encode("utf-8", "surrogatepass")
    return struct.pack(">h", len(raw)) + raw


def request(key: int, correlation_id: int, body: bytes = b"") -> bytes:
    payload = struct.pack(">HHI", key, 1, correlation_id) + body
    return struct.pack(">I", len(payload)) + payload


def peer_properties(correlation_id: int = 1, props: dict[str, str] | None = None) -> bytes:
    items = props or {"product": "raw-test"}
    body = struct.pack(">i", len(items)) + b"".join(string(k) + string(v) for k, v in items.items())
    return request(codec.PEER_PROPERTIES, correlation_id, body)


def sasl_plain(user: str, password: str, correlation_id: int = 3) -> bytes:
    data = b"\0" + user.encode() + b"\0" + password.encode()
    body = string("PLAIN") + struct.pack(">i", len(data)) + data
    return request(codec.SASL_AUTHENTICATE, correlation_id, body)


def tune(frame_max: int = 1048576, heartbeat: int = 60) -> bytes:
    payload = struct.pack(">HHII", codec.TUNE, 1, frame_max, heartbeat)
    return struct.pack(">I", len(payload)) + payload


class RawStream:
    """One stream connection; ``frame()`` reads the next whole frame (deadline bound)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, host: str = STREAM_HOST) -> RawStream:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def frame(self, timeout: float = 5.0) -> codec.Frame:
        size = struct.unpack(">I", await asyncio.wait_for(self.reader.readexactly(4), timeout))
        payload = await asyncio.wait_for(self.reader.readexactly(size[0]), timeout)
        return codec.split(payload)

    async def frame_of(self, key: int, timeout: float = 5.0) -> codec.Frame:
        """The next frame with ``key`` (heartbeats and others skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            got = await self.frame(max(0.01, deadline - time.monotonic()))
            if got.key == key:
                return got

    async def close_frame(self) -> tuple[int, int, str]:
        """Read the peer's Close: its correlation id, code and reason."""
        got = await self.frame_of(codec.CLOSE)
        reader = codec.Reader(got.body)
        return reader.u32(), reader.u16(), reader.string()

    async def closed(self, timeout: float = 5.0) -> bool:
        """True once the peer closed the connection (EOF) within ``timeout``."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), timeout):
                pass
        except (ConnectionError, TimeoutError):
            return False
        return True

    async def handshake(self, user: str = "guest", password: str = "guest") -> None:
        """Up to (not including) Open: PeerProperties, SASL, Tune."""
        self.send(peer_properties(1))
        await self.frame_of(codec.PEER_PROPERTIES | codec.RESPONSE)
        self.send(request(codec.SASL_HANDSHAKE, 2))
        await self.frame_of(codec.SASL_HANDSHAKE | codec.RESPONSE)
        self.send(sasl_plain(user, password, 3))
        await self.frame_of(codec.SASL_AUTHENTICATE | codec.RESPONSE)
        await self.frame_of(codec.TUNE)
        self.send(tune())

    async def open(self, vhost: str, correlation_id: int = 4) -> tuple[int, dict[str, str]]:
        """Open ``vhost``: the response code and the connection properties."""
        self.send(request(codec.OPEN, correlation_id, string(vhost)))
        got = await self.frame_of(codec.OPEN | codec.RESPONSE)
        corr, code, props = codec.read_open_response(got.body)
        assert corr == correlation_id
        return code, dict(props)

    def close(self) -> None:
        self.writer.close()


def stream_port_answers() -> bool:
    try:
        with socket.create_connection((STREAM_HOST, STREAM_PORT), timeout=2):
            return True
    except OSError:
        return False


def ensure_stream_plugin(timeout: float = 60.0) -> None:
    """Enable rabbitmq_stream on the shared broker if 5552 does not answer; wait for it."""
    if stream_port_answers():
        return
    subprocess.run(
        ["rabbitmq-plugins", "enable", "rabbitmq_stream"], check=False, capture_output=True
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stream_port_answers():
            return
        time.sleep(0.2)  # polling a port with a deadline, not synchronisation by sleep
    raise RuntimeError("RabbitMQ Streams does not answer on 127.0.0.1:5552")


@pytest.fixture(scope="module", autouse=True)
def stream_plugin() -> None:
    """rabbitmq_stream answering on the shared broker (autouse where it is imported)."""
    ensure_stream_plugin()


@contextlib.asynccontextmanager
async def handshaked(port: int, host: str = STREAM_HOST) -> AsyncIterator[RawStream]:
    """A client connected to ``port`` and through ``handshake`` (up to Open); closed on
    exit."""
    client = await RawStream.connect(port, host)
    try:
        await client.handshake()
        yield client
    finally:
        client.close()
