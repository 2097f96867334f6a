"""The read-coalescing rule (proxy.coalescing), read by read, on a real event loop.

Times are given explicitly (``previous``, ``now``, ``other_side_at``), so the rule is
tested without waiting; only the window's end runs the loop's timer (a 1 ms window).
"""

from __future__ import annotations

import asyncio

from amqpprox.proxy.coalescing import MAX_READ, MIN_READ, STREAK, STREAMING_GAP, ReadCoalescer
from tests.polling import until

GAP = STREAMING_GAP / 3  # well inside the streaming gap


def _ignore(held: bool) -> None:
    del held


class Side:
    """One side's coalescer (paired with the other side's) and the reading decisions it
    asked for."""

    def __init__(self, loop: asyncio.AbstractEventLoop, window: float = 0.001) -> None:
        self.changes: list[bool] = []
        self.coalescer, self.other = ReadCoalescer.pair(
            loop, window, self._changed, lambda held: None
        )
        self.at = 100.0  # this side's last read
        self.other_at = 0.0  # the other side's last read

    def _changed(self, held: bool) -> None:
        self.changes.append(held)

    def read(self, size: int = 2048, gap: float = GAP, *, at_boundary: bool = True) -> bool:
        previous, self.at = self.at, self.at + gap
        return self.coalescer.after_read(size, previous, self.at, self.other_at, at_boundary)

    def other_side_reads(self) -> None:
        """A small read on the other side (one that never starts a wait there)."""
        last, previous = self.at, self.other_at
        self.at += GAP
        self.other_at = self.at
        assert not self.other.after_read(MIN_READ - 1, previous, self.other_at, last, True)


async def test_a_streak_of_reads_starts_a_wait_and_the_window_ends_it() -> None:
    side = Side(asyncio.get_running_loop())
    started = [side.read() for _ in range(STREAK)]
    assert started == [False] * (STREAK - 1) + [True]
    assert side.coalescer.held
    assert side.changes == [True]  # the session was told to stop reading this side
    await until(lambda: not side.coalescer.held, "the 1 ms window to run out")
    assert side.changes == [True, False]
    # The first read after a wait continues the stream, however long the wait was.
    assert side.read(gap=0.01)
    assert side.coalescer.held


async def test_reads_that_alternate_with_the_other_side_never_wait() -> None:
    side = Side(asyncio.get_running_loop())
    for _ in range(5 * STREAK):
        assert not side.read()
        side.other_side_reads()
    assert side.changes == []


async def test_slow_small_and_large_reads_break_or_end_no_streak() -> None:
    side = Side(asyncio.get_running_loop())
    for _ in range(STREAK - 1):
        side.read()
    assert not side.read(gap=STREAMING_GAP * 2)  # too late: the streak starts again
    for _ in range(STREAK - 2):
        side.read()
    assert not side.read(size=MIN_READ - 1)  # too small: so does it
    for _ in range(STREAK):
        assert not side.read(size=MAX_READ)  # a backlog builds a streak but never waits
    assert not side.read(at_boundary=False)  # the rest of a frame is on its way
    assert side.read()
    assert side.changes == [True]


async def test_the_other_side_ends_a_wait_at_once() -> None:
    side = Side(asyncio.get_running_loop(), window=60.0)
    for _ in range(STREAK):
        side.read()
    assert side.coalescer.held
    side.other_side_reads()
    assert not side.coalescer.held
    assert side.changes == [True, False]
    # ... and the other side's read broke the streak.
    assert not side.read()
    side.other_side_reads()  # not waiting: nothing to tell the session
    assert side.changes == [True, False]
