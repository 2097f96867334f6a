"""HELP and EXIT.

Imports the registry and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command, help_text
from amqpprox.core import operations as ops
from amqpprox.core.context import Context


@command("HELP", "Print this help text.")
async def _help(ctx: Context, args: list[str], out: ControlOutput) -> None:
    await out.write(help_text())


@command("EXIT", "Exit the program gracefully.")
async def _exit(ctx: Context, args: list[str], out: ControlOutput) -> None:
    await out.write("Exiting.\n")
    ops.request_exit(ctx)
