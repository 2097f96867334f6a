"""TRACE: start, stop and list on-demand AMQP traces (our addition; see docs/trace.md).

``TRACE START (SESSION id | VHOST vhost | SOURCE ip) [BODIES] [FILE name]`` replies
``Trace <id> started``; ``TRACE STOP id`` stops one; ``TRACE PRINT`` lists them, one line
each. The events themselves are read over REST (SSE or JSON lines), the dashboard, or the
trace's file. Errors are one line each. Imports the registry and ``core``, never
``amqpprox.proxy``.
"""

from __future__ import annotations

from amqpprox.admin.control.helpers import arg, shown
from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command
from amqpprox.core import trace_ops
from amqpprox.core.context import Context
from amqpprox.core.digits import ascii_digits
from amqpprox.core.traces import Trace
from amqpprox.errors import AmqpproxError, InvalidArgument

USAGE = "Usage: TRACE START (SESSION id | VHOST vhost | SOURCE ip) [BODIES] [FILE name]\n"


def trace_line(trace: Trace) -> str:
    """TRACE PRINT's line for one trace."""
    flt = trace.filter
    what = f"VHOST {shown(flt.vhost)}" if flt.vhost is not None else flt.text()
    line = (
        f"id={trace.id} filter={what.replace(' ', ':', 1)} state={trace.state.value} "
        f"frames={trace.frames} dropped={trace.dropped} "
        f"bodies={'Y' if trace.options.bodies else 'N'}"
    )
    if trace.options.file:
        line += f" file={shown(trace.options.file)}"
    if trace.stop_reason is not None:
        line += f" stopped={trace.stop_reason.value}"
    return line + "\n"


def _start(ctx: Context, args: list[str]) -> Trace:
    kind, value = (arg(args, 0) or "").upper(), arg(args, 1)
    if value is None or kind not in ("SESSION", "VHOST", "SOURCE"):
        raise InvalidArgument(USAGE.rstrip("\n"))
    if kind == "SESSION":
        if not ascii_digits(value) or len(value) > 18:
            raise InvalidArgument(f"session must be a positive integer: {value!r}")
        flt = trace_ops.make_filter(session=int(value))
    elif kind == "VHOST":
        flt = trace_ops.make_filter(vhost=value)
    else:
        flt = trace_ops.make_filter(source=value)
    bodies, path, rest = False, None, args[2:]
    while rest:
        word = rest.pop(0).upper()
        if word == "BODIES" and not bodies:
            bodies = True
        elif word == "FILE" and path is None and rest:
            path = rest.pop(0)
        else:
            raise InvalidArgument(USAGE.rstrip("\n"))
    return trace_ops.start_trace(ctx, flt, trace_ops.make_options(bodies=bodies, file=path))


@command(
    "TRACE",
    "START (SESSION id | VHOST vhost | SOURCE ip) [BODIES] [FILE name] - Trace the AMQP "
    "frames of one session, or of a vhost's or a client address's sessions",
    "STOP id - Stop a trace",
    "PRINT - Print the traces",
)
async def _trace(ctx: Context, args: list[str], out: ControlOutput) -> None:
    sub = (arg(args, 0) or "").upper()
    try:
        if sub == "START":
            trace = _start(ctx, args[1:])
            await out.write(f"Trace {trace.id} started\n")
        elif sub == "STOP":
            text = arg(args, 1) or ""
            if not ascii_digits(text) or len(text) > 18 or len(args) != 2:
                raise InvalidArgument("Usage: TRACE STOP id")
            trace = trace_ops.stop_trace(ctx, int(text))
            await out.write(
                f"Trace {trace.id} stopped: {trace.frames} frames, {trace.dropped} dropped\n"
            )
        elif sub == "PRINT" and len(args) == 1:
            traces = trace_ops.list_traces(ctx)
            await out.write("".join(trace_line(t) for t in traces) or "No traces.\n")
        else:
            await out.write(USAGE + "Usage: TRACE STOP id\nUsage: TRACE PRINT\n")
    except AmqpproxError as error:
        await out.write(error.message.replace("\n", " ") + "\n")
