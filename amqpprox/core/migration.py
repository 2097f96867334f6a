"""One-step vhost migration: hold new sessions, switch the mapping, evict at a pace, release.

A ``Migration`` is a job with an id, a state (``running``, ``done``, ``failed``,
``cancelled``) and progress (its eviction's). ``begin`` does the synchronous part at
once, so a front end can answer with the id: the vhost is held (new sessions wait at
``Connection.Open``, the VHOST PAUSE mechanism, through ``ProxyState.migrating_vhosts``;
established ones keep relaying) and mapped to the target. The task then evicts the
vhost's sessions at the pace and releases the hold, so that held and reconnecting
clients open on the new target. The hold is not configuration: it is never saved to the
state file, so a restart in the middle of a migration holds nothing; an operator's own
VHOST PAUSE is left as it is (a vhost paused before stays paused). Cancelling stops the
eviction and releases the hold; the new mapping stays.

Owned by ``core.moves.TrafficMoves`` (which validates the request); imports ``core``
only, the Context for type checking.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from amqpprox.core.eviction import Eviction, JobState
from amqpprox.core.model import Mapping, TargetKind
from amqpprox.core.sessions import SessionBase, SessionState
from amqpprox.core.state import Target

if TYPE_CHECKING:
    from amqpprox.core.context import Context

log = logging.getLogger("amqpprox.migration")


def describe(target: Target | None) -> str | None:
    """``farm f1`` / ``backend b1``: how a target reads in every front end."""
    return None if target is None else f"{target.kind} {target.target}"


@dataclass(eq=False)
class Migration:
    id: int
    vhost: str
    source: Target | None
    target: Target
    per_second: int
    eviction: Eviction
    state: JobState = JobState.RUNNING
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    error: str | None = None
    on_finished: Callable[[Migration], None] | None = field(default=None, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.state is JobState.RUNNING

    @property
    def sessions_total(self) -> int:
        return self.eviction.total

    @property
    def sessions_moved(self) -> int:
        return self.eviction.done

    @property
    def source_text(self) -> str | None:
        return describe(self.source)

    @property
    def target_text(self) -> str:
        return describe(self.target) or ""


def sessions_to_move(ctx: Context, vhost: str) -> list[SessionBase]:
    """The vhost's sessions that hold, or are getting, a broker connection (not those held
    at Open: they have none yet and go to the new target when released)."""
    return [
        s
        for s in ctx.sessions.of_vhost(vhost)
        if not s.finished and s.state is not SessionState.HELD
    ]


def begin(ctx: Context, migration: Migration) -> None:
    """Hold the vhost's new sessions and switch its mapping (raises, with nothing changed,
    if the change cannot be saved)."""
    state = ctx.state
    vhost = migration.vhost
    before = state.mappings.get(vhost)
    state.migrating_vhosts.add(vhost)  # new sessions wait at Open from now on (never saved)
    kind: TargetKind = "farm" if migration.target.kind == "farm" else "backend"
    try:
        state.map_vhost(Mapping(vhost, kind, migration.target.target))  # saved first
    except Exception:
        state.migrating_vhosts.discard(vhost)
        with state.batch():  # the state file refused it: put the mapping back
            if before is None:
                state.unmap_vhost(vhost)
            else:
                state.map_vhost(before)
        raise
    log.info(
        "Migration %d of vhost %s to %s started: %d sessions at %d/s",
        migration.id,
        vhost,
        migration.target_text,
        migration.sessions_total,
        migration.per_second,
    )


async def run(ctx: Context, migration: Migration) -> None:
    """The migration's task: the eviction, then the release."""
    try:
        await migration.eviction.run()
    except asyncio.CancelledError:
        end(ctx, migration, JobState.CANCELLED)
        raise
    if migration.eviction.state is JobState.FAILED:
        end(ctx, migration, JobState.FAILED, migration.eviction.error)
    else:
        end(ctx, migration, JobState.DONE)


def end(ctx: Context, migration: Migration, state: JobState, error: str | None = None) -> None:
    """Stop holding the vhost and record the outcome, once."""
    if not migration.running:
        return
    migration.state = state
    migration.error = error
    migration.finished_at = time.time()
    migration.eviction.finish(state, error)
    release(ctx, migration.vhost)
    log.info(
        "Migration %d of vhost %s to %s %s: %d of %d sessions moved",
        migration.id,
        migration.vhost,
        migration.target_text,
        migration.state.value,
        migration.sessions_moved,
        migration.sessions_total,
    )
    if migration.on_finished is not None:
        migration.on_finished(migration)


def release(ctx: Context, vhost: str) -> None:
    """Stop holding ``vhost``: unless an operator paused it, the sessions held at Open
    connect out, to the new mapping. Sessions already relaying are left alone."""
    state = ctx.state
    state.migrating_vhosts.discard(vhost)
    if state.is_vhost_paused(vhost):
        return
    for session in ctx.sessions.of_vhost(vhost):
        if session.paused and not session.finished and session.opened_at is None:
            session.release_held()


def cancel(ctx: Context, migration: Migration) -> bool:
    """Stop the eviction and release the hold now; False when the migration is over."""
    if not migration.running:
        return False
    end(ctx, migration, JobState.CANCELLED)
    if migration.task is not None:
        migration.task.cancel()
    return True
