"""Paced eviction: closing a fixed set of sessions gracefully, at most ``per_second`` a second.

An ``Eviction`` is a job with an id, a state and progress (``total``, ``done``). Its
sessions are chosen when it starts (those matching on that instant); sessions that open
later are never touched. Each one gets ``Connection.Close 320`` with a text naming the
reason (``SessionBase.disconnect_graceful``, the path of ``SESSION id
DISCONNECT_GRACEFUL``), so clients reconnect; sessions that ended on their own, or moved
off the backend, by their turn are counted done without using a slot.

Pacing is by the loop's clock: a close happens no sooner than ``1 / per_second`` after the
previous one, so no one-second window ever holds more than ``per_second`` closes, however
late the loop runs. The job never blocks the loop: it is one task (owned by
``core.moves.TrafficMoves``) sleeping between closes. No I/O here beyond the sessions'
own control actions; imports ``core.sessions`` only.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from amqpprox.core.sessions import SessionBase

log = logging.getLogger("amqpprox.eviction")

EVICT_REPLY_CODE = 320  # CONNECTION_FORCED (AMQP 0-9-1 §1.9): the client may reconnect
DEFAULT_PER_SECOND = 10
MAX_PER_SECOND = 10_000


class EvictReason(enum.Enum):
    """Why sessions are evicted (the ``reason`` label of amqpprox_sessions_evicted_total)."""

    EVICT = "evict"  # BACKEND EVICT, REST evict, the dashboard's evict
    FARM_CHANGE = "farm_change"  # the backend left a farm the sessions were routed through
    MIGRATION = "migration"  # VHOST MIGRATE


class JobState(enum.Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


def validate_per_second(value: object) -> int:
    """A pace: a whole number of sessions a second, 1..MAX_PER_SECOND (else ValueError)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("per_second must be a whole number")
    if not 1 <= value <= MAX_PER_SECOND:
        raise ValueError(f"per_second must be from 1 to {MAX_PER_SECOND}")
    return value


@dataclass(eq=False)
class Eviction:
    """Closing ``sessions`` at ``per_second``; ``backend`` is None for a vhost's sessions."""

    id: int
    reason: EvictReason
    per_second: int
    text: str  # the Connection.Close reply text the clients get
    backend: str | None
    vhost: str | None
    sessions: list[SessionBase] = field(repr=False)
    state: JobState = JobState.RUNNING
    done: int = 0
    evicted: int = 0  # of ``done``, the sessions this job closed (the others had gone)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    error: str | None = None
    # Loop-clock instants of each close this job made (tests and the pace check read them).
    close_times: list[float] = field(default_factory=list, repr=False)
    # Called with each session closed (the metrics' counter).
    on_evicted: Callable[[SessionBase, EvictReason], None] | None = field(default=None, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.total = len(self.sessions)
        self.session_ids: list[int] = [s.id for s in self.sessions]  # in eviction order

    @property
    def running(self) -> bool:
        return self.state is JobState.RUNNING

    def _still_eligible(self, session: SessionBase) -> bool:
        if session.finished:
            return False
        return self.backend is None or session.backend_name == self.backend

    async def run(self) -> None:
        """Close the sessions at the pace; the job's state says how it ended."""
        if not self.running:
            return
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.per_second
        next_at = loop.time()
        try:
            for session in list(self.sessions):
                if not self.running:
                    break
                if self._still_eligible(session):
                    delay = next_at - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)  # the pace itself
                    if self.running and self._still_eligible(session):
                        self._evict(session)
                        # The loop may wake up to its clock resolution early: count it on time.
                        now = max(loop.time(), next_at)
                        self.close_times.append(now)
                        next_at = now + interval
                self.done += 1
        except asyncio.CancelledError:
            self.finish(JobState.CANCELLED)
            raise
        except Exception as error:  # a bug: logged, the job ends failed, the loop serves on
            log.exception("eviction %d failed", self.id)
            self.finish(JobState.FAILED, f"internal error: {error!r}")
            return
        self.finish(JobState.DONE)

    def _evict(self, session: SessionBase) -> None:
        session.disconnect_graceful(self.text, EVICT_REPLY_CODE)
        self.evicted += 1
        if self.on_evicted is not None:
            self.on_evicted(session, self.reason)

    def finish(self, state: JobState, error: str | None = None) -> None:
        if self.state is not JobState.RUNNING:
            return
        self.state = state
        self.error = error
        self.finished_at = time.time()
        self.sessions = []  # the history keeps ids and counts, not the sessions themselves
        log.info(
            "Eviction %d (%s) %s: %d of %d sessions done, %d closed",
            self.id,
            self.reason.value,
            state.value,
            self.done,
            self.total,
            self.evicted,
        )

    def cancel(self) -> bool:
        """Stop closing sessions (those closed stay closed); False when already over."""
        if not self.running:
            return False
        self.finish(JobState.CANCELLED)
        if self.task is not None:
            self.task.cancel()
        return True
