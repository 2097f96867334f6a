"""BACKEND: add (by address or DNS name), delete and print the backend servers.

Imports the registry and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

from amqpprox.admin.control.helpers import arg, shown, tcp_port
from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command
from amqpprox.core import operations as ops
from amqpprox.core.context import Context
from amqpprox.errors import InvalidArgument


@command(
    "BACKEND",
    "(ADD name datacenter host port [SEND-PROXY] [TLS] | ADD_DNS name datacenter address port "
    "[SEND-PROXY] [TLS] | DELETE name | PRINT) - Change backend servers",
    "(ADD | ADD_DNS) name datacenter host port SEND-PROXY-V2 [TLS] - Send the backend a "
    "binary PROXY protocol v2 header instead of the v1 text line",
    "STREAM_PORT name port - Set the port of the backend's RabbitMQ Streams listener "
    "(default 5552)",
)
async def _backend(ctx: Context, args: list[str], out: ControlOutput) -> None:
    sub = args[0].upper() if args else ""
    if sub in ("ADD", "ADD_DNS"):
        await _backend_add(ctx, args[1:], out, dns=sub == "ADD_DNS")
    elif sub == "DELETE":
        name = arg(args, 1)
        if name is None:
            await out.write("DELETE requires a name argument")
            return
        ops.delete_backend(ctx, name)
    elif sub == "STREAM_PORT":
        await _backend_stream_port(ctx, args[1:], out)
    elif sub == "PRINT":
        await out.write("".join(shown(b.describe()) + "\n" for b in ops.list_backends(ctx)))
    else:
        await out.write(f"Subcommand '{sub}' not recognized.")


async def _backend_stream_port(ctx: Context, args: list[str], out: ControlOutput) -> None:
    """Ours: BACKEND STREAM_PORT name port (silent on success)."""
    if len(args) != 2:
        await out.write("STREAM_PORT requires a name and a port")
        return
    port = tcp_port(args[1])
    if port is None:
        await out.write("Arguments not correctly provided")
        return
    ops.set_backend_stream_port(ctx, args[0], port)


async def _backend_add(ctx: Context, args: list[str], out: ControlOutput, *, dns: bool) -> None:
    bad_arguments = "Arguments not correctly provided"
    if len(args) < 4:
        await out.write(bad_arguments)
        return
    name, datacenter, host, port_text = args[:4]
    port = tcp_port(port_text)
    if port is None:
        await out.write(bad_arguments)
        return
    # As upstream, only the two tokens after the port are looked at, in either order.
    # SEND-PROXY-V2 (ours) asks for the binary PROXY header instead of the v1 text line.
    flags = {flag.upper() for flag in args[4:6]}
    proxy_protocol = 2 if "SEND-PROXY-V2" in flags else 1 if "SEND-PROXY" in flags else 0
    try:
        await ops.add_backend(
            ctx,
            name,
            datacenter,
            host,
            port,
            dns=dns,
            proxy_protocol=proxy_protocol,
            tls="TLS" in flags,
        )
    except InvalidArgument as error:
        # Validation of the values themselves (a name too long, say) reads as the original's
        # argument error; a resolution failure carries the original's own text.
        await out.write(error.legacy_text if error.legacy_text != error.message else bad_arguments)
