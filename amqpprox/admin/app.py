"""The aiohttp admin application: health endpoints, the REST API, the dashboard and metrics.

``make_admin_app(ctx)`` builds the app around the one Context (stored under a typed
``web.AppKey``). It never imports the data plane.
"""

from __future__ import annotations

from aiohttp import web

from amqpprox import __version__
from amqpprox.admin import dashboard, metrics, rest, rest_limits, rest_tls
from amqpprox.core.context import Context

CONTEXT = web.AppKey("context", Context)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the event loop answers."""
    return web.json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: startup finished and no shutdown in progress."""
    ctx = request.app[CONTEXT]
    if ctx.shutdown.is_set():
        return web.json_response({"status": "draining"}, status=503)
    if not ctx.ready.is_set():
        return web.json_response({"status": "starting"}, status=503)
    return web.json_response(
        {"status": "ready", "listeners": [spec.port for spec in ctx.listeners.specs()]}
    )


def make_admin_app(ctx: Context) -> web.Application:
    app = web.Application()
    app[CONTEXT] = ctx
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    rest.setup(app, ctx)
    rest_limits.setup(app, ctx)
    rest_tls.setup(app, ctx)
    metrics.setup(app, ctx)
    dashboard.setup(app, ctx)
    return app
