"""FARM: add a farm of backends with its selector, set its partition policy, delete, print.

Imports the registry and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

from amqpprox.admin.control.helpers import arg, shown
from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command
from amqpprox.core import operations as ops
from amqpprox.core.context import Context


@command(
    "FARM",
    "(ADD name selector backend* | PARTITION name policy | DELETE name | PRINT) - Change farms",
)
async def _farm(ctx: Context, args: list[str], out: ControlOutput) -> None:
    sub = args[0].upper() if args else ""
    if sub in ("ADD", "ADD_MANUAL"):
        if len(args) < 4:
            await out.write("Farm name and selector must be provided.\n")
            return
        # The original keeps the members in a set: a repeated name counts once.
        members = list(dict.fromkeys(args[3:]))
        ops.set_farm(ctx, args[1], members, args[2])
    elif sub == "PARTITION":
        if len(args) < 3:
            await out.write("Farm name and policy must be provided.\n")
            return
        ops.add_partition_policy(ctx, args[1], args[2])
    elif sub == "DELETE":
        name = arg(args, 1)
        if name is None:
            await out.write("Farm name not provided.")
            return
        ops.delete_farm(ctx, name)
    elif sub == "PRINT":
        await out.write(
            "".join(
                shown(f"{f.name}: " + "".join(m + " " for m in f.members)) + "\n"
                for f in ops.list_farms(ctx)
            )
        )
    else:
        await out.write(f"Subcommand '{sub}' not recognized.")
