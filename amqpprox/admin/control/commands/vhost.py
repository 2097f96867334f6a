"""VHOST: pause, unpause or disconnect every session of a vhost; print the paused state.

Imports the registry and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

from collections.abc import Callable

from amqpprox.admin.control.helpers import arg, shown
from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command
from amqpprox.core import operations as ops
from amqpprox.core.context import Context

_VHOST_ACTIONS: dict[str, Callable[[Context, str], object]] = {
    "PAUSE": ops.pause_vhost,
    "UNPAUSE": ops.unpause_vhost,
    "BACKEND_DISCONNECT": ops.backend_disconnect_vhost,
    "FORCE_DISCONNECT": ops.force_disconnect_vhost,
}


@command(
    "VHOST",
    "PAUSE vhost | UNPAUSE vhost | PRINT | BACKEND_DISCONNECT vhost | FORCE_DISCONNECT vhost",
)
async def _vhost(ctx: Context, args: list[str], out: ControlOutput) -> None:
    sub = args[0].upper() if args else ""
    if sub == "PRINT":
        states = ops.vhost_states(ctx)
        await out.write(
            "".join(
                f"{shown(v)} = {'PAUSED' if paused else 'UNPAUSED'}\n"
                for v, paused in states.items()
            )
        )
        return
    vhost = arg(args, 1)
    if vhost is None:
        await out.write(ops.SESSION_NOT_FOUND)  # sic: the original's text for a missing vhost
        return
    action = _VHOST_ACTIONS.get(sub)
    if action is None:
        await out.write("Subcommand not recognised.\n")
        return
    action(ctx, vhost)
