"""Data-rate limits of one session: LIMIT DATA_RATE, DATA_RATE_ALARM and OUT_DATA_RATE.

Only sessions with a data limit pay for it: ``configure`` points that session's
``client_sink``/``broker_sink`` (where its transports deliver reads) at the gated
``client_data``/``broker_data`` of a ``Shaper``, so the relay of every other session
runs exactly as before, without a single extra branch.

A gate is a token bucket refilled at the rate, holding at most one second's worth.
A read that fits is forwarded at once. A read that does not is forwarded as far as the
tokens go; the rest waits in the gate's backlog and that side's socket stops reading
(``Session.rate_held_client``/``rate_held_broker``, part of the session's reading
control). A timer then forwards the backlog in small slices as tokens come back and
resumes reading once it is empty. So the sender is slowed by TCP itself; nothing is
dropped, and at most one read per direction is held (reading stops while it is).

The alarm (DATA_RATE_ALARM) costs no per-read work either: a one-second timer compares
the session's client->broker byte counter with the threshold and logs, as the original,
``Data Rate Alarm: Hit <n> bytes/s`` when the last second went over it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from amqpprox.proxy.session import BrokerSide, Mode, Session

if TYPE_CHECKING:
    from amqpprox.core.model import Limits

log = logging.getLogger("amqpprox.limits")

TICK = 0.02  # seconds between backlog slices: smooth at any rate, cheap for a few sessions
ALARM_WINDOW = 1.0
_monotonic = time.monotonic


class _Gate:
    """A token bucket with the bytes it could not pass yet."""

    __slots__ = ("backlog", "rate", "side", "stamp", "timer", "tokens")

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.stamp = _monotonic()
        self.backlog = bytearray()
        self.timer: asyncio.TimerHandle | None = None
        self.side: BrokerSide | None = None

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

    # -- configuration ------------------------------------------------------------------
    def configure(self, limits: Limits) -> None:
        session = self.session
        self.inbound = self._regate(self.inbound, limits.data_rate, inbound=True)
        self.outbound = self._regate(self.outbound, limits.out_data_rate, inbound=False)
        session.client_sink = self.client_data if self.inbound is not None else session.client_data
        session.broker_sink = self.broker_data if self.outbound is not None else session.broker_data
        self.alarm = limits.data_rate_alarm
        if self.alarm is None and self._alarm_timer is not None:
            self._alarm_timer.cancel()
            self._alarm_timer = None
        elif self.alarm is not None and self._alarm_timer is None:
            self._alarm_mark = session.in_bytes
            self._alarm_timer = self._loop.call_later(ALARM_WINDOW, self._alarm_tick)

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
        """Hand a removed gate's backlog to the session as it is, and let the socket read."""
        data, side = bytes(gate.backlog), gate.side
        gate.backlog.clear()
        self._release_hold(inbound=inbound)
        if data and not self.session.finished:
            if inbound:
                Session.client_data(self.session, data)
            elif side is not None:
                Session.broker_data(self.session, data, side)

    # -- client -> broker ---------------------------------------------------------------
    def client_data(self, data: bytes) -> None:
        session, gate = self.session, self.inbound
        if gate is None or not (session.relaying or gate.backlog):
            Session.client_data(session, data)
            return
        if gate.backlog:
            gate.backlog += data
            return
        gate.refill()
        n = gate.take(len(data))
        if n == len(data):
            Session.client_data(session, data)
            return
        gate.backlog += data[n:]
        session.rate_held_client = True
        session._set_client_reading()
        if n:
            Session.client_data(session, data[:n])
        gate.timer = self._loop.call_later(TICK, self._inbound_tick)

    def _inbound_tick(self) -> None:
        session, gate = self.session, self.inbound
        if gate is None:
            return
        gate.timer = None
        if session.mode is Mode.DEAD:
            gate.backlog.clear()
            return
        if not session.relaying:  # paused or closing now: the session decides what to do
            self._flush(gate, inbound=True)
            return
        gate.refill()
        n = gate.take(len(gate.backlog))
        if n:
            chunk = bytes(gate.backlog[:n])
            del gate.backlog[:n]
            Session.client_data(session, chunk)
        if gate.backlog:
            gate.timer = self._loop.call_later(TICK, self._inbound_tick)
        else:
            self._release_hold(inbound=True)

    # -- broker -> client ---------------------------------------------------------------
    def broker_data(self, data: bytes, side: BrokerSide) -> None:
        session, gate = self.session, self.outbound
        current = side is session._broker_protocol
        if gate is None or not current or not (session.relaying or gate.backlog):
            Session.broker_data(session, data, side)
            return
        gate.side = side
        if gate.backlog:
            gate.backlog += data
            return
        gate.refill()
        n = gate.take(len(data))
        if n == len(data):
            Session.broker_data(session, data, side)
            return
        gate.backlog += data[n:]
        session.rate_held_broker = True
        session._set_broker_reading()
        if n:
            Session.broker_data(session, data[:n], side)
        gate.timer = self._loop.call_later(TICK, self._outbound_tick)

    def _outbound_tick(self) -> None:
        session, gate = self.session, self.outbound
        if gate is None:
            return
        gate.timer = None
        side = gate.side
        if side is None or side is not session._broker_protocol or session.mode is Mode.DEAD:
            gate.backlog.clear()
            self._release_hold(inbound=False)
            return
        if not session.relaying:
            self._flush(gate, inbound=False)
            return
        gate.refill()
        n = gate.take(len(gate.backlog))
        if n:
            chunk = bytes(gate.backlog[:n])
            del gate.backlog[:n]
            Session.broker_data(session, chunk, side)
        if gate.backlog:
            gate.timer = self._loop.call_later(TICK, self._outbound_tick)
        else:
            self._release_hold(inbound=False)

    def _release_hold(self, *, inbound: bool) -> None:
        session = self.session
        if session.mode is Mode.DEAD:
            return
        if inbound:
            session.rate_held_client = False
            session._set_client_reading()
        else:
            session.rate_held_broker = False
            session._set_broker_reading()

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
