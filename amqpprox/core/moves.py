"""Traffic moves: paced evictions and vhost migrations, their owner and their operations.

``TrafficMoves`` (one per Context, ``ctx.moves``) owns every eviction and migration job:
their tasks (cancelled at shutdown), the recent history (the last ``HISTORY`` finished
jobs of each kind are kept for the listings) and the counters the metrics read
(``evicted``: sessions closed by backend and reason; ``migration_results``).

The functions below are what every front end calls (control socket, REST, dashboard),
with the validation done once here: ``evict_backend``, ``migrate_vhost``, their listings,
look-ups and cancels. ``TrafficMoves.farm_changed`` is ``ProxyState``'s hook: when a farm
is redefined without some of its members, their sessions routed through that farm are
evicted at ``Settings.farm_change_evict_per_second`` (0 turns this off).

Imports ``core`` only; the Context for type checking (it builds this).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from amqpprox.core import migration as mig
from amqpprox.core.backend_status import selectable
from amqpprox.core.eviction import (
    DEFAULT_PER_SECOND,
    Eviction,
    EvictReason,
    validate_per_second,
)
from amqpprox.core.migration import Migration
from amqpprox.core.model import validate_label, validate_name
from amqpprox.core.sessions import SessionBase
from amqpprox.core.state import Target
from amqpprox.errors import InvalidArgument, InvalidState, NotFound

if TYPE_CHECKING:
    from amqpprox.core.context import Context

log = logging.getLogger("amqpprox.moves")

HISTORY = 100  # finished jobs of each kind kept for the listings
MIGRATION_RESULTS = ("done", "failed", "cancelled")
TARGET_KINDS = ("farm", "backend")
REPLY_TEXT_MAX = 255  # Connection.Close reply-text is a shortstr (AMQP 0-9-1 §4.2.5.3)


def reply_text(text: str) -> str:
    """``text`` cut to what a shortstr holds, at a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= REPLY_TEXT_MAX:
        return text
    return data[:REPLY_TEXT_MAX].decode("utf-8", errors="ignore")


class TrafficMoves:
    """The evictions and migrations of one proxy."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.evictions: dict[int, Eviction] = {}
        self.migrations: dict[int, Migration] = {}
        self._eviction_ids = itertools.count(1)
        self._migration_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        # Sessions closed, by (backend, reason value); migrations ended, by result.
        self.evicted: dict[tuple[str, str], int] = {}
        self.migration_results: dict[str, int] = dict.fromkeys(MIGRATION_RESULTS, 0)

    # -- jobs ----------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _count_evicted(self, session: SessionBase, reason: EvictReason) -> None:
        key = (session.backend_name or "", reason.value)
        self.evicted[key] = self.evicted.get(key, 0) + 1

    def _migration_over(self, migration: Migration) -> None:
        result = migration.state.value
        self.migration_results[result] = self.migration_results.get(result, 0) + 1

    @staticmethod
    def _trim(jobs: dict[int, Any]) -> None:
        finished = [job_id for job_id, job in jobs.items() if not job.running]
        for job_id in finished[: max(0, len(finished) - HISTORY)]:
            del jobs[job_id]

    def start_eviction(
        self,
        sessions: list[SessionBase],
        *,
        reason: EvictReason,
        per_second: int,
        text: str,
        backend: str,
    ) -> Eviction:
        """Start closing ``sessions`` of ``backend`` (BACKEND EVICT, a farm change)."""
        eviction = Eviction(
            id=next(self._eviction_ids),
            reason=reason,
            per_second=per_second,
            text=reply_text(text),
            backend=backend,
            vhost=None,
            sessions=sessions,
            on_evicted=self._count_evicted,
        )
        self._trim(self.evictions)
        self.evictions[eviction.id] = eviction
        eviction.task = self._spawn(eviction.run(), f"eviction-{eviction.id}")
        log.info(
            "Eviction %d (%s) of backend %s started: %d sessions at %d/s",
            eviction.id,
            reason.value,
            backend,
            eviction.total,
            per_second,
        )
        return eviction

    def start_migration(self, vhost: str, target: Target, per_second: int) -> Migration:
        """Hold ``vhost``, map it to ``target`` and start evicting its sessions (checked by
        ``migrate_vhost``); raises, with nothing changed, if the mapping cannot be saved."""
        ctx = self.ctx
        kind, name = target
        migration_id = next(self._migration_ids)
        eviction = Eviction(
            id=migration_id,  # the migration's own; it is not listed with the evictions
            reason=EvictReason.MIGRATION,
            per_second=per_second,
            text=reply_text(f"CONNECTION_FORCED - vhost {vhost} is moving to {kind} {name}"),
            backend=None,
            vhost=vhost,
            sessions=mig.sessions_to_move(ctx, vhost),
            on_evicted=self._count_evicted,
        )
        migration = Migration(
            id=migration_id,
            vhost=vhost,
            source=ctx.state.target_of(vhost),
            target=target,
            per_second=per_second,
            eviction=eviction,
            on_finished=self._migration_over,
        )
        mig.begin(ctx, migration)
        self._trim(self.migrations)
        self.migrations[migration.id] = migration
        migration.task = self._spawn(mig.run(ctx, migration), f"migration-{migration.id}")
        return migration

    def farm_changed(self, farm: str, left: tuple[str, ...]) -> None:
        """``ProxyState``'s hook: backends ``left`` are no longer members of ``farm``."""
        pace = self.ctx.settings.farm_change_evict_per_second
        if pace <= 0:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # configured before the loop runs: there are no sessions yet
            return
        for backend in left:
            sessions = [
                s
                for s in self.ctx.sessions
                if not s.finished and s.farm_name == farm and s.backend_name == backend
            ]
            if sessions:
                self.start_eviction(
                    sessions,
                    reason=EvictReason.FARM_CHANGE,
                    per_second=pace,
                    text=f"CONNECTION_FORCED - backend {backend} left farm {farm}",
                    backend=backend,
                )

    async def stop(self) -> None:
        """Shutdown: cancel every job (the drain closes the sessions anyway)."""
        for migration in list(self.migrations.values()):
            mig.cancel(self.ctx, migration)
        for eviction in list(self.evictions.values()):
            eviction.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- operations (every front end) ---------------------------------------------------------
def pace(per_second: object | None) -> int:
    """The pace asked for, or the default; InvalidArgument for anything but 1..10000."""
    if per_second is None:
        return DEFAULT_PER_SECOND
    try:
        return validate_per_second(per_second)
    except ValueError as error:
        raise InvalidArgument(f"{error}: {per_second!r}") from None


def evict_backend(ctx: Context, name: str, per_second: object | None = None) -> Eviction:
    """Close the sessions on backend ``name`` now at ``per_second`` (drain it first so that
    no new ones arrive: only sessions on it when the eviction starts are closed)."""
    rate = pace(per_second)
    if name not in ctx.state.backends:
        raise NotFound(f"backend {name!r} not found")
    sessions = [s for s in ctx.sessions if not s.finished and s.backend_name == name]
    return ctx.moves.start_eviction(
        sessions,
        reason=EvictReason.EVICT,
        per_second=rate,
        text=f"CONNECTION_FORCED - evicted from backend {name}",
        backend=name,
    )


def list_evictions(ctx: Context) -> list[Eviction]:
    return [ctx.moves.evictions[i] for i in sorted(ctx.moves.evictions)]


def get_eviction(ctx: Context, eviction_id: int) -> Eviction:
    eviction = ctx.moves.evictions.get(eviction_id)
    if eviction is None:
        raise NotFound(f"eviction {eviction_id} not found")
    return eviction


def cancel_eviction(ctx: Context, eviction_id: int) -> Eviction:
    eviction = get_eviction(ctx, eviction_id)
    if not eviction.cancel():
        raise InvalidState(f"eviction {eviction_id} is {eviction.state.value} already")
    return eviction


def _refuse(vhost: str, why: str) -> InvalidState:
    return InvalidState(f"Cannot migrate vhost {vhost!r}: {why}")


def check_target(ctx: Context, vhost: str, target: Target) -> None:
    """The target exists and has a member new sessions may go to (ready and up)."""
    kind, name = target
    if kind == "backend":
        if name not in ctx.state.backends:
            raise _refuse(vhost, f"backend {name!r} does not exist")
        if not selectable(ctx, name):
            raise _refuse(vhost, f"backend {name!r} is not ready and up")
        return
    farm = ctx.state.farms.get(name)
    if farm is None:
        raise _refuse(vhost, f"farm {name!r} does not exist")
    if not any(selectable(ctx, member) for member in farm.members):
        raise _refuse(vhost, f"farm {name!r} has no ready member that is up")


def migrate_vhost(
    ctx: Context, vhost: str, kind: str, name: str, per_second: object | None = None
) -> Migration:
    """Move ``vhost`` to farm or backend ``name``; returns the running migration at once."""
    validate_label("vhost", vhost)
    if kind not in TARGET_KINDS:
        raise InvalidArgument(f"target kind must be farm or backend: {kind!r}")
    validate_name(kind, name)
    rate = pace(per_second)
    if not ctx.state.is_known_vhost(vhost):
        raise NotFound(f"vhost {vhost!r} is not known (neither configured nor opened)")
    target = Target(kind, name)
    check_target(ctx, vhost, target)
    moves = ctx.moves
    for other in moves.migrations.values():
        if other.running and other.vhost == vhost:
            raise _refuse(vhost, f"migration {other.id} of it is still running")
    return moves.start_migration(vhost, target, rate)


def list_migrations(ctx: Context) -> list[Migration]:
    return [ctx.moves.migrations[i] for i in sorted(ctx.moves.migrations)]


def get_migration(ctx: Context, migration_id: int) -> Migration:
    migration = ctx.moves.migrations.get(migration_id)
    if migration is None:
        raise NotFound(f"migration {migration_id} not found")
    return migration


def cancel_migration(ctx: Context, migration_id: int) -> Migration:
    migration = get_migration(ctx, migration_id)
    if not mig.cancel(ctx, migration):
        raise InvalidState(f"migration {migration_id} is {migration.state.value} already")
    return migration
