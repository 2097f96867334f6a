"""MAPHOSTNAME DNS: show endpoints by their reverse-DNS names instead of IPs.

Imports the registry and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command
from amqpprox.core import operations as ops
from amqpprox.core.context import Context


@command("MAPHOSTNAME", "DNS - Set up mapping of IPs to hostnames")
async def _maphostname(ctx: Context, args: list[str], out: ControlOutput) -> None:
    if not args:
        await out.write("No subcommand specified.\n")
        return
    if args[0].upper() != "DNS":
        await out.write("Only DNS subcommand is supported.\n")
        return
    ops.enable_hostname_mapping(ctx)
    await out.write("Hostname mapper set for all current sessions.\n")
