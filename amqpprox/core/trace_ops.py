"""The trace operations every front end calls: start, stop, list, get (validation once).

``start_trace`` checks the filter (exactly one of a live session id, a vhost, a client
IP address) and the options (ranges below), creates the trace file when one is asked
for, and starts the trace; the data plane attaches its taps from the registry's hooks.
Typed errors: an unknown or ended session ``NotFound``/``InvalidState``, a bad filter or
option ``InvalidArgument``, an existing file ``AlreadyExists``, an unknown trace id
``NotFound``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os

from amqpprox.core import trace_file
from amqpprox.core.context import Context
from amqpprox.core.model import validate_label
from amqpprox.core.traces import StopReason, Trace, TraceFilter, TraceOptions
from amqpprox.errors import InvalidArgument, InvalidState, NotFound

log = logging.getLogger("amqpprox.trace")

MAX_BODY_BYTES = 65_536
MAX_FRAMES = 1_000_000_000
MAX_SECONDS = 86_400.0


def make_filter(
    *, session: int | None = None, vhost: str | None = None, source: str | None = None
) -> TraceFilter:
    if sum(v is not None for v in (session, vhost, source)) != 1:
        raise InvalidArgument("a trace needs exactly one of session, vhost or source")
    if session is not None:
        if isinstance(session, bool) or not isinstance(session, int) or session < 1:
            raise InvalidArgument(f"session must be a positive integer: {session!r}")
        return TraceFilter(session=session)
    if vhost is not None:
        return TraceFilter(vhost=validate_label("vhost", vhost))
    assert source is not None
    try:
        address = ipaddress.ip_address(source)
    except ValueError as error:
        raise InvalidArgument(f"source must be an IP address: {source!r}") from error
    return TraceFilter(source=str(address))


def make_options(
    *,
    bodies: bool = False,
    body_bytes: int = 256,
    max_frames: int = 10_000,
    max_seconds: float = 300.0,
    file: str | None = None,
) -> TraceOptions:
    if not 1 <= body_bytes <= MAX_BODY_BYTES:
        raise InvalidArgument(f"body_bytes must be 1..{MAX_BODY_BYTES}: {body_bytes}")
    if not 1 <= max_frames <= MAX_FRAMES:
        raise InvalidArgument(f"max_frames must be 1..{MAX_FRAMES}: {max_frames}")
    if not 0 < max_seconds <= MAX_SECONDS:
        raise InvalidArgument(f"max_seconds must be more than 0 and at most {MAX_SECONDS:g}")
    return TraceOptions(bodies, body_bytes, max_frames, float(max_seconds), file)


def start_trace(ctx: Context, flt: TraceFilter, options: TraceOptions) -> Trace:
    """Start a trace (and its file); a session filter names a live session."""
    if flt.session is not None:
        session = ctx.sessions.get(flt.session)
        if session is None:
            raise NotFound(f"session {flt.session} not found")
        if session.finished:
            raise InvalidState(f"session {flt.session} has ended")
        if session.protocol != "amqp":
            raise InvalidArgument(
                f"session {flt.session} is a {session.protocol} session: traces decode AMQP 0-9-1"
            )
    out = None
    if options.file is not None:
        path, out = trace_file.create(options.file, trace_directory(ctx))
        options = dataclasses.replace(options, file=path)
    trace = ctx.traces.start(flt, options)
    log.info("trace %d started: %s", trace.id, flt.text().encode("unicode_escape").decode())
    if out is not None:
        reader = trace.reader(trace_file.FILE_READER_EVENTS)
        ctx.traces.own(
            asyncio.get_running_loop().create_task(trace_file.write_lines(trace, reader, out))
        )
    return trace


def trace_directory(ctx: Context) -> str:
    """Where trace files are written (``Settings.trace_directory``, else ``traces`` under
    the log directory)."""
    settings = ctx.settings
    return settings.trace_directory or os.path.join(settings.log_directory, "traces")


def get_trace(ctx: Context, trace_id: int) -> Trace:
    trace = ctx.traces.get(trace_id)
    if trace is None:
        raise NotFound(f"trace {trace_id} not found")
    return trace


def stop_trace(ctx: Context, trace_id: int) -> Trace:
    """Stop a running trace (a stopped one stays as it is)."""
    get_trace(ctx, trace_id)
    trace = ctx.traces.stop(trace_id, StopReason.REQUESTED)
    assert trace is not None
    return trace


def list_traces(ctx: Context) -> list[Trace]:
    return ctx.traces.all()
