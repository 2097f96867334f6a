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


_Counters = tuple[float, int, int, int, int]  # monotonic time, in/out bytes, in/out frames
ZERO = Rates()


def _rates(before: _Counters, after: _Counters) -> Rates:
    elapsed = after[0] - before[0]
    if elapsed <= 0:
        return ZERO
    d = [max(0, a - b) / elapsed for a, b in zip(after[1:], before[1:], strict=True)]
    return Rates(d[0], d[1], d[2], d[3])


class Throughput:
    """Rates of the whole proxy (with history) and of each live session."""

    def __init__(
        self, ctx: Context, *, interval: float = SAMPLE_SECONDS, keep: float = HISTORY_SECONDS
    ) -> None:
        self.ctx = ctx
        self.interval = interval
        self.window = keep
        self.history: deque[Point] = deque(maxlen=max(2, int(keep / interval)))
        self._last_total: _Counters | None = None
        self._last_session: dict[int, _Counters] = {}
        self._session_rates: dict[int, Rates] = {}

    @property
    def current(self) -> Rates:
        return self.history[-1].rates if self.history else ZERO

    def of_session(self, session_id: int) -> Rates:
        return self._session_rates.get(session_id, ZERO)

    def sample(self) -> None:
        mono, wall = time.monotonic(), time.time()
        totals = ops.overview(self.ctx).totals
        now_total: _Counters = (
            mono,
            totals["in_bytes"],
            totals["out_bytes"],
            totals["in_frames"],
            totals["out_frames"],
        )
        if self._last_total is not None:
            self.history.append(Point(wall, _rates(self._last_total, now_total)))
        self._last_total = now_total
        seen: dict[int, _Counters] = {}
        rates: dict[int, Rates] = {}
        for s in self.ctx.sessions:
            counters = (mono, s.in_bytes, s.out_bytes, s.in_frames, s.out_frames)
            before = self._last_session.get(s.id)
            if before is not None:
                rates[s.id] = _rates(before, counters)
            seen[s.id] = counters
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
