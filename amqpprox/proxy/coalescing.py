"""Read coalescing (``--coalesceReadsMs``): a side that streams is read once per window.

By default a session relays every read the moment it arrives. A broker that streams
small deliveries then costs the proxy a wake-up, a read and a write per burst of a few
KB, and the client a wake-up per write. With a window set, each side of a session has a
``ReadCoalescer`` wrapped around the relay's entry point for that side (``wrap``), so it
sees every relayed read and sessions without a window pay nothing:

- the side *streams* once ``STREAK`` reads in a row each brought at least ``MIN_READ``
  bytes, each less than ``STREAMING_GAP`` after the one before (or just after a wait
  ended), with nothing read from the other side in between;
- a streaming side whose read ends at a frame boundary and brought less than
  ``MAX_READ`` bytes (a larger one is a backlog: read on) is then left unread for the
  window, so that the next read, and the write it becomes, carries everything that
  arrived meanwhile;
- a read from the other side ends the wait at once.

The two sides of a session are made together (``ReadCoalescer.pair``), each knowing the
other, so that a read on one side releases the other. A wait is a ``COALESCE`` hold on
that side's read gate (``proxy.gate``), set through the ``hold`` callback.

Request/reply traffic alternates sides and never builds a streak; a lone message split
over a few reads does not either. The price is on connections that stream one way: a
message there may wait up to the window (plus up to a millisecond: the event loop's
timers have millisecond resolution).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amqpprox.core.sessions import SessionBase
    from amqpprox.proxy.relay import FrameCounter

STREAMING_GAP = 0.0003  # seconds between two reads of a stream
MIN_READ = 1024  # a smaller read neither builds a streak nor starts a wait
MAX_READ = 65536  # a read this large or larger never starts a wait
STREAK = 8  # reads in a row that make a stream


class ReadCoalescer:
    """One side of one session: its streak, and whether it is being left unread."""

    __slots__ = (
        "_hold",
        "_loop",
        "_other",
        "_resumed",
        "_streak",
        "_timer",
        "_window",
        "held",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, window: float, hold: Callable[[bool], None]
    ) -> None:
        self._loop = loop
        self._window = window
        self._hold = hold  # True: stop reading this side; False: read it again
        self._other: ReadCoalescer | None = None  # the session's other side (pair)
        self._streak = 0
        self._resumed = False  # the previous read was the first after a wait
        self._timer: asyncio.TimerHandle | None = None
        self.held = False

    @staticmethod
    def pair(
        loop: asyncio.AbstractEventLoop,
        window: float,
        hold_client: Callable[[bool], None],
        hold_broker: Callable[[bool], None],
    ) -> tuple[ReadCoalescer, ReadCoalescer]:
        """The client's side and the broker's side of one session, each knowing the other."""
        client = ReadCoalescer(loop, window, hold_client)
        broker = ReadCoalescer(loop, window, hold_broker)
        client._other, broker._other = broker, client
        return client, broker

    def after_read(
        self, size: int, previous: float, now: float, other_side_at: float, at_boundary: bool
    ) -> bool:
        """Account one relayed read; True if it starts a wait (``held`` is then true).

        A wait of the other side ends here. ``previous`` and ``now``: when this side's
        previous read and this one came; ``other_side_at``: when the other side was last
        read; ``at_boundary``: the read ended between frames.
        """
        other = self._other
        if other is not None and other.held:
            other._stop_waiting()
        if (
            size >= MIN_READ
            and previous > other_side_at
            and (now - previous < STREAMING_GAP or self._resumed)
        ):
            self._streak += 1
        else:
            self._streak = 0
        self._resumed = False
        if self._streak < STREAK or size >= MAX_READ or not at_boundary or self.held:
            return False
        self.held = True
        self._timer = self._loop.call_later(self._window, self._window_over)
        self._hold(True)
        return True

    def _window_over(self) -> None:
        self._timer = None
        self._resumed = True
        self._stop_waiting()

    def _stop_waiting(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.held = False
        self._hold(False)


def wrap_pair(
    pair: tuple[ReadCoalescer, ReadCoalescer],
    session: SessionBase,
    scanners: tuple[FrameCounter, FrameCounter],
    entries: tuple[Callable[[bytes], None], Callable[[bytes], None]],
) -> tuple[Callable[[bytes], None], Callable[[bytes], None]]:
    """The relay's client and broker entry points, each followed by its side's rule."""
    inbound, outbound = pair
    in_scanner, out_scanner = scanners
    client_entry, broker_entry = entries

    def client_read(data: bytes) -> None:
        previous = session.last_in_at
        client_entry(data)
        if not session.finished and inbound.after_read(
            len(data), previous, session.last_in_at, session.last_out_at, in_scanner.at_boundary
        ):
            session.in_coalesce_waits += 1

    def broker_read(data: bytes) -> None:
        previous = session.last_out_at
        broker_entry(data)
        if not session.finished and outbound.after_read(
            len(data), previous, session.last_out_at, session.last_in_at, out_scanner.at_boundary
        ):
            session.out_coalesce_waits += 1

    return client_read, broker_read
