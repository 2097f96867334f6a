"""The dashboard's trace pages: start a trace from a session or a vhost, watch it live,
list them all (``/traces``: running and recently stopped, whoever started them).

``Trace`` buttons (a session's page, each vhost row) post to ``/sessions/{id}/trace`` or
``/vhosts/{vhost}/trace`` (CSRF-checked and confirmed like every dashboard action), which
start a trace without bodies and with the default limits and redirect to
``/traces/{id}``: the trace's facts, a stop button and a live table of its frames
(``static/trace.js`` reads ``/traces/{id}/events``, Server-Sent Events, with the
dashboard's login rather than the REST token). Same operations as REST and the control
socket (``core.trace_ops``). Must not import ``proxy``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp_jinja2
from aiohttp import web

from amqpprox.admin.dashboard_support import ROUTE_PREFIX, Action, safe_next
from amqpprox.admin.rest import session_id_of
from amqpprox.admin.rest_traces import stream_events, trace_id_of
from amqpprox.admin.text import read_form
from amqpprox.core import trace_ops
from amqpprox.core.context import Context
from amqpprox.core.model import validate_label

if TYPE_CHECKING:
    from amqpprox.admin.dashboard import Dashboard

TRACE_ACTION = Action(
    "Trace",
    "Trace {target}?",
    "Its AMQP frames are shown live, decoded (message bodies are not captured). The trace "
    "stops by itself after 10,000 frames or 5 minutes.",
)
TRACE_VHOST_ACTION = Action(
    "Trace",
    "Trace vhost {target}?",
    "The AMQP frames of its sessions, and of those that open later, are shown live, "
    "decoded (message bodies are not captured). The trace stops by itself after 10,000 "
    "frames or 5 minutes.",
)
STOP_ACTION = Action("Stop", "Stop trace {target}?", "No more frames are recorded.")


class TraceViews:
    """The trace routes, drawing with the dashboard's own plumbing (``Dashboard``)."""

    def __init__(self, ctx: Context, pages: Dashboard) -> None:
        self.ctx = ctx
        self.pages = pages

    def routes(self) -> list[web.RouteDef]:
        """Added before the dashboard's own: ``/sessions/{id}/trace`` is not one of its
        session actions."""
        p = ROUTE_PREFIX
        return [
            web.post("/sessions/{id}/trace", self.trace_session, name=f"{p}trace-session"),
            web.post("/vhosts/{vhost}/trace", self.trace_vhost, name=f"{p}trace-vhost"),
            web.get("/traces", self.traces_page, name=f"{p}traces"),
            web.get("/traces/{id}", self.trace_page, name=f"{p}trace"),
            web.get("/traces/{id}/events", self.trace_events, name=f"{p}trace-events"),
            web.post("/traces/{id}/stop", self.stop, name=f"{p}trace-stop"),
        ]

    async def trace_session(self, request: web.Request) -> web.StreamResponse:
        async def view(request: web.Request) -> web.StreamResponse:
            session_id = session_id_of(request)
            target = f"session {session_id}"
            return await self._start(request, TRACE_ACTION, target, session=session_id)

        return await self.pages._guarded(request, view)

    async def trace_vhost(self, request: web.Request) -> web.StreamResponse:
        async def view(request: web.Request) -> web.StreamResponse:
            vhost = validate_label("vhost", request.match_info["vhost"])
            return await self._start(request, TRACE_VHOST_ACTION, f"'{vhost}'", vhost=vhost)

        return await self.pages._guarded(request, view)

    async def _start(
        self,
        request: web.Request,
        action: Action,
        target: str,
        *,
        session: int | None = None,
        vhost: str | None = None,
    ) -> web.StreamResponse:
        pages = self.pages
        form = await read_form(request)
        pages.guard.check_post(request, form)
        flt = trace_ops.make_filter(session=session, vhost=vhost)
        options = trace_ops.make_options()
        next_url = safe_next(form.get("next"), "/sessions")
        confirm = pages._confirmation(request, form, action, target, next_url)
        if confirm is not None:
            return confirm
        trace = trace_ops.start_trace(self.ctx, flt, options)
        what = action.title.format(target=target).removesuffix("?")
        pages.guard.audit(request, f"{what} (trace {trace.id})")
        return pages._done(
            request,
            f"/traces/{trace.id}",
            f"Trace {trace.id} started: {what.removeprefix('Trace ')}.",
            login=pages._token_given(form),
        )

    async def traces_page(self, request: web.Request) -> web.StreamResponse:
        async def view(request: web.Request) -> web.StreamResponse:
            newest_first = reversed(trace_ops.list_traces(self.ctx))  # listed by id
            context = {"traces": [t.json() for t in newest_first], "stop_action": STOP_ACTION}
            return self.pages._render(request, "traces.html", context, ("traces_table",))

        return await self.pages._guarded(request, view)

    async def trace_page(self, request: web.Request) -> web.StreamResponse:
        async def view(request: web.Request) -> web.StreamResponse:
            trace = trace_ops.get_trace(self.ctx, trace_id_of(request))
            context = {
                "t": trace.json(),
                "stop_action": STOP_ACTION,
                "events_url": f"/traces/{trace.id}/events",
            }
            return self.pages._render(request, "trace.html", context)

        return await self.pages._guarded(request, view)

    async def trace_events(self, request: web.Request) -> web.StreamResponse:
        async def view(request: web.Request) -> web.StreamResponse:
            return await stream_events(request, trace_ops.get_trace(self.ctx, trace_id_of(request)))

        return await self.pages._guarded(request, view)

    async def stop(self, request: web.Request) -> web.StreamResponse:
        async def view(request: web.Request) -> web.StreamResponse:
            pages = self.pages
            form = await read_form(request)
            pages.guard.check_post(request, form)
            trace_id = trace_id_of(request)
            trace_ops.get_trace(self.ctx, trace_id)
            next_url = safe_next(form.get("next"), f"/traces/{trace_id}")
            confirm = pages._confirmation(request, form, STOP_ACTION, str(trace_id), next_url)
            if confirm is not None:
                return confirm
            trace = trace_ops.stop_trace(self.ctx, trace_id)
            pages.guard.audit(request, f"stop trace {trace_id}")
            return pages._done(
                request,
                next_url,
                f"Trace {trace_id} stopped: {trace.frames} frames, {trace.dropped} dropped.",
                login=pages._token_given(form),
            )

        return await self.pages._guarded(request, view)


def setup(app: web.Application, ctx: Context, pages: Dashboard) -> None:
    """The trace routes (before the dashboard's own) and the Trace button's action."""
    app.router.add_routes(TraceViews(ctx, pages).routes())
    env = aiohttp_jinja2.get_env(app)
    env.globals["trace_action"] = TRACE_ACTION
    env.globals["trace_vhost_action"] = TRACE_VHOST_ACTION
