"""STAT: stream statistics reports (LISTEN), send them to statsd (SEND, STOP), per-source on/off.

STAT LISTEN keeps writing only to a streaming output (a socket client), until the reader
goes away or the proxy shuts down; to any other output it writes one report.

Imports the registry, ``admin.stats`` and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

import asyncio

from amqpprox.admin import stats as statfmt
from amqpprox.admin.control.helpers import arg, tcp_port
from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command
from amqpprox.core.context import Context
from amqpprox.core.digits import ascii_digits
from amqpprox.errors import InvalidArgument

_STAT_SUBCOMMANDS = "Only LISTEN, SEND, STOP, ENABLE, and DISABLE subcommands are supported.\n"


@command(
    "STAT",
    "(STOP SEND | SEND <host> <port> | (LISTEN (json|human) (overall|vhost=foo|backend=bar|"
    "source=baz|all|all-except-per-source|process|bufferpool)) - Output statistics",
    "(DISABLE|ENABLE) per-source - Enable/Disable internal collection of per-source "
    "statistics. Applies to all send/listeners",
)
async def _stat(ctx: Context, args: list[str], out: ControlOutput) -> None:
    hub = ctx.stats
    sub = args[0].upper() if args else ""
    if sub == "LISTEN":
        output = arg(args, 1)
        if output is None:
            await out.write("No output type specified.\n")
            return
        output = output.upper()
        if output not in ("JSON", "HUMAN"):
            await out.write("json or human must be the type of output\n")
            return
        await _stat_listen(ctx, output, statfmt.parse_filter(arg(args, 2)), out)
    elif sub == "SEND":
        host, port_text = arg(args, 1), arg(args, 2)
        if host is None:
            await out.write("No output host specified.\n")
            return
        if port_text is None or not ascii_digits(port_text):
            await out.write("No output port specified.\n")
            return
        if statfmt.parse_filter(arg(args, 3)).kind != "ALL":
            await out.write("Filters aren't supported when sending metrics.\n")
            return
        port = tcp_port(port_text)
        if port is None:
            await out.write(f"Invalid port: {port_text}\n")
            return
        try:
            sender = await statfmt.StatsdSender.open(host, port)
        except InvalidArgument as error:
            # Deliberate difference: the original's control loop died here (§12.9).
            await out.write(error.message + "\n")
            return
        hub.add_sender(sender)
        await out.write(f"Sending stats on {host}:{port}\n")
    elif sub == "STOP":
        kind = arg(args, 1)
        if kind is None:
            await out.write("Missing stop type.\n")
        elif kind == "SEND":  # case-sensitive, as the original
            hub.stop_senders()
            await out.write("Stopped sending stats.\n")
        else:
            await out.write(f'Unrecognized argument for STOP: "{kind}".\n')
    elif sub in ("ENABLE", "DISABLE"):
        kind = arg(args, 1)
        if kind is None:
            await out.write("Missing enable/disable type.\n")
        elif kind.lower() == "per-source":
            hub.per_source = sub == "ENABLE"
            await out.write(f"{sub} per-source applied.\n")
        else:
            await out.write(_STAT_SUBCOMMANDS)
    else:
        await out.write(_STAT_SUBCOMMANDS)


async def _stat_listen(
    ctx: Context, output: str, flt: statfmt.StatFilter, out: ControlOutput
) -> None:
    """Stream one report per cleanup interval until the reader goes away."""
    hub = ctx.stats
    if not out.streaming:
        # Not a socket (a startup script, say): nothing could stop a stream; one report.
        snapshot = hub.last or hub.collect(ctx.sessions, ctx.hostnames.cached, commit=False)
        await out.write(statfmt.render(snapshot, output, flt))
        return
    # Wake up now and then even without reports, to notice a reader that has gone; the
    # stream ends (and the connection closes) when the proxy shuts down.
    idle = max(1.0, 4 * ctx.settings.cleanup_interval_ms / 1000)
    listener = hub.listen()
    stopping = asyncio.ensure_future(ctx.shutdown.wait())
    try:
        while not out.closed and not stopping.done():
            report = asyncio.ensure_future(listener.queue.get())
            await asyncio.wait({report, stopping}, timeout=idle, return_when="FIRST_COMPLETED")
            if not report.done():
                report.cancel()
                continue
            await out.write(statfmt.render(report.result(), output, flt))
    finally:
        stopping.cancel()
        hub.unlisten(listener)
