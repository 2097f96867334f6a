"""LISTEN: start (plain or TLS, optionally reading a PROXY header), stop and print listeners.

``LISTEN START port`` binds every interface (``0.0.0.0``) as the original; ours adds
options after the port, in any order: ``PROXY`` and ``ADDRESS address`` (an IPv4 or IPv6
address, or ``localhost``). Any other word after the port is refused, so that a
mistyped option never silently binds every interface.

``LISTEN PRINT`` (ours) prints one line per listener, by port:
``port=<port> address=<address> tls=<Y|N> proxyProtocol=<Y|N>``.

Imports the registry and ``core``, never ``amqpprox.proxy``: listeners are reached through
``core.operations``.
"""

from __future__ import annotations

from amqpprox.admin.control.helpers import arg, shown, tcp_port, yn
from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command
from amqpprox.core import operations as ops
from amqpprox.core.context import Context
from amqpprox.core.model import ALL_INTERFACES, ListenerSpec
from amqpprox.errors import AmqpproxError, InvalidArgument


def listener_line(spec: ListenerSpec) -> str:
    """LISTEN PRINT's line for one listener."""
    return (
        f"port={spec.port} address={shown(spec.host)} tls={yn(spec.tls)} "
        f"proxyProtocol={yn(spec.proxy_protocol)}"
        + (
            f" protocol=stream{' node=' + shown(spec.node) if spec.node else ''}"
            if spec.protocol == "stream"
            else ""
        )
    )


def start_options(words: list[str], *, stream: bool = False) -> tuple[bool, str, str | None]:
    """The words after LISTEN START's port: (PROXY given, the bind address, the NODE
    backend of a stream listener).

    Raises ``InvalidArgument`` for an unknown or repeated word, or ADDRESS without one.
    """
    proxy, address, seen = False, ALL_INTERFACES, set()
    node: str | None = None
    options = ("PROXY", "ADDRESS", "NODE") if stream else ("PROXY", "ADDRESS")
    rest = iter(words)
    for word in rest:
        option = word.upper()
        if option not in options:
            raise InvalidArgument(f"Unknown option: {shown(word)}")
        if option in seen:
            raise InvalidArgument(f"Option given twice: {option}")
        seen.add(option)
        if option == "PROXY":
            proxy = True
        elif option == "NODE":
            node = next(rest, "")
            if not node:
                raise InvalidArgument("No backend provided.")
        else:
            address = next(rest, "")
            if not address:
                raise InvalidArgument("No address provided.")
    return proxy, address, node


_STARTS = {
    "START": (False, "amqp"),
    "START_SECURE": (True, "amqp"),
    "START_STREAM": (False, "stream"),
    "START_SECURE_STREAM": (True, "stream"),
}


@command(
    "LISTEN",
    "START port | START_SECURE port | STOP [port]",
    "(START | START_SECURE) port PROXY - Listen for clients behind a load balancer that "
    "sends a PROXY protocol (v1 or v2) header",
    "(START | START_SECURE) port [PROXY] ADDRESS address - Listen on one address (IPv4, "
    "IPv6 or localhost) instead of every interface",
    "PRINT - Print the listeners: port, address, TLS or not, PROXY protocol or not",
    "(START_STREAM | START_SECURE_STREAM) port [NODE backend] [PROXY] [ADDRESS address] - "
    "Listen for RabbitMQ Streams clients; NODE sends every connection to that backend",
)
async def _listen(ctx: Context, args: list[str], out: ControlOutput) -> None:
    if not args:
        await out.write("No subcommand provided.\n")
        return
    sub = args[0].upper()
    port = tcp_port(arg(args, 1))
    if sub in _STARTS:
        if port is None:
            await out.write("Invalid port provided.\n")
            return
        tls, protocol = _STARTS[sub]
        # Ours: "LISTEN START port PROXY" reads a PROXY protocol header from each client;
        # "... ADDRESS address" binds that address only.
        try:
            accept_proxy, address, node = start_options(args[2:], stream=protocol == "stream")
            await ops.start_listener(
                ctx,
                port,
                tls=tls,
                proxy_protocol=accept_proxy,
                host=address,
                protocol=protocol,
                node=node,
            )
        except AmqpproxError as error:
            # Deliberate difference: the original printed nothing (and, for a busy port,
            # its server loop died); we say why and keep serving.
            await out.write(f"{error.message}\n")
    elif sub == "STOP":
        await ops.stop_listener(ctx, port)  # no or an invalid port: every listener
    elif sub == "PRINT":
        specs = sorted(ops.list_listeners(ctx), key=lambda spec: spec.port)
        await out.write("".join(listener_line(spec) + "\n" for spec in specs))
    else:
        await out.write("Unknown subcommand.\n")
