"""How a side of a session left: the reason, read from what the relay's scanners saw.

The rules are the protocol-neutral part of an adapter's ``client_left`` and
``broker_left`` (``proxy.amqp091``, ``proxy.stream_adapter``); ``Departures`` applies
them for both adapters: each keeps its scanners and heartbeat and says only whether the
client closed during its handshake and how it tells a client that its broker went away.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from amqpprox.core.sessions import CloseReason
from amqpprox.proxy.lifecycle import Phase


class Scanned(Protocol):
    """What a frame scanner has seen of one direction's closes."""

    close_seen: bool
    close_ok_seen: bool

    @property
    def at_boundary(self) -> bool: ...


def client_left(
    phase: Phase, sent: Scanned, received: Scanned, closed_in_handshake: bool
) -> CloseReason:
    """Why the session ended when the client's socket closed (``sent``: the client's
    frames, ``received``: the broker's)."""
    if sent.close_seen or (phase is Phase.HANDSHAKE and closed_in_handshake):
        return CloseReason.CLIENT_GRACEFUL
    if received.close_seen and sent.close_ok_seen:
        return CloseReason.BROKER_SNAPPED
    return CloseReason.CLIENT_SNAPPED


def broker_left(
    phase: Phase, sent: Scanned, received: Scanned, lost_notice: Callable[[], bytes]
) -> tuple[CloseReason, bytes]:
    """Why the session ended when the broker's socket closed, and what to tell the client:
    the protocol's close (``lost_notice``) when the broker vanished between two frames of
    a live session, rather than leaving it a bare TCP close."""
    if sent.close_seen:
        return CloseReason.CLIENT_GRACEFUL, b""
    if phase is Phase.CLOSING_BROKER:
        return CloseReason.PROXY_GRACEFUL, b""
    if phase in (Phase.ACTIVE, Phase.PAUSED) and received.at_boundary and not received.close_seen:
        return CloseReason.BROKER_SNAPPED, lost_notice()
    return CloseReason.BROKER_SNAPPED, b""


class Departures:
    """What a protocol adapter answers from its scanners alone: how each side left, and
    how long the broker may say nothing (two heartbeat intervals, AMQP 0-9-1 §4.2.7 and
    the stream protocol's alike, or None when heartbeats are off)."""

    in_scanner: Scanned  # the client's frames
    out_scanner: Scanned  # the broker's
    heartbeat: int  # seconds, as the client's handshake set it for both sides

    def client_closed_in_handshake(self) -> bool:
        raise NotImplementedError

    def broker_lost_notice(self) -> bytes:
        """The protocol's close telling a live client that its broker went away."""
        raise NotImplementedError

    def client_left(self, phase: Phase) -> CloseReason:
        """Why the session ended when the client's socket closed."""
        closed = self.client_closed_in_handshake()
        return client_left(phase, self.in_scanner, self.out_scanner, closed)

    def broker_left(self, phase: Phase) -> tuple[CloseReason, bytes]:
        """Why the session ended when the broker's socket closed; what to tell the client."""
        return broker_left(phase, self.in_scanner, self.out_scanner, self.broker_lost_notice)

    def silence_limit(self) -> float | None:
        """How long the broker may say nothing before it counts as stopped."""
        return 2.0 * self.heartbeat if self.heartbeat > 0 else None
