"""REST for traces: /api/v1/traces[/{id}[/events]].

``POST /traces`` starts one (201 and the trace), ``GET /traces`` lists them,
``GET /traces/{id}`` shows one, ``DELETE /traces/{id}`` stops it (200 and the stopped
trace: it stays listed with its counters). ``GET /traces/{id}/events`` streams the
decoded frames as Server-Sent Events (one ``message`` event per frame, ``dropped`` events
when this stream fell behind and lost some, an ``end`` event with the trace when it
stopped); ``?format=jsonl`` returns the events buffered so far as JSON lines instead.
The same operations as the control socket (``core.trace_ops``); errors from
``admin.rest``'s middleware. Never imports the data plane.
"""

from __future__ import annotations

import json

from aiohttp import web
from marshmallow import Schema, fields, validate

from amqpprox.admin.rest import PREFIX, VERSION_PATH, HttpProblem, id_of, load_body
from amqpprox.core import trace_ops
from amqpprox.core.context import Context
from amqpprox.core.definitions import StrictInt
from amqpprox.core.definitions.schema import StrictBool
from amqpprox.core.traces import Trace

# An SSE comment this often keeps proxies and browsers from timing an idle stream out.
KEEPALIVE_SECONDS = 15.0


class TraceBody(Schema):
    session = StrictInt(validate=validate.Range(min=1))
    vhost = fields.String()
    source = fields.String()
    bodies = StrictBool(load_default=False)
    body_bytes = StrictInt(load_default=256)
    max_frames = StrictInt(load_default=10_000)
    max_seconds = fields.Float(load_default=300.0, allow_nan=False)
    file = fields.String(validate=validate.Length(min=1, max=4096))


def trace_id_of(request: web.Request) -> int:
    return id_of(request, "trace")


def sse(event: str | None, data: object) -> bytes:
    """One Server-Sent Event (``data`` as one line of JSON, so it cannot break framing)."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


class TracesApi:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        p = VERSION_PATH
        return [
            web.get(f"{p}/traces", self.list_traces),
            web.post(f"{p}/traces", self.start_trace),
            web.get(f"{p}/traces/{{id}}", self.get_trace),
            web.delete(f"{p}/traces/{{id}}", self.stop_trace),
            web.get(f"{p}/traces/{{id}}/events", self.events),
        ]

    async def list_traces(self, request: web.Request) -> web.Response:
        return web.json_response({"items": [t.json() for t in trace_ops.list_traces(self.ctx)]})

    async def start_trace(self, request: web.Request) -> web.Response:
        body = await load_body(request, TraceBody())
        flt = trace_ops.make_filter(
            session=body.get("session"), vhost=body.get("vhost"), source=body.get("source")
        )
        options = trace_ops.make_options(
            bodies=body["bodies"],
            body_bytes=body["body_bytes"],
            max_frames=body["max_frames"],
            max_seconds=body["max_seconds"],
            file=body.get("file"),
        )
        trace = trace_ops.start_trace(self.ctx, flt, options)
        location = f"{PREFIX}/traces/{trace.id}"
        return web.json_response(trace.json(), status=201, headers={"Location": location})

    async def get_trace(self, request: web.Request) -> web.Response:
        return web.json_response(trace_ops.get_trace(self.ctx, trace_id_of(request)).json())

    async def stop_trace(self, request: web.Request) -> web.Response:
        return web.json_response(trace_ops.stop_trace(self.ctx, trace_id_of(request)).json())

    async def events(self, request: web.Request) -> web.StreamResponse:
        trace = trace_ops.get_trace(self.ctx, trace_id_of(request))
        wanted = request.query.get("format", "sse")
        if wanted == "jsonl":
            lines = "".join(json.dumps(e) + "\n" for e in trace.buffered())
            return web.Response(text=lines, content_type="application/x-ndjson")
        if wanted != "sse":
            raise HttpProblem(400, "invalid_argument", "format must be sse or jsonl")
        return await stream_events(request, trace)


async def stream_events(request: web.Request, trace: Trace) -> web.StreamResponse:
    """The trace's events from now on as Server-Sent Events, until it stops or the client
    goes away (also the dashboard's live view, ``admin.dashboard_traces``)."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    reader = trace.reader()
    reported = 0
    try:
        await response.write(sse("trace", trace.json()))
        while True:
            await reader.wait(KEEPALIVE_SECONDS)
            events = reader.take()
            out: list[bytes] = []
            if reader.dropped != reported:
                reported = reader.dropped
                out.append(sse("dropped", {"dropped": reported}))
            out.extend(sse(None, event) for event in events)
            if not events and reader.closed:
                out.append(sse("end", trace.json()))
                await response.write(b"".join(out))
                break
            await response.write(b"".join(out) or b": keepalive\n\n")
    except ConnectionError:
        pass  # the reader went away: its stream simply ends
    finally:
        reader.detach()
    return response
