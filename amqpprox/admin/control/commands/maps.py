"""MAP: route a vhost to a backend or a farm, unmap it, set or remove the default farm, print.

Imports the registry and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

from amqpprox.admin.control.helpers import arg, shown
from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command
from amqpprox.core import operations as ops
from amqpprox.core.context import Context


@command(
    "MAP",
    "(BACKEND vhost backend | FARM vhost name | UNMAP vhost | DEFAULT farmName | REMOVE_DEFAULT | "
    "PRINT) - Change mappings of resources to servers",
)
async def _map(ctx: Context, args: list[str], out: ControlOutput) -> None:
    sub = args[0].upper() if args else ""
    if sub == "BACKEND":
        if len(args) < 3:
            await out.write("Vhost and backend must be provided")
            return
        ops.map_vhost_to_backend(ctx, args[1], args[2])
    elif sub == "FARM":
        if len(args) < 3:
            await out.write("Vhost and farm name must be provided")
            return
        ops.map_vhost_to_farm(ctx, args[1], args[2])
    elif sub == "UNMAP":
        vhost = arg(args, 1)
        if vhost is None:
            await out.write("Vhost not provided.")
            return
        ops.unmap_vhost(ctx, vhost)
    elif sub == "DEFAULT":
        farm = arg(args, 1)
        if farm is None:
            await out.write("Farm name for default must be provided")
            return
        ops.set_default_farm(ctx, farm)
    elif sub == "REMOVE_DEFAULT":
        ops.set_default_farm(ctx, None)
    elif sub == "PRINT":
        await out.write("".join(shown(m.describe()) + "\n" for m in ops.list_mappings(ctx)))
    else:
        await out.write("Unrecognized subcommand.")
