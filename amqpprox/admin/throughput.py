"""Live throughput for the dashboard: a one-second sampler over the core snapshots.

Once a second it reads the traffic totals of ``core.operations.overview`` (live sessions
plus removed ones, so they never go backwards) and each live session's counters, and
keeps per-second rates: a ring of the last minutes for the overview chart and the latest
rate of every session for the sessions table. It reads plain ints the relay already
keeps; nothing runs per frame. The task is owned by the admin app (``cleanup_ctx``).
Must not import ``proxy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from amqpprox.core import operations as ops
from amqpprox.core.context import Context

SAMPLE_SECONDS = 1.0
HISTORY_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Rates:
    """Per-second rates, client->broker (``in``) and broker->client (``out``)."""

    in_bytes: float = 0.0
    out_bytes: float = 0.0
    in_frames: float = 0.0
    out_frames: float = 0.0


@dataclass(frozen=True, slots=True)
class Point:
    at: float  # Unix time of the sample
    rates: Rates


_Counters = tuple[int, int, int, int]  # in/out bytes, in/out frames
ZERO = Rates()


def _rates(before: _Counters, after: _Counters, elapsed: float) -> Rates:
    if elapsed <= 0:
        return ZERO
    return Rates(
        max(0, after[0] - before[0]) / elapsed,
        max(0, after[1] - before[1]) / elapsed,
        max(0, after[2] - before[2]) / elapsed,
        max(0, after[3] - before[3]) / elapsed,
    )


class Throughput:
    """Rates of the whole proxy (with history) and of each live session."""

    def __init__(
        self, ctx: Context, *, interval: float = SAMPLE_SECONDS, keep: float = HISTORY_SECONDS
    ) -> None:
        self.ctx = ctx
        self.interval = interval
        self.window = keep
        self.history: deque[Point] = deque(maxlen=max(2, int(keep / interval)))
        self._last_mono: float | None = None
        self._last_total: _Counters | None = None
        self._last_session: dict[int, _Counters] = {}
        self._session_rates: dict[int, Rates] = {}  # sessions that moved bytes: idle ones read ZERO

    @property
    def current(self) -> Rates:
        return self.history[-1].rates if self.history else ZERO

    def of_session(self, session_id: int) -> Rates:
        return self._session_rates.get(session_id, ZERO)

    def sample(self) -> None:
        mono, wall = time.monotonic(), time.time()
        elapsed = 0.0 if self._last_mono is None else mono - self._last_mono
        self._last_mono = mono
        totals = ops.overview(self.ctx).totals
        now_total: _Counters = (
            totals["in_bytes"],
            totals["out_bytes"],
            totals["in_frames"],
            totals["out_frames"],
        )
        if self._last_total is not None:
            self.history.append(Point(wall, _rates(self._last_total, now_total, elapsed)))
        self._last_total = now_total
        # With thousands of idle sessions this allocates nothing per idle session: its
        # counters tuple is kept as it was and its rate is ZERO (not stored).
        last = self._last_session
        seen: dict[int, _Counters] = {}
        rates: dict[int, Rates] = {}
        for s in self.ctx.sessions:
            sid = s.id
            before = last.get(sid)
            if (
                before is not None
                and before[0] == s.in_bytes
                and before[1] == s.out_bytes
                and before[2] == s.in_frames
                and before[3] == s.out_frames
            ):
                seen[sid] = before
                continue
            counters = (s.in_bytes, s.out_bytes, s.in_frames, s.out_frames)
            seen[sid] = counters
            if before is not None:
                rates[sid] = _rates(before, counters, elapsed)
        self._last_session = seen
        self._session_rates = rates

    def configure(self, *, interval: float, keep: float) -> None:
        """Change the sampling period and the history kept (the history starts over)."""
        self.interval = interval
        self.window = keep
        self.history = deque(maxlen=max(2, int(keep / interval)))

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)


THROUGHPUT = web.AppKey("dashboard_throughput", Throughput)
_BY_CONTEXT: weakref.WeakKeyDictionary[Context, Throughput] = weakref.WeakKeyDictionary()


def of(ctx: Context) -> Throughput | None:
    """The sampler of the admin app serving ``ctx``, if one is set up."""
    return _BY_CONTEXT.get(ctx)


def setup(app: web.Application, ctx: Context) -> Throughput:
    """Create the sampler and run it for as long as the admin app runs."""
    throughput = Throughput(ctx)
    app[THROUGHPUT] = throughput
    _BY_CONTEXT[ctx] = throughput

    async def sampler(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(throughput.run(), name="dashboard-throughput")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(sampler)
    return throughput
