"""A scripted AMQP client over asyncio streams, for asserting bytes on the wire.

Uses the project's own codec to build frames and read replies; real-client behaviour is
covered by pika and aio-pika, this is for what those hide (exact Close codes and texts,
pipelining, malformed input).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from amqpprox.amqp.fields import encode_table
from amqpprox.amqp.frames import PROTOCOL_HEADER, Frame, FrameReader, NeedData, encode_frame
from amqpprox.amqp.methods import (
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpen,
    ConnectionStartOk,
    ConnectionTuneOk,
    Method,
    decode_method,
    encode_method,
)

CHANNEL_OPEN = encode_frame(1, 1, b"\x00\x14\x00\x0a\x00")  # Channel.Open(channel 1)
CHANNEL_OPEN_OK_IDS = (20, 11)


def start_ok(
    user: str = "guest", password: str = "guest", name: str = "rawamqp"
) -> ConnectionStartOk:
    props = encode_table(
        {
            "product": "rawamqp",
            "connection_name": name,
            "capabilities": {"authentication_failure_close": True},
        }
    )
    return ConnectionStartOk(props, "PLAIN", f"\0{user}\0{password}".encode(), "en_US")


def handshake_bytes(
    vhost: str = "/", user: str = "guest", password: str = "guest", heartbeat: int = 0
) -> bytes:
    """Everything a client sends up to Open, in one piece (as a pipelining client may)."""
    return (
        PROTOCOL_HEADER
        + encode_method(start_ok(user, password))
        + encode_method(ConnectionTuneOk(2047, 131072, heartbeat))
        + encode_method(ConnectionOpen(vhost))
    )


OPEN_CLIENTS: list[RawClient] = []


@pytest.fixture(autouse=True)
async def close_raw_clients() -> AsyncIterator[None]:
    """No scripted client outlives its test (imported by the conftests that use them)."""
    yield
    while OPEN_CLIENTS:
        client = OPEN_CLIENTS.pop()
        client.writer.close()
        with contextlib.suppress(Exception):
            await client.writer.wait_closed()


@dataclass
class RawClient:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    frames: FrameReader

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> RawClient:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        client = cls(reader, writer, FrameReader(1 << 20))
        OPEN_CLIENTS.append(client)  # closed after each test by tests/integration/conftest.py
        return client

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_frame(self, timeout: float = 5.0) -> Frame:
        while True:
            frame = self.frames.next_frame()
            if not isinstance(frame, NeedData):
                return frame
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not chunk:
                raise EOFError("connection closed")
            self.frames.feed(chunk)

    async def read_method(self, timeout: float = 5.0) -> Method:
        while True:
            frame = await self.read_frame(timeout)
            if frame.type == 1 and frame.channel == 0:
                return decode_method(frame.payload)

    async def open(self, vhost: str = "/", **kw: object) -> Method:
        """Run the whole handshake; returns what answered Open (OpenOk or Close)."""
        await self.send(handshake_bytes(vhost, **kw))  # type: ignore[arg-type]
        while True:
            method = await self.read_method()
            if type(method).__name__ not in ("ConnectionStart", "ConnectionTune"):
                return method

    async def read_eof(self, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.reader.read(), timeout)

    async def close_ok(self) -> None:
        await self.send(encode_method(ConnectionCloseOk()))

    async def close(self) -> Method:
        await self.send(encode_method(ConnectionClose(200, "bye")))
        return await self.read_method()

    def abort(self) -> None:
        self.writer.transport.abort()
