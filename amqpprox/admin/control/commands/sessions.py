"""CONN (list the live sessions) and SESSION (pause or disconnect one of them).

Imports the registry and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from amqpprox.admin.control.helpers import arg, conn_line
from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command
from amqpprox.core import operations as ops
from amqpprox.core.context import Context
from amqpprox.core.digits import ascii_digits
from amqpprox.core.sessions import SessionBase


@command("CONN", "Print the connected sessions")
async def _conn(ctx: Context, args: list[str], out: ControlOutput) -> None:
    sessions = ops.list_sessions(ctx)
    await ops.session_endpoint_names(ctx, sessions)
    now = time.monotonic()
    name = ctx.hostnames.cached
    await out.write("".join(conn_line(s, now, name) + "\n" for s in sessions))


_SESSION_ACTIONS: dict[str, Callable[[Context, int], SessionBase]] = {
    "PAUSE": ops.pause_session,
    "UNPAUSE": ops.unpause_session,  # our addition, on its own HELP line
    "DISCONNECT_GRACEFUL": ops.disconnect_session,
    "FORCE_DISCONNECT": ops.force_disconnect_session,
}


@command(
    "SESSION",
    " id# (PAUSE|DISCONNECT_GRACEFUL|FORCE_DISCONNECT) - Control a particular session",
    "id# UNPAUSE - Resume a paused session, or release one held at Open",
)
async def _session(ctx: Context, args: list[str], out: ControlOutput) -> None:
    id_text = arg(args, 0)
    if id_text is None or not ascii_digits(id_text):
        await out.write(ops.SESSION_NOT_FOUND)
        return
    session = ops.get_session(ctx, int(id_text))
    action = _SESSION_ACTIONS.get((arg(args, 1) or "").upper())
    if action is None:
        await out.write("Session subcommand not found.\n")
        return
    action(ctx, session.id)
