"""DATACENTER: set and print the proxy's own datacenter (for datacenter-affinity farms).

Imports the registry and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

from amqpprox.admin.control.helpers import arg, shown
from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command
from amqpprox.core import operations as ops
from amqpprox.core.context import Context


@command("DATACENTER", "SET name | PRINT")
async def _datacenter(ctx: Context, args: list[str], out: ControlOutput) -> None:
    if not args:
        await out.write("No subcommand provided.\n")
        return
    sub = args[0].upper()
    if sub == "SET":
        ops.set_datacenter(ctx, arg(args, 1) or "")
    elif sub == "PRINT":
        await out.write(shown(ops.get_datacenter(ctx)) + "\n")
    else:
        await out.write("Unknown subcommand.\n")
