"""How a side of a session left: the reason, read from what the relay's scanners saw.

The rules are the protocol's-neutral part of an adapter's ``client_left`` and
``broker_left`` (``proxy.amqp091``, ``proxy.stream_adapter``): each adapter keeps its
scanners and says only how it tells a client that its broker went away.
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
