"""The data plane's shared parts: the Context, the resolver, owned tasks, failure counts.

Sessions reach the configuration and the registry through this object; it also owns
the background tasks sessions start (connect attempts), so shutdown can cancel them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from amqpprox import __version__
from amqpprox.core.limits import Refusal
from amqpprox.core.stats import BufferFigures
from amqpprox.proxy import auth, shaping
from amqpprox.proxy.connector import Resolver
from amqpprox.proxy.session import Session
from amqpprox.proxy.stream_nodes import NodeBook
from amqpprox.proxy.trace_tap import Entry, TraceTap
from amqpprox.proxy.transports import ClientSide

if TYPE_CHECKING:
    from amqpprox.amqp.methods import ConnectionStartOk
    from amqpprox.core.context import Context
    from amqpprox.core.sessions import SessionBase
    from amqpprox.core.traces import Trace

log = logging.getLogger("amqpprox.plane")


class DataPlane:
    """What every session of this process shares."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.version = __version__
        self.resolver = Resolver(ctx.settings.dns_cache_seconds)
        stats = ctx.stats
        # One Counter, shared with the statistics (read at scrape time, never copied).
        self.connect_failures: Counter[str] = stats.connect_failures
        stats.buffer_probe = probe_buffers
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._a_session_finished = asyncio.Event()
        self.admission = ctx.admission
        self.stream_nodes = NodeBook()  # broker nodes of stream metadata -> proxy endpoints
        self.admission.on_change.append(self._limits_changed)
        # The frame taps of traced sessions, by session id (proxy.trace_tap); usually none.
        self.taps: dict[int, TraceTap] = {}
        ctx.traces.on_start.append(self._trace_started)
        ctx.traces.on_stop.append(self._trace_stopped)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop sessions run on, asked for once (``proxy.deadline`` says why)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def open_session(
        self, side: ClientSide, listen_port: int, secure: bool, client: tuple[str, int] | None
    ) -> Session:
        """A client socket was accepted: its session starts."""
        return Session(self, side, listen_port, secure, client)

    def track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session task failed", exc_info=task.exception())

    def connect_failed(self, backend: str, reason: str) -> None:
        """An attempt to reach ``backend`` failed (``core.stats.CONNECT_FAILURE_REASONS``)."""
        self.ctx.stats.connect_failed(backend, reason)

    def session_finished(self, session: SessionBase) -> None:
        log.debug("session %d finished: %s", session.id, session.close_reason)
        self.admission.release(session.id)
        self._a_session_finished.set()
        self.taps.pop(session.id, None)
        if self.ctx.traces.running_count:
            self.ctx.traces.session_ended(session.id)

    # -- traces (core.traces, proxy.trace_tap) --------------------------------------------
    def session_opened(self, session: Session) -> None:
        """Connection.Open named the vhost: the running traces that follow it tap it."""
        if self.ctx.traces.running_count:
            for trace in self.ctx.traces.matching(session):
                self._tap(session, trace)

    def wrap_traced(self, session: Session, client: Entry, broker: Entry) -> tuple[Entry, Entry]:
        """A live session's chains, with its frame tap in front when it is traced."""
        tap = self.taps.get(session.id)
        relay = session.relay
        if tap is None or relay is None:
            return client, broker
        return tap.wrap((client, broker), (relay.in_scanner, relay.out_scanner))

    def _tap(self, session: Session, trace: Trace) -> None:
        tap = self.taps.get(session.id)
        if tap is None:
            tap = self.taps[session.id] = TraceTap(session.id)
        tap.add(trace)
        session.rewire()

    def _trace_started(self, trace: Trace) -> None:
        for session in self.ctx.sessions:
            if not isinstance(session, Session) or session.finished:
                continue
            # A session not at Open yet is matched there (its vhost is not known before).
            if (session.vhost or trace.filter.session) and trace.filter.matches(session):
                self._tap(session, trace)

    def _trace_stopped(self, trace: Trace) -> None:
        for session_id in list(trace.sessions):
            tap = self.taps.get(session_id)
            if tap is None:
                continue
            tap.remove(trace)
            if not tap.traces:
                del self.taps[session_id]
                session = self.ctx.sessions.get(session_id)
                if isinstance(session, Session) and not session.finished:
                    session.rewire()

    # -- limits and auth (core.limits, proxy.shaping, proxy.auth) -----------------------
    def admit(self, session: Session) -> Refusal | None:
        """LIMIT CONN_RATE[_ALARM] and CONNECTIONS for a session whose Open arrived."""
        return self.admission.admit(self.ctx, session.id, session.vhost, time.monotonic())

    def apply_limits(self, session: Session) -> None:
        """The vhost's data rates for a session (at Open, and whenever a limit changes)."""
        shaping.configure(session, self.ctx.state.limits_for(session.vhost))

    def _limits_changed(self) -> None:
        for session in self.ctx.sessions:
            if isinstance(session, Session) and session.vhost and not session.finished:
                self.apply_limits(session)

    async def authenticate(
        self, session: Session, start_ok: ConnectionStartOk
    ) -> auth.AuthDecision:
        request = auth.AuthRequest(
            vhost=session.vhost,
            mechanism=start_ok.mechanism,
            credentials=start_ok.response,
            client_hostname=await self.ctx.hostnames.resolve(session.client[0]),
            connection_name=session.connection_name,
        )
        started = time.monotonic()
        decision = await auth.ask(self.ctx.state.auth, request, self.ctx.settings.auth_timeout)
        self.ctx.stats.auth_answered(decision.result, time.monotonic() - started)
        return decision

    async def wait_finished(self, sessions: list[SessionBase], timeout: float) -> bool:
        """Wait until every one of ``sessions`` has finished; False if the deadline passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not all(s.finished for s in sessions):
            self._a_session_finished.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._a_session_finished.wait(), remaining)
            except TimeoutError:
                return False
        return True

    async def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def probe_buffers(sessions: Iterable[SessionBase]) -> BufferFigures:
    """Bytes waiting in the sessions' transport write buffers; sessions held by backpressure.

    Runs when statistics are collected (each cleanup interval, each scrape), never per frame.
    """
    to_clients = to_brokers = stalled = 0
    for session in sessions:
        if not isinstance(session, Session) or session.finished:
            continue
        client = session.client_transport
        broker = session.broker_transport
        held = False
        try:
            to_clients += client.get_write_buffer_size()
            if broker is not None:
                to_brokers += broker.get_write_buffer_size()
                held = not broker.is_reading()
            held = held or (not session.paused and not client.is_reading())
        except (AttributeError, RuntimeError):  # a transport torn down under us
            continue
        stalled += held
    return BufferFigures(to_clients, to_brokers, stalled)
