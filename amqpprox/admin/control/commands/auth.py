"""AUTH: allow every client, or ask an HTTP auth service before routing one; print which.

The original's syntax and replies are kept byte for byte (reference §4.8); ours adds the
body format: ``AUTH SERVICE hostname port target [PROTOBUF | JSON]``.

Keeps no state. Imports the registry and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

from amqpprox.admin.control.helpers import shown, tcp_port
from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command
from amqpprox.core import limits as lim
from amqpprox.core.context import Context
from amqpprox.errors import InvalidArgument


def auth_line(ctx: Context) -> str:
    config = lim.get_auth(ctx)
    if not config.service:
        return (
            "All connections are authorised to route to any vhost. No auth service requests "
            "will be made.\n"
        )
    suffix = " (JSON)" if config.format == "json" else ""
    url = shown(config.url)
    return f"HTTP Auth service will be used to authn/authz client connections: {url}{suffix}\n"


@command(
    "AUTH",
    "(SERVICE hostname port target | ALWAYS_ALLOW | PRINT) - Change authentication "
    "mechanism for connecting clients",
    "SERVICE hostname port target (PROTOBUF | JSON) - Send the auth service the original's "
    "protobuf body (the default) or its JSON mapping",
)
async def _auth(ctx: Context, args: list[str], out: ControlOutput) -> None:
    if not args:
        await out.write("No subcommand provided.\n")
        return
    sub = args[0].upper()
    if sub == "PRINT":
        await out.write(auth_line(ctx))
    elif sub == "ALWAYS_ALLOW":
        lim.set_auth_always_allow(ctx)
        await out.write(auth_line(ctx))
    elif sub == "SERVICE":
        await _auth_service(ctx, args[1:], out)
    else:
        await out.write("Unknown subcommand.\n")


async def _auth_service(ctx: Context, args: list[str], out: ControlOutput) -> None:
    if not args:
        await out.write("No hostname specified.\n")
        return
    port = tcp_port(args[1] if len(args) > 1 else None)
    if port is None:
        await out.write("Invalid port provided.\n")
        return
    if len(args) < 3:
        await out.write("No http target specified.\n")
        return
    fmt_word = args[3].upper() if len(args) > 3 else "PROTOBUF"
    if fmt_word not in ("PROTOBUF", "JSON"):
        await out.write("Unknown format; use PROTOBUF or JSON.\n")
        return
    try:
        lim.set_auth_service(
            ctx, args[0], port, args[2], "json" if fmt_word == "JSON" else "protobuf"
        )
    except InvalidArgument as error:
        await out.write(f"{error.message}\n")
        return
    await out.write(auth_line(ctx))
