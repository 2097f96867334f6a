"""BACKEND EVICT / EVICTIONS and VHOST MIGRATE / MIGRATIONS: paced evictions and migrations.

Subcommands of the original's BACKEND and VHOST verbs (``registry.subcommand``; this module
is imported after ``vhost``, whose verb it extends), over
``core.moves``. Every error is one line naming what was wrong (the target, the id, the
value). A job line is ``key=value`` fields as CONN's, names escaped by ``shown``.

Imports the registry and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

import time

from amqpprox.admin.control.helpers import arg, shown
from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import subcommand
from amqpprox.core import moves
from amqpprox.core.context import Context
from amqpprox.core.digits import ascii_digits
from amqpprox.core.eviction import Eviction
from amqpprox.core.migration import Migration
from amqpprox.errors import AmqpproxError

MIGRATE_USAGE = "Usage: VHOST MIGRATE vhost (FARM farm | BACKEND backend) [per_second]\n"
EVICT_USAGE = "Usage: BACKEND EVICT name [per_second]\n"


def _stamp(at: float | None) -> str:
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def _rate(text: str | None) -> object | None:
    """A per_second token: an int when it is digits, else the text (which the core refuses)."""
    if text is None:
        return None
    return int(text) if ascii_digits(text) else text


def _target(text: str | None) -> str:
    return "-" if text is None else shown(text.replace(" ", ":", 1))


def migration_line(m: Migration) -> str:
    return (
        f"id={m.id} state={m.state.value} vhost={shown(m.vhost)} from={_target(m.source_text)} "
        f"to={_target(m.target_text)} sessionsTotal={m.sessions_total} "
        f"sessionsMoved={m.sessions_moved} perSecond={m.per_second} "
        f"startedAt={_stamp(m.started_at)} finishedAt={_stamp(m.finished_at)} "
        f"error={shown(m.error) if m.error else '-'}\n"
    )


def eviction_line(e: Eviction) -> str:
    return (
        f"id={e.id} state={e.state.value} backend={shown(e.backend or '-')} "
        f"reason={e.reason.value} sessionsTotal={e.total} sessionsDone={e.done} "
        f"sessionsClosed={e.evicted} perSecond={e.per_second} "
        f"startedAt={_stamp(e.started_at)} finishedAt={_stamp(e.finished_at)}\n"
    )


@subcommand(
    "BACKEND",
    "EVICT",
    "EVICT name [per_second] - Close the sessions on a backend gracefully (Connection.Close "
    "320), per_second a second (default 10)",
)
async def _evict(ctx: Context, args: list[str], out: ControlOutput) -> None:
    if not 1 <= len(args) <= 2:
        await out.write(EVICT_USAGE)
        return
    try:
        e = moves.evict_backend(ctx, args[0], _rate(arg(args, 1)))
    except AmqpproxError as error:
        await out.write(f"{shown(error.message)}\n")
        return
    await out.write(
        f"Eviction {e.id} started: {e.total} sessions of backend {shown(args[0])} "
        f"at {e.per_second}/s\n"
    )


@subcommand(
    "BACKEND",
    "EVICTIONS",
    "EVICTIONS [CANCEL id] - Print the evictions (running and recent) or cancel one",
)
async def _evictions(ctx: Context, args: list[str], out: ControlOutput) -> None:
    if not args:
        await out.write("".join(eviction_line(e) for e in moves.list_evictions(ctx)))
        return
    if len(args) != 2 or args[0].upper() != "CANCEL" or not ascii_digits(args[1]):
        await out.write("Usage: BACKEND EVICTIONS [CANCEL id]\n")
        return
    try:
        e = moves.cancel_eviction(ctx, int(args[1]))
    except AmqpproxError as error:
        await out.write(f"{shown(error.message)}\n")
        return
    await out.write(f"Eviction {e.id} cancelled: {e.done} of {e.total} sessions done\n")


@subcommand(
    "VHOST",
    "MIGRATE",
    "MIGRATE vhost (FARM farm | BACKEND backend) [per_second] - Hold new sessions, map the "
    "vhost to the target, close its sessions at per_second a second (default 10), release",
)
async def _migrate(ctx: Context, args: list[str], out: ControlOutput) -> None:
    if not 3 <= len(args) <= 4 or args[1].upper() not in ("FARM", "BACKEND"):
        await out.write(MIGRATE_USAGE)
        return
    vhost, kind, name = args[0], args[1].lower(), args[2]
    try:
        m = moves.migrate_vhost(ctx, vhost, kind, name, _rate(arg(args, 3)))
    except AmqpproxError as error:
        await out.write(f"{shown(error.message)}\n")
        return
    await out.write(
        f"Migration {m.id} started: vhost {shown(vhost)} to {kind} {shown(name)}, "
        f"{m.sessions_total} sessions at {m.per_second}/s\n"
    )


@subcommand(
    "VHOST",
    "MIGRATIONS",
    "MIGRATIONS [CANCEL id] - Print the migrations (running and recent) or cancel one",
)
async def _migrations(ctx: Context, args: list[str], out: ControlOutput) -> None:
    if not args:
        await out.write("".join(migration_line(m) for m in moves.list_migrations(ctx)))
        return
    if len(args) != 2 or args[0].upper() != "CANCEL" or not ascii_digits(args[1]):
        await out.write("Usage: VHOST MIGRATIONS [CANCEL id]\n")
        return
    try:
        m = moves.cancel_migration(ctx, int(args[1]))
    except AmqpproxError as error:
        await out.write(f"{shown(error.message)}\n")
        return
    await out.write(
        f"Migration {m.id} cancelled: {m.sessions_moved} of {m.sessions_total} sessions moved\n"
    )
