"""The operator's web dashboard: server-rendered pages over the same snapshots as REST.

Pages (aiohttp-jinja2 templates in ``amqpprox/templates``, CSS and JS in
``amqpprox/static``, both shipped in the package) are complete without JavaScript: the
current rows are in the HTML, and every action works as a plain POST form followed by a
server-rendered confirmation page. The small script only keeps pages live: it re-fetches
the page's *regions* (the same partial templates, rendered here, sent as JSON when the
request carries ``X-Dashboard-Live: 1``) every second, and turns the confirmation step
into a dialog.

Reads go through ``core.operations`` and ``core.stats``; actions call the same
operations as REST and the control socket. Rates come from ``admin.throughput``; the
action tables, the guard (login cookie, CSRF, origin) and the filters from
``admin.dashboard_support``. Must not import ``proxy``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup
from multidict import MultiDictProxy

from amqpprox import __version__
from amqpprox.admin import (
    dashboard_backends,
    dashboard_moves,
    dashboard_traces,
    humanize,
    throughput,
)
from amqpprox.admin.dashboard_support import (
    DEFAULT_PAGE_SIZE,
    FLASH_COOKIE,
    LIVE_HEADER,
    LIVE_INTERVAL_MS,
    LOGIN_COOKIE,
    PAGE_SIZES,
    ROUTE_PREFIX,
    SESSION_ACTIONS,
    SESSION_OPS,
    SESSION_SORTS,
    STATE_FILTERS,
    VHOST_ACTIONS,
    VHOST_OPS,
    Action,
    Forbidden,
    Guard,
    SessionLinks,
    parse_int,
    route_name,
    route_url,
    safe_next,
    template_filters,
)
from amqpprox.admin.rest import session_id_of
from amqpprox.admin.text import read_form
from amqpprox.core import operations as ops
from amqpprox.core.context import Context
from amqpprox.core.model import Mapping as VhostMapping
from amqpprox.core.stats import route_totals, session_stats
from amqpprox.errors import AmqpproxError, NotFound

PACKAGE = Path(__file__).resolve().parent.parent


class Dashboard:
    """The page handlers, bound to the one Context."""

    def __init__(self, ctx: Context, guard: Guard, rates: throughput.Throughput) -> None:
        self.ctx = ctx
        self.guard = guard
        self.rates = rates

    def routes(self) -> list[web.RouteDef]:
        p = ROUTE_PREFIX
        return [
            web.get("/", self.overview, name=f"{p}overview"),
            web.get("/sessions", self.sessions, name=f"{p}sessions"),
            web.get("/sessions/{id}", self.session, name=f"{p}session"),
            web.post("/sessions/{id}/{action}", self.session_action, name=f"{p}session-action"),
            web.get("/vhosts", self.vhosts, name=f"{p}vhosts"),
            web.post("/vhosts/{vhost}/{action}", self.vhost_action, name=f"{p}vhost-action"),
            web.get("/backends", self.backends, name=f"{p}backends"),
            web.get("/farms", self.farms, name=f"{p}farms"),
            web.get("/login", self.login_form, name=f"{p}login"),
            web.post("/login", self.login, name=f"{p}login-post"),
            web.post("/logout", self.logout, name=f"{p}logout"),
        ]

    # -- plumbing ------------------------------------------------------------------------
    def _common(self, request: web.Request) -> dict[str, Any]:
        guard = self.guard
        hide = guard.protect_reads and not guard.signed_in(request)  # who we are: after login
        return {
            "version": "" if hide else __version__,
            "hostname": "" if hide else self.ctx.settings.hostname,
            "datacenter": "" if hide else ops.get_datacenter(self.ctx),
            "csrf": guard.csrf,
            "token_configured": guard.token is not None,
            "signed_in": guard.token is not None and guard.signed_in(request),
            "needs_token": guard.token is not None and not guard.signed_in(request),
            "here": request.path_qs,
            "path": request.path,
            "live_interval": LIVE_INTERVAL_MS,
            "generated_at": humanize.timestamp(time.time()),
            "draining": self.ctx.shutdown.is_set(),
        }

    def _render(
        self,
        request: web.Request,
        template: str,
        context: dict[str, Any],
        regions: tuple[str, ...] = (),
        status: int = 200,
    ) -> web.StreamResponse:
        context = {**self._common(request), **context}
        if request.headers.get(LIVE_HEADER) and regions:
            rendered = {
                region: aiohttp_jinja2.render_string(f"_{region}.html", request, context)
                for region in regions
            }
            response: web.StreamResponse = web.json_response(
                {"regions": rendered, "generated_at": context["generated_at"]},
                status=status,
                headers={"Cache-Control": "no-store"},
            )
            return response
        flash = request.cookies.get(FLASH_COOKIE)
        if flash:
            context["flash"] = unquote(flash)[:300]
        response = aiohttp_jinja2.render_template(template, request, context, status=status)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        )
        response.headers["Referrer-Policy"] = "same-origin"
        if flash:
            response.del_cookie(FLASH_COOKIE, path="/")
        return response

    def _error(
        self, request: web.Request, status: int, title: str, message: str
    ) -> web.StreamResponse:
        if request.headers.get(LIVE_HEADER):
            return web.json_response({"error": title, "message": message}, status=status)
        return self._render(
            request, "error.html", {"title": title, "message": message}, status=status
        )

    def _done(
        self, request: web.Request, next_url: str, message: str, *, login: bool = False
    ) -> web.StreamResponse:
        response = web.Response(status=303, headers={"Location": next_url})
        response.set_cookie(
            FLASH_COOKIE, quote(message), httponly=True, samesite="Strict", path="/", max_age=60
        )
        if login:
            self.guard.set_login(request, response)
        return response

    async def _guarded(
        self, request: web.Request, view: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await view(request)
        except Forbidden as error:
            return self._error(request, 403, "Refused", str(error))
        except AmqpproxError as error:
            title = "Not found" if isinstance(error, NotFound) else "Refused"
            return self._error(request, error.http_status, title, error.message)

    # -- overview ------------------------------------------------------------------------
    async def overview(self, request: web.Request) -> web.StreamResponse:
        o = ops.overview(self.ctx)
        listeners = sorted(ops.list_listeners(self.ctx), key=lambda s: s.port)
        states: dict[str, int] = {}
        for s in self.ctx.sessions.live():
            states[s.state.value] = states.get(s.state.value, 0) + 1
        history = list(self.rates.history)
        now = time.time()
        window = self.rates.window
        charts = [
            {
                "title": "Bytes per second",
                "current": self.rates.current,
                "fmt": "bytes",
                "svg": Markup(
                    humanize.chart_svg(
                        [
                            humanize.Series(
                                "client → broker", "in", [(p.at, p.rates.in_bytes) for p in history]
                            ),
                            humanize.Series(
                                "broker → client",
                                "out",
                                [(p.at, p.rates.out_bytes) for p in history],
                            ),
                        ],
                        now=now,
                        window=window,
                        fmt="bytes",
                        title="Bytes per second over the last five minutes",
                    )
                ),
            },
            {
                "title": "Frames per second",
                "current": self.rates.current,
                "fmt": "frames",
                "svg": Markup(
                    humanize.chart_svg(
                        [
                            humanize.Series(
                                "client → broker",
                                "in",
                                [(p.at, p.rates.in_frames) for p in history],
                            ),
                            humanize.Series(
                                "broker → client",
                                "out",
                                [(p.at, p.rates.out_frames) for p in history],
                            ),
                        ],
                        now=now,
                        window=window,
                        fmt="count",
                        title="Frames per second over the last five minutes",
                    )
                ),
            },
        ]
        context = {
            "o": o,
            "listeners": listeners,
            "states": states,
            "rates": self.rates.current,
            "charts": charts,
            "window_label": f"{window / 60:g} minutes" if window >= 120 else f"{window:g} seconds",
            "window_short": (
                f"\u2212{window / 60:g} min" if window >= 120 else f"\u2212{window:g} s"
            ),
            "default_farm": ops.get_default_farm(self.ctx),
            "paused_vhosts": [v for v, p in ops.vhost_states(self.ctx).items() if p],
        }
        return self._render(request, "overview.html", context, ("overview",))

    # -- sessions ------------------------------------------------------------------------
    def _vhost_names(self) -> list[str]:
        """Configured vhosts and those a session opened: a vhost a client only named (a
        refused handshake) is no row (``SessionRegistry.vhost_label``)."""
        names = set(ops.vhost_states(self.ctx)) | {m.vhost for m in ops.list_mappings(self.ctx)}
        label = self.ctx.sessions.vhost_label
        names |= {name for s in self.ctx.sessions if (name := label(s))}
        return sorted(names)

    async def sessions(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._sessions)

    async def _sessions(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        vhost = q.get("vhost", "")
        backend = q.get("backend", "")
        client = q.get("client", "").strip()
        state = q.get("state", "live")
        if state not in STATE_FILTERS:
            state = "live"
        sort = q.get("sort", "id")
        if sort not in SESSION_SORTS:
            sort = "id"
        desc = q.get("dir") == "desc"
        size = parse_int(q.get("size"), DEFAULT_PAGE_SIZE)
        if size not in PAGE_SIZES:
            size = DEFAULT_PAGE_SIZE
        found = ops.query_sessions(
            self.ctx,
            vhost=vhost if "vhost" in q and vhost != "*" else None,
            backend=backend or None,
            state=state if state not in ("live", "all") else None,
            user=q.get("user") or None,
            sort=SESSION_SORTS[sort] or "id",
            reverse=desc,
        )
        if state == "live":
            found = [s for s in found if not s.finished]
        if client:
            needle = client.casefold()
            found = [
                s
                for s in found
                if needle in f"{s.client[0]}:{s.client[1]}".casefold()
                or needle in s.connection_name.casefold()
            ]
        if sort in ("in_rate", "out_rate"):
            field = "in_bytes" if sort == "in_rate" else "out_bytes"
            found.sort(key=lambda s: (getattr(self.rates.of_session(s.id), field), s.id))
            if desc:
                found.reverse()
        page_count = max(1, -(-len(found) // size))
        page = min(max(1, parse_int(q.get("page"), 1)), page_count)
        items = found[(page - 1) * size : page * size]
        params = {
            "vhost": vhost if "vhost" in q else None,
            "backend": backend or None,
            "client": client or None,
            "user": q.get("user") or None,
            "state": state if state != "live" else None,
            "size": size if size != DEFAULT_PAGE_SIZE else None,
        }

        links = SessionLinks(params, sort, desc, page)
        backends = sorted(
            set(self.ctx.state.backends)
            | {s.backend_name for s in self.ctx.sessions if s.backend_name}
        )
        context = {
            "items": [(s, self.rates.of_session(s.id)) for s in items],
            "actions": SESSION_ACTIONS,
            "filtered": len(found),
            "total": len(self.ctx.sessions.live()),
            "page": page,
            "page_count": page_count,
            "first": (page - 1) * size + 1 if found else 0,
            "last": (page - 1) * size + len(items),
            "size": size,
            "sizes": PAGE_SIZES,
            "sort": sort,
            "desc": desc,
            "link": links.link,
            "sort_link": links.sort_link,
            "aria_sort": links.aria_sort,
            "f_vhost": vhost if "vhost" in q else "*",
            "f_backend": backend,
            "f_client": client,
            "f_state": state,
            "vhosts": self._vhost_names(),
            "backends": backends,
            "states": STATE_FILTERS,
            "filtering": bool(("vhost" in q and vhost != "*") or backend or client or q.get("user"))
            or state != "live",
        }
        return self._render(request, "sessions.html", context, ("sessions_table",))

    async def session(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._session)

    async def _session(self, request: web.Request) -> web.StreamResponse:
        session = ops.get_session(self.ctx, session_id_of(request))
        context = {
            "s": session,
            "stats": session_stats(session),
            "r": self.rates.of_session(session.id),
            "actions": SESSION_ACTIONS,
        }
        return self._render(request, "session.html", context, ("session_detail",))

    async def session_action(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._session_action)

    async def _session_action(self, request: web.Request) -> web.StreamResponse:
        form = await read_form(request)
        self.guard.check_post(request, form)
        name = request.match_info["action"]
        action = SESSION_ACTIONS.get(name)
        if action is None:
            raise NotFound(f"no session action {name!r}")
        session = ops.get_session(self.ctx, session_id_of(request))
        target = f"session {session.id}"
        next_url = safe_next(form.get("next"), "/sessions")
        reason = str(form.get("reason") or "OK").strip()[:200] or "OK"
        shown_reason = str(form.get("reason", "")) if name == "disconnect" else None
        confirm = self._confirmation(request, form, action, target, next_url, reason=shown_reason)
        if confirm is not None:
            return confirm
        self.guard.audit(request, f"{name} {target} {reason!r}")
        if name == "disconnect":
            ops.disconnect_session(self.ctx, session.id, reason)
        else:
            SESSION_OPS[name](self.ctx, session.id)
        return self._done(
            request,
            next_url,
            f"{action.label}: {target} ({session.client[0]}:{session.client[1]}).",
            login=self._token_given(form),
        )

    # -- vhosts --------------------------------------------------------------------------
    async def vhosts(self, request: web.Request) -> web.StreamResponse:
        states = ops.vhost_states(self.ctx)
        mappings = {m.vhost: m for m in ops.list_mappings(self.ctx)}
        default_farm = ops.get_default_farm(self.ctx)
        counts: dict[str, dict[str, int]] = {}
        for s in self.ctx.sessions.live():
            per = counts.setdefault(self.ctx.sessions.vhost_label(s), {})
            per[s.state.value] = per.get(s.state.value, 0) + 1
        rows = []
        for name in self._vhost_names():
            mapping: VhostMapping | None = mappings.get(name)
            per = counts.get(name, {})
            rows.append(
                {
                    "name": name,
                    "paused": states.get(name, False),
                    "mapping": mapping,
                    "route": (mapping.kind, mapping.target)
                    if mapping
                    else (("default farm", default_farm) if default_farm else None),
                    "sessions": sum(per.values()),
                    "states": per,
                    "broken": self.ctx.state.broken_target(name),
                }
            )
        context = {"rows": rows, "actions": VHOST_ACTIONS, "default_farm": default_farm}
        context |= dashboard_moves.vhosts_context(self.ctx, request)
        return self._render(request, "vhosts.html", context, ("vhosts_table", "migrations"))

    async def vhost_action(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._vhost_action)

    async def _vhost_action(self, request: web.Request) -> web.StreamResponse:
        form = await read_form(request)
        self.guard.check_post(request, form)
        vhost, name = request.match_info["vhost"], request.match_info["action"]
        action = VHOST_ACTIONS.get(name)
        if action is None:
            raise NotFound(f"no vhost action {name!r}")
        next_url = safe_next(form.get("next"), "/vhosts")
        confirm = self._confirmation(request, form, action, repr(vhost), next_url)
        if confirm is not None:
            return confirm
        self.guard.audit(request, f"{name} vhost {vhost!r}")
        affected = VHOST_OPS[name](self.ctx, vhost)
        n = len(affected)
        return self._done(
            request,
            next_url,
            f"{action.label}: vhost {vhost!r} ({n} session{'s' if n != 1 else ''} affected).",
            login=self._token_given(form),
        )

    # -- configuration -------------------------------------------------------------------
    async def backends(self, request: web.Request) -> web.StreamResponse:
        hub = self.ctx.stats
        totals = route_totals(self.ctx.sessions)
        farms_of: dict[str, list[str]] = {}
        for farm in ops.list_farms(self.ctx):
            for member in farm.members:
                farms_of.setdefault(member, []).append(farm.name)
        live: dict[str, int] = {}
        flow: dict[str, list[float]] = {}
        for s in self.ctx.sessions.live():
            if s.backend_name:
                live[s.backend_name] = live.get(s.backend_name, 0) + 1
                r = self.rates.of_session(s.id)
                f = flow.setdefault(s.backend_name, [0.0, 0.0])
                f[0] += r.in_bytes
                f[1] += r.out_bytes
        traffic: dict[str, list[int]] = {}
        for (_, backend), t in totals.items():
            if backend:
                acc = traffic.setdefault(backend, [0, 0, 0])
                acc[0] += t.in_bytes
                acc[1] += t.out_bytes
                acc[2] += t.opened
        rows = [
            {
                "b": b,
                "farms": farms_of.get(b.name, []),
                "sessions": live.get(b.name, 0),
                "failures": hub.connect_failures.get(b.name, 0),
                "in_rate": flow.get(b.name, [0.0, 0.0])[0],
                "out_rate": flow.get(b.name, [0.0, 0.0])[1],
                "in_bytes": traffic.get(b.name, [0, 0, 0])[0],
                "out_bytes": traffic.get(b.name, [0, 0, 0])[1],
                "opened": traffic.get(b.name, [0, 0, 0])[2],
            }
            for b in sorted(ops.list_backends(self.ctx), key=lambda b: b.name)
        ]
        context = {"rows": rows, **dashboard_moves.backends_context(self.ctx, request)}
        return self._render(request, "backends.html", context, ("backends_table", "evictions"))

    async def farms(self, request: web.Request) -> web.StreamResponse:
        mappings = ops.list_mappings(self.ctx)
        vhosts_of: dict[tuple[str, str], list[str]] = {}
        for m in mappings:
            vhosts_of.setdefault((m.kind, m.target), []).append(m.vhost)
        context = {
            "farms": sorted(ops.list_farms(self.ctx), key=lambda f: f.name),
            "mappings": mappings,
            "vhosts_of": vhosts_of,
            "default_farm": ops.get_default_farm(self.ctx),
            "backend_names": set(self.ctx.state.backends),
            "farm_names": set(self.ctx.state.farms),
        }
        return self._render(request, "farms.html", context, ("farms_body",))

    # -- login ---------------------------------------------------------------------------
    async def login_form(self, request: web.Request) -> web.StreamResponse:
        next_url = safe_next(request.query.get("next"))
        if self.guard.token is None or self.guard.signed_in(request):
            raise web.HTTPSeeOther(next_url)
        return self._render(request, "login.html", {"next": next_url, "error": None})

    async def login(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._login)

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await read_form(request)
        self.guard.check_post(request, form)
        next_url = safe_next(form.get("next"))
        if self.guard.token is None:
            raise web.HTTPSeeOther(next_url)
        if not self.guard.token_ok(str(form.get("token", ""))):
            return self._render(
                request,
                "login.html",
                {"next": next_url, "error": "That is not the admin token."},
                status=401,
            )
        return self._done(request, next_url, "Signed in.", login=True)

    async def logout(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._logout)

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        form = await read_form(request)
        self.guard.check_post(request, form)
        self.guard.revoke(request)
        response = self._done(request, "/", "Signed out.")
        response.del_cookie(LOGIN_COOKIE, path="/")
        return response

    # -- the confirmation step -----------------------------------------------------------
    def _token_given(self, form: Mapping[str, Any]) -> bool:
        return self.guard.token is not None and "token" in form

    def _confirmation(
        self,
        request: web.Request,
        form: MultiDictProxy[Any],
        action: Action,
        target: str,
        next_url: str,
        *,
        reason: str | None = None,
    ) -> web.StreamResponse | None:
        """The confirmation page, unless this POST confirms (and is authorised) already;
        ``reason`` (not None) is a field of the page, prefilled."""
        context: dict[str, Any] = {
            "action": action,
            "question": action.title.format(target=target),
            "next": next_url,
            "reason": reason,
            "fields": {},
        }
        return self._confirm_page(request, form, "confirm.html", context)

    def _confirm_page(
        self,
        request: web.Request,
        form: MultiDictProxy[Any],
        template: str,
        context: dict[str, Any],
    ) -> web.StreamResponse | None:
        """None when this POST confirms (and is authorised) already; else ``template``
        with ``context``, the URL to post back to and the token error if any."""
        error = None
        if form.get("confirm") == "yes":
            if self.guard.signed_in(request):
                return None
            given = str(form.get("token", ""))
            if given and self.guard.token_ok(given):
                return None
            error = "That is not the admin token." if given else "The admin token is required."
        context |= {
            "post_to": route_url(request.app.router, route_name(request), **request.match_info),
            "error": error,
        }
        return self._render(request, template, context, status=401 if error else 200)


def setup(app: web.Application, ctx: Context, guard: Guard) -> None:
    """Templates, static files, the live sampler and the dashboard's routes on ``app``.

    Its login middleware (``dashboard_support.login_middleware(guard)``) is in the app's
    middleware list, which ``admin.app`` composes.
    """
    rates = throughput.setup(app, ctx)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("amqpprox", "templates"),
        filters=template_filters(),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    dashboard = Dashboard(ctx, guard, rates)
    dashboard_traces.setup(app, ctx, dashboard)  # before /sessions/{id}/{action}
    app.router.add_routes(dashboard.routes())
    dashboard_backends.setup(app, dashboard)  # backend states: drain / maint / ready
    app.router.add_routes(dashboard_moves.MovesViews(dashboard).routes())  # migrate, evict
    aiohttp_jinja2.get_env(app).globals["action_url"] = partial(route_url, app.router)
    app.router.add_static(
        "/static/", PACKAGE / "static", name=f"{ROUTE_PREFIX}static", append_version=True
    )
