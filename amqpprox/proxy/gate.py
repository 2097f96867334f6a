"""Whether one side of a session reads: one place, with named reasons to hold it.

A side's socket stops reading while any hold is on (the other side's write buffer is
full, the session is paused, a data-rate limit is spent, read coalescing waits) and
reads again when the last one is released. Pause, shaping and coalescing each add and
remove their own hold; none of them touches the transport or another's reason.

A socket that is not read does not report its peer's FIN or RST either. So while a
hold other than coalescing's short wait is on, the gate looks at the socket every
``PROBE_INTERVAL`` seconds (``poll`` for a hang-up, without reading) and calls
``on_peer_gone`` when the peer has left. Knows nothing of AMQP or of sessions.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Callable

__all__ = ["Hold", "ReadGate"]


class Hold:
    """Why a side is not read: bits of a plain int (an ``enum.IntFlag`` costs about ten
    times as much per hold and release, and coalescing holds once per window)."""

    PUSHBACK = 1  # the other side's write buffer is over its high-water mark
    PAUSED = 2  # SESSION/VHOST PAUSE: the client's frames wait
    RATE = 4  # a data-rate limit has no tokens left (proxy.shaping)
    COALESCE = 8  # read coalescing leaves the socket unread for a window


# How often a held socket is checked for its peer's end: the bound on how long a
# session can look alive after a peer it is not reading from has gone.
PROBE_INTERVAL = 1.0
_PROBED = Hold.PUSHBACK | Hold.PAUSED | Hold.RATE  # coalescing's wait is short anyway
_GONE = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)


class ReadGate:
    """The holds on one side's reading, and the transport they apply to."""

    __slots__ = ("_holds", "_probe", "_reading", "_transport", "on_peer_gone")

    def __init__(self, on_peer_gone: Callable[[], None] | None = None) -> None:
        self._holds = 0
        self._transport: asyncio.Transport | None = None
        self._reading = True
        self._probe: asyncio.TimerHandle | None = None
        self.on_peer_gone = on_peer_gone

    @property
    def holds(self) -> int:
        return self._holds

    def attach(self, transport: asyncio.Transport | None) -> None:
        """Apply the holds to ``transport`` (a new socket starts reading), or detach."""
        self._transport = transport
        self._reading = True
        self._apply()

    def hold(self, reason: int) -> None:
        if not self._holds & reason:
            self._holds |= reason
            self._apply()

    def release(self, reason: int) -> None:
        if self._holds & reason:
            self._holds &= ~reason
            self._apply()

    def set(self, reason: int, on: bool) -> None:
        """Hold (``on``) or release for ``reason``: the form a callback takes."""
        if on:
            self.hold(reason)
        else:
            self.release(reason)

    def _apply(self) -> None:
        transport = self._transport
        holds = self._holds
        want = not holds
        if holds & _PROBED:
            if self._probe is None and transport is not None:
                self._watch(True)
        elif self._probe is not None:
            self._watch(False)
        if transport is None or want is self._reading or transport.is_closing():
            return
        self._reading = want
        if want:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def _watch(self, on: bool) -> None:
        if not on or self.on_peer_gone is None:
            if self._probe is not None:
                self._probe.cancel()
                self._probe = None
        elif self._probe is None:
            self._probe = asyncio.get_running_loop().call_later(PROBE_INTERVAL, self._look)

    def _look(self) -> None:
        self._probe = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if peer_gone(transport):
            if self.on_peer_gone is not None:
                self.on_peer_gone()
            return
        self._watch(bool(self._holds & _PROBED))


def peer_gone(transport: asyncio.BaseTransport) -> bool:
    """True if the socket's peer has closed or reset it (unread data notwithstanding)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        poller = select.poll()
        poller.register(sock.fileno(), _GONE)
        return any(events & _GONE for _fd, events in poller.poll(0))
    except (OSError, ValueError):  # closed under us: its own callbacks report that
        return False
