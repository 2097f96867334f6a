"""LISTEN: start (plain or TLS, optionally reading a PROXY header) and stop AMQP listeners.

Imports the registry and ``core``, never ``amqpprox.proxy``: listeners are reached through
``core.operations``.
"""

from __future__ import annotations

from amqpprox.admin.control.helpers import arg, tcp_port
from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command
from amqpprox.core import operations as ops
from amqpprox.core.context import Context
from amqpprox.errors import AmqpproxError


@command("LISTEN", "START port | START_SECURE port | STOP [port]")
async def _listen(ctx: Context, args: list[str], out: ControlOutput) -> None:
    if not args:
        await out.write("No subcommand provided.\n")
        return
    sub = args[0].upper()
    port = tcp_port(arg(args, 1))
    if sub in ("START", "START_SECURE"):
        if port is None:
            await out.write("Invalid port provided.\n")
            return
        # Ours: "LISTEN START port PROXY" reads a PROXY protocol header from each client.
        accept_proxy = (arg(args, 2) or "").upper() == "PROXY"
        try:
            await ops.start_listener(
                ctx, port, tls=sub == "START_SECURE", proxy_protocol=accept_proxy
            )
        except AmqpproxError as error:
            # Deliberate difference: the original printed nothing (and, for a busy port,
            # its server loop died); we say why and keep serving.
            await out.write(f"{error.message}\n")
    elif sub == "STOP":
        await ops.stop_listener(ctx, port)  # no or an invalid port: every listener
    else:
        await out.write("Unknown subcommand.\n")
