"""Data-rate limits of one session: LIMIT DATA_RATE, DATA_RATE_ALARM and OUT_DATA_RATE.

Only sessions with a data limit pay for it: ``configure`` gives that session a
``Shaper`` whose gated ``client_data``/``broker_data`` the session puts in front of its
relay (``Session.rewire``), so the relay of every other session runs exactly as before,
without a single extra branch.

A gate is a token bucket refilled at the rate, holding at most one second's worth.
A read that fits is forwarded at once. A read that does not is forwarded as far as the
tokens go; the rest waits in the gate's backlog and that side's socket stops reading
(a ``RATE`` hold on the side's read gate, ``proxy.gate``). A timer then forwards the
backlog in small slices as tokens come back and resumes reading once it is empty. So the
sender is slowed by TCP itself; nothing is dropped, and at most one read per direction
is held (reading stops while it is).

The alarm (DATA_RATE_ALARM) costs no per-read work either: a one-second timer compares
the session's client->broker byte counter with the threshold and logs, as the original,
``Data Rate Alarm: Hit <n> bytes/s`` when the last second went over it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from amqpprox.proxy.gate import Hold

if TYPE_CHECKING:
    from collections.abc import Callable

    from amqpprox.core.model import Limits
    from amqpprox.proxy.session import Session

log = logging.getLogger("amqpprox.limits")

TICK = 0.02  # seconds between backlog slices: smooth at any rate, cheap for a few sessions
ALARM_WINDOW = 1.0
_monotonic = time.monotonic


class _Gate:
    """A token bucket with the bytes it could not pass yet."""

    __slots__ = ("backlog", "rate", "stamp", "timer", "tokens")

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.stamp = _monotonic()
        self.backlog = bytearray()
        self.timer: asyncio.TimerHandle | None = None

    def refill(self) -> None:
        now = _monotonic()
        self.tokens = min(float(self.rate), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, available: int) -> int:
        """How many of ``available`` bytes may pass now (and spend their tokens)."""
        n = min(available, max(0, int(self.tokens)))
        self.tokens -= n
        return n

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Shaper:
    """The data limits of one session."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.inbound: _Gate | None = None
        self.outbound: _Gate | None = None
        self.alarm: int | None = None
        self._alarm_timer: asyncio.TimerHandle | None = None
        self._alarm_mark = 0
        self._loop = asyncio.get_running_loop()
        # The chain below the shaper (the relay, or coalescing around it): ``wrap``.
        self._to_broker: Callable[[bytes], None] = session.deliver_client
        self._to_client: Callable[[bytes], None] = session.deliver_broker

    # -- configuration ------------------------------------------------------------------
    def configure(self, limits: Limits) -> None:
        session = self.session
        self.inbound = self._regate(self.inbound, limits.data_rate, inbound=True)
        self.outbound = self._regate(self.outbound, limits.out_data_rate, inbound=False)
        session.rewire()
        self.alarm = limits.data_rate_alarm
        if self.alarm is None and self._alarm_timer is not None:
            self._alarm_timer.cancel()
            self._alarm_timer = None
        elif self.alarm is not None and self._alarm_timer is None:
            self._alarm_mark = session.in_bytes
            self._alarm_timer = self._loop.call_later(ALARM_WINDOW, self._alarm_tick)

    def wrap(
        self, client: Callable[[bytes], None], broker: Callable[[bytes], None]
    ) -> tuple[Callable[[bytes], None], Callable[[bytes], None]]:
        """The session's live chains with this shaper's gates in front, where it has them."""
        self._to_broker, self._to_client = client, broker
        return (
            self.client_data if self.inbound is not None else client,
            self.broker_data if self.outbound is not None else broker,
        )

    @property
    def idle(self) -> bool:
        return self.inbound is None and self.outbound is None and self.alarm is None

    def _regate(self, gate: _Gate | None, rate: int | None, *, inbound: bool) -> _Gate | None:
        if rate is None:
            if gate is not None:
                gate.cancel()
                self._flush(gate, inbound=inbound)
            return None
        if gate is None:
            return _Gate(rate)
        gate.rate = rate
        gate.tokens = min(gate.tokens, float(rate))
        return gate

    def _flush(self, gate: _Gate, *, inbound: bool) -> None:
        """Hand a removed gate's backlog on as it is, and let the socket read."""
        data = bytes(gate.backlog)
        gate.backlog.clear()
        self._release_hold(inbound=inbound)
        if data and not self.session.finished:
            if inbound:
                self.session.deliver_client(data)
            else:
                self.session.deliver_broker(data)

    # -- client -> broker ---------------------------------------------------------------
    def client_data(self, data: bytes) -> None:
        session, gate = self.session, self.inbound
        if gate is None or not (session.relaying or gate.backlog):
            self._to_broker(data)
            return
        if gate.backlog:
            gate.backlog += data
            return
        gate.refill()
        n = gate.take(len(data))
        if n == len(data):
            self._to_broker(data)
            return
        gate.backlog += data[n:]
        session.client_gate.hold(Hold.RATE)
        if n:
            self._to_broker(data[:n])
        gate.timer = self._loop.call_later(TICK, self._inbound_tick)

    def _inbound_tick(self) -> None:
        self._tick(inbound=True)

    # -- broker -> client ---------------------------------------------------------------
    def broker_data(self, data: bytes) -> None:
        session, gate = self.session, self.outbound
        if gate is None or not (session.relaying or gate.backlog):
            self._to_client(data)
            return
        if gate.backlog:
            gate.backlog += data
            return
        gate.refill()
        n = gate.take(len(data))
        if n == len(data):
            self._to_client(data)
            return
        gate.backlog += data[n:]
        session.broker_gate.hold(Hold.RATE)
        if n:
            self._to_client(data[:n])
        gate.timer = self._loop.call_later(TICK, self._outbound_tick)

    def _outbound_tick(self) -> None:
        self._tick(inbound=False)

    def _tick(self, *, inbound: bool) -> None:
        """Pass a slice of a direction's backlog as tokens came back; read on once empty."""
        session = self.session
        gate = self.inbound if inbound else self.outbound
        if gate is None:
            return
        gate.timer = None
        if session.ended:
            gate.backlog.clear()
            self._release_hold(inbound=inbound)
            return
        if not session.relaying:  # paused or closing now: the session decides what to do
            self._flush(gate, inbound=inbound)
            return
        gate.refill()
        n = gate.take(len(gate.backlog))
        if n:
            chunk = bytes(gate.backlog[:n])
            del gate.backlog[:n]
            (self._to_broker if inbound else self._to_client)(chunk)
        if gate.backlog:
            tick = self._inbound_tick if inbound else self._outbound_tick
            gate.timer = self._loop.call_later(TICK, tick)
        else:
            self._release_hold(inbound=inbound)

    def _release_hold(self, *, inbound: bool) -> None:
        session = self.session
        (session.client_gate if inbound else session.broker_gate).release(Hold.RATE)

    # -- alarm --------------------------------------------------------------------------
    def _alarm_tick(self) -> None:
        self._alarm_timer = None
        session, alarm = self.session, self.alarm
        if alarm is None or session.finished:
            return
        moved = session.in_bytes - self._alarm_mark
        self._alarm_mark = session.in_bytes
        if moved > alarm:
            log.info(
                "Data Rate Alarm: Hit %d bytes/s (session %d, vhost %s: %d bytes in a second)",
                alarm,
                session.id,
                session.vhost,
                moved,
            )
        self._alarm_timer = self._loop.call_later(ALARM_WINDOW, self._alarm_tick)

    def stop(self) -> None:
        for gate in (self.inbound, self.outbound):
            if gate is not None:
                gate.cancel()
        if self._alarm_timer is not None:
            self._alarm_timer.cancel()
            self._alarm_timer = None


def configure(session: Session, limits: Limits) -> None:
    """Apply ``limits``' data rates to ``session`` (installs, updates or removes its shaper)."""
    if session.finished:
        return
    shaper = session.shaper
    wanted = (
        limits.data_rate is not None
        or limits.data_rate_alarm is not None
        or limits.out_data_rate is not None
    )
    if shaper is None:
        if not wanted:
            return
        shaper = session.shaper = Shaper(session)
    shaper.configure(limits)
    if shaper.idle:
        shaper.stop()
        session.shaper = None
        session.rewire()
