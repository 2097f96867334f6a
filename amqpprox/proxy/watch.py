"""Deadlines on peers that went quiet or away where the event loop cannot see it.

``BrokerSilence``: with heartbeats on, a broker we are reading from that said nothing
for two heartbeat intervals has stopped (SIGSTOP, a hung host); the session tells its
client so (``Session.broker_silent``) rather than leaving it waiting for as long as the
broker hangs. Its silence while we are not reading it (the client is slow) is ours, and
does not count. One timer per session with heartbeats on, re-armed from the last read,
never a cost per frame. Knows nothing of AMQP: the adapter gives the limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from amqpprox.core.sessions import SessionBase
from amqpprox.proxy.gate import ReadGate

__all__ = ["BrokerSilence"]

_monotonic = time.monotonic


class BrokerSilence:
    """Calls ``on_silent(seconds)`` once the broker has been silent for ``limit`` seconds."""

    __slots__ = ("_gate", "_limit", "_loop", "_on_silent", "_session", "_timer")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        session: SessionBase,
        gate: ReadGate,
        limit: float,
        on_silent: Callable[[float], None],
    ) -> None:
        self._loop = loop
        self._session = session
        self._gate = gate  # the broker side's: while it holds, we are not reading
        self._limit = limit
        self._on_silent = on_silent
        self._timer: asyncio.TimerHandle | None = loop.call_later(limit, self._check)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if self._session.finished:
            return
        silent = _monotonic() - self._session.last_out_at
        if silent < self._limit or self._gate.holds:
            wait = self._limit - silent if silent < self._limit else self._limit
            self._timer = self._loop.call_later(wait, self._check)
            return
        self._on_silent(silent)
