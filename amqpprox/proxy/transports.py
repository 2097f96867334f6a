"""The asyncio protocols of a session's two sockets: events in, nothing decided here.

Each side hands its reads to ``on_data``, a plain attribute the session points at
whatever should see the bytes in its current phase (the client handshake, the relay,
a shaper, a hold, a discard), so the hot path never asks which phase it is in.
Write-buffer pressure on one side holds reading on the other (``proxy.gate``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from amqpprox.proxy.gate import Hold, ReadGate

if TYPE_CHECKING:
    from amqpprox.proxy.plane import DataPlane

__all__ = [
    "WRITE_BUFFER_HIGH",
    "WRITE_BUFFER_LOW",
    "BrokerSide",
    "ClientSide",
    "discard",
    "peer_address",
]

# Backpressure thresholds of each side's write buffer: large enough to keep a 1 MiB
# message moving in few reads, small enough to bound memory per session.
WRITE_BUFFER_HIGH = 1024 * 1024
WRITE_BUFFER_LOW = 256 * 1024


def discard(data: bytes) -> None:
    """Where a side's bytes go when nobody wants them any more."""


def peer_address(transport: asyncio.BaseTransport, key: str) -> tuple[str, int]:
    """``peername`` or ``sockname`` of a transport as (host, port); zeros if unknown."""
    address = transport.get_extra_info(key)
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return ("0.0.0.0", 0)


class _Side(asyncio.Protocol):
    """What both sides share: the sink for reads, the end callback, the peer's gate."""

    __slots__ = ("on_data", "on_lost", "peer_gate", "transport")

    def __init__(self) -> None:
        self.on_data: Callable[[bytes], None] = discard
        self.on_lost: Callable[[Exception | None], None] | None = None
        # The gate of the *other* side: our full write buffer stops it reading.
        self.peer_gate: ReadGate | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but implement it.
        self.transport = cast("asyncio.Transport", transport)
        self.transport.set_write_buffer_limits(WRITE_BUFFER_HIGH, WRITE_BUFFER_LOW)

    def data_received(self, data: bytes) -> None:
        self.on_data(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        on_lost = self.on_lost
        if on_lost is not None:
            on_lost(exc)

    def pause_writing(self) -> None:
        if self.peer_gate is not None:
            self.peer_gate.hold(Hold.PUSHBACK)

    def resume_writing(self) -> None:
        if self.peer_gate is not None:
            self.peer_gate.release(Hold.PUSHBACK)


class ClientSide(_Side):
    """A client's socket, accepted by a listener: it starts the session."""

    __slots__ = ("_client", "_listen_port", "_plane", "_secure", "node", "protocol")

    def __init__(
        self,
        plane: DataPlane,
        listen_port: int,
        secure: bool,
        client: tuple[str, int] | None = None,
        *,
        protocol: str = "amqp",
        node: str | None = None,
    ) -> None:
        super().__init__()
        self.protocol = protocol  # of the listener: "amqp" or "stream"
        self.node = node  # a stream node listener's backend
        self._plane = plane
        self._listen_port = listen_port
        self._secure = secure
        self._client = client  # from an ingress PROXY header; None: the socket's peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._plane.open_session(self, self._listen_port, self._secure, self._client)


class BrokerSide(_Side):
    """The broker's socket of one connection attempt of a session.

    Until the session takes the socket (``greet``), its reads are kept and its end
    remembered: uvloop reads a socket as soon as it is connected, before the task that
    connected it resumes, and a broker may speak first (to refuse).
    """

    __slots__ = ("_early", "_lost")

    def __init__(self) -> None:
        super().__init__()
        self._early: list[bytes] = []
        self._lost: tuple[Exception | None] | None = None
        self.on_data = self._early.append

    def connection_lost(self, exc: Exception | None) -> None:
        if self.on_lost is None:
            self._lost = (exc,)
        else:
            super().connection_lost(exc)

    def greet(self, greeting: bytes) -> None:
        """The session took the socket: send ``greeting`` (unless the broker has already
        gone: uvloop refuses writes then), then hand over what came before, to what reads
        and ends reach now."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(greeting)
        early, self._early = self._early, []
        if early:
            self.on_data(b"".join(early))
        lost, self._lost = self._lost, None
        if lost is not None and self.on_lost is not None:
            self.on_lost(lost[0])
