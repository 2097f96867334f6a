"""The hot path: bytes read on one side, counted, scanned for frame boundaries, written
to the other.

``Relay`` knows frames (through the scanners the protocol adapter gives it), never
handshakes or Close methods. Its two entry points are what a live session's sockets
deliver to (``client_data``/``broker_data``); everything a feature adds (data-rate
shaping, read coalescing, a trace) wraps them instead of adding a branch here, so a
feature that is off costs the relay nothing. The counters are plain ints on the
session (``core.sessions.SessionBase``), read by the admin plane at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio

    from amqpprox.core.sessions import SessionBase

__all__ = ["FrameCounter", "Relay"]

_monotonic = time.monotonic


class FrameCounter(Protocol):
    """A protocol's frame scanner, as the relay uses it (``amqp.scanner.FrameScanner``)."""

    @property
    def frames(self) -> int: ...
    @property
    def error(self) -> str: ...
    def feed(self, data: bytes) -> int: ...
    @property
    def at_boundary(self) -> bool: ...
    def boundary_offset(self, data: bytes) -> int: ...


class Relay:
    """Both directions of one live session."""

    __slots__ = (
        "broker",
        "client",
        "in_scanner",
        "on_violation",
        "out_scanner",
        "session",
    )

    def __init__(
        self,
        session: SessionBase,
        client: asyncio.Transport,
        broker: asyncio.Transport,
        scanners: tuple[FrameCounter, FrameCounter],
        *,
        on_violation: Callable[[str, bool], None],
    ) -> None:
        """``scanners``: the client's frames' and the broker's (the adapter's)."""
        self.session = session
        self.client = client
        self.broker = broker
        self.in_scanner, self.out_scanner = scanners
        self.on_violation = on_violation  # (reason, from_client): the stream broke framing

    def client_data(self, data: bytes) -> None:
        session = self.session
        session.in_bytes += len(data)
        session.in_packets += 1
        session.last_in_at = _monotonic()
        scanner = self.in_scanner
        bad = scanner.feed(data)
        session.in_frames = scanner.frames
        if bad < 0:
            self.broker.write(data)
            return
        self.broker.write(data[:bad])
        self.on_violation(scanner.error, True)

    def broker_data(self, data: bytes) -> None:
        session = self.session
        session.out_bytes += len(data)
        session.out_packets += 1
        session.last_out_at = _monotonic()
        scanner = self.out_scanner
        bad = scanner.feed(data)
        session.out_frames = scanner.frames
        if bad < 0:
            self.client.write(data)
            return
        self.client.write(data[:bad])
        self.on_violation(scanner.error, False)

    def broker_data_until_boundary(self, data: bytes) -> bool:
        """Relay ``data`` up to its first frame boundary; True once that boundary is reached.

        For a close that must not cut a frame the broker is in the middle of sending; what
        follows the boundary is not relayed.
        """
        session = self.session
        session.out_bytes += len(data)
        session.out_packets += 1
        session.last_out_at = _monotonic()
        scanner = self.out_scanner
        cut = scanner.boundary_offset(data)
        if cut < 0:
            scanner.feed(data)
            session.out_frames = scanner.frames
            self.client.write(data)
            return False
        scanner.feed(data[:cut])
        session.out_frames = scanner.frames
        self.client.write(data[:cut])
        return True
