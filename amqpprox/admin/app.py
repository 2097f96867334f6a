"""The aiohttp admin application: health endpoints, the REST API, the dashboard and metrics.

``make_admin_app(ctx)`` composes two apps, each with its middlewares in one list:

* the root app: ``/healthz``, ``/readyz``, ``/metrics`` and the dashboard (its pages
  are at ``/``, ``/sessions``, ...; aiohttp cannot mount a sub-app at ``/``). Its
  middlewares wrap the REST sub-app's too: the ``Host`` check (DNS rebinding), the
  ``Origin`` check of state-changing requests (CSRF; the dashboard's routes check it
  themselves), the dashboard's login (dashboard routes only), the bearer token
  (``--adminToken``: everything but the probes and the dashboard's routes) and JSON-only
  REST writes; all but the login are in ``admin.security``.
* the REST sub-app, mounted at ``/api``: its routes (``/api/v1/...``) and its one
  middleware, JSON errors with ETag and If-Match (``admin.rest``).

The one Context is stored once, on the root app, under ``keys.CONTEXT`` (and the dashboard's
guard under ``dashboard_support.GUARD``). Never imports
the data plane.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from amqpprox import __version__
from amqpprox.admin import dashboard, dashboard_support, metrics, rest, security
from amqpprox.admin.keys import CONTEXT
from amqpprox.admin.rest_health import HealthApi
from amqpprox.admin.rest_limits import LimitsApi
from amqpprox.admin.rest_moves import MovesApi
from amqpprox.admin.rest_tls import TlsApi
from amqpprox.admin.rest_traces import TracesApi
from amqpprox.core.context import Context


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the event loop answers."""
    return web.json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: startup finished and no shutdown in progress."""
    ctx = request.config_dict[CONTEXT]
    if ctx.shutdown.is_set():
        return web.json_response({"status": "draining"}, status=503)
    if not ctx.ready.is_set():
        return web.json_response({"status": "starting"}, status=503)
    return web.json_response(
        {"status": "ready", "listeners": [spec.port for spec in ctx.listeners.specs()]}
    )


def make_rest_app(ctx: Context) -> web.Application:
    """The REST sub-app: routes relative to its mount (``rest.MOUNT``)."""
    api = web.Application(middlewares=[rest.error_middleware(ctx)])
    api.router.add_routes(MovesApi(ctx).routes())  # first: /vhosts/{vhost}/migrate
    api.router.add_routes(rest.RestApi(ctx).routes())
    api.router.add_routes(LimitsApi(ctx).routes())
    api.router.add_routes(TlsApi(ctx).routes())
    api.router.add_routes(HealthApi(ctx).routes())
    api.router.add_routes(TracesApi(ctx).routes())
    api.router.add_get(f"{rest.VERSION_PATH}/stats", metrics.stats_handler)
    return api


def make_admin_app(ctx: Context) -> web.Application:
    settings = ctx.settings
    guard = dashboard_support.Guard(
        settings.admin_token, protect_reads=settings.admin_token_for_reads
    )
    dashboard_route = dashboard_support.is_dashboard_route
    # Outermost first: Host (rebinding), Origin (CSRF), the dashboard's login and the bearer
    # token (their scopes do not overlap), then JSON-only REST writes.
    middlewares: list[Middleware] = [
        security.host_middleware(security.allowed_hosts(settings)),
        security.origin_middleware(exempt=dashboard_route),
        dashboard_support.login_middleware(guard),
    ]
    if settings.admin_token:
        middlewares.append(
            security.token_middleware(
                settings.admin_token,
                protect_reads=settings.admin_token_for_reads,
                exempt=dashboard_route,
            )
        )
    middlewares.append(security.json_middleware())
    app = web.Application(middlewares=middlewares)
    app[CONTEXT] = ctx
    app[dashboard_support.GUARD] = guard
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    metrics.setup(app, ctx)
    dashboard.setup(app, ctx, guard)
    app.add_subapp(rest.MOUNT, make_rest_app(ctx))
    return app
