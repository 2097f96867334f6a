"""LOG: change the console or file log verbosity at run time.

Imports the registry and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

from amqpprox.admin.control.helpers import arg
from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command
from amqpprox.core import operations as ops
from amqpprox.core.context import Context
from amqpprox.core.digits import ascii_digits


@command("LOG", "CONSOLE verbosity | FILE verbosity")
async def _log(ctx: Context, args: list[str], out: ControlOutput) -> None:
    level = arg(args, 1)
    if level is None or not ascii_digits(level.lstrip("-")):
        await out.write("Command or verbosity not found.\n")
        return
    sink = args[0].upper()
    if sink not in ("CONSOLE", "FILE"):
        await out.write("Type to verb is not known.\n")
        return
    ops.set_log_verbosity(ctx, sink.lower(), int(level))
