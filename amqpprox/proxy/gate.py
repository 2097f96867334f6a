"""Whether one side of a session reads: one place, with named reasons to hold it.

A side's socket stops reading while any hold is on (the other side's write buffer is
full, the session is paused, a data-rate limit is spent, read coalescing waits) and
reads again when the last one is released. Pause, shaping and coalescing each add and
remove their own hold; none of them touches the transport or another's reason. Knows
nothing of AMQP or of sessions.
"""

from __future__ import annotations

import asyncio
import enum

__all__ = ["Hold", "ReadGate"]


class Hold(enum.IntFlag):
    """Why a side is not read."""

    PUSHBACK = 1  # the other side's write buffer is over its high-water mark
    PAUSED = 2  # SESSION/VHOST PAUSE: the client's frames wait
    RATE = 4  # a data-rate limit has no tokens left (proxy.shaping)
    COALESCE = 8  # read coalescing leaves the socket unread for a window


class ReadGate:
    """The holds on one side's reading, and the transport they apply to."""

    __slots__ = ("_holds", "_reading", "_transport")

    def __init__(self) -> None:
        self._holds = Hold(0)
        self._transport: asyncio.Transport | None = None
        self._reading = True

    @property
    def holds(self) -> Hold:
        return self._holds

    def attach(self, transport: asyncio.Transport | None) -> None:
        """Apply the holds to ``transport`` (a new socket starts reading), or detach."""
        self._transport = transport
        self._reading = True
        self._apply()

    def hold(self, reason: Hold) -> None:
        if not self._holds & reason:
            self._holds |= reason
            self._apply()

    def release(self, reason: Hold) -> None:
        if self._holds & reason:
            self._holds &= ~reason
            self._apply()

    def set(self, reason: Hold, on: bool) -> None:
        """Hold (``on``) or release for ``reason``: the form a callback takes."""
        if on:
            self.hold(reason)
        else:
            self.release(reason)

    def _apply(self) -> None:
        transport = self._transport
        want = not self._holds
        if transport is None or want is self._reading or transport.is_closing():
            return
        self._reading = want
        if want:
            transport.resume_reading()
        else:
            transport.pause_reading()
