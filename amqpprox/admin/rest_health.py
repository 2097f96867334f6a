"""REST for backend states and health checks: ``PUT /api/v1/backends/{name}/state`` and
``/api/v1/health-checks/default`` and ``/api/v1/health-checks/backends/{name}`` (GET,
PUT, DELETE).

The same operations as the control socket's ``BACKEND STATE`` and ``HEALTH`` commands
(``core.health_ops``); bodies are validated by the marshmallow schemas of
``core.definitions`` (which also carries states and checks in the definitions document)
and the values by ``core.health``. Errors, ETag and If-Match come from ``admin.rest``'s
middleware: these paths are configuration. ``GET /api/v1/backends[/{name}]`` (in
``admin.rest``) shows ``state`` and ``health`` too. Never imports the data plane.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from amqpprox.admin.rest import VERSION_PATH, backend_view, load_body
from amqpprox.core import health_ops
from amqpprox.core.context import Context
from amqpprox.core.definitions import BackendStateFields, HealthCheckFields
from amqpprox.core.health import CheckSettings


def _check_json(settings: CheckSettings | None) -> dict[str, int] | None:
    return None if settings is None else settings.as_dict()


class HealthApi:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        p = VERSION_PATH  # relative to the REST sub-app's mount
        return [
            web.put(f"{p}/backends/{{name}}/state", self.put_state),
            web.get(f"{p}/health-checks/default", self.get_default),
            web.put(f"{p}/health-checks/default", self.put_default),
            web.delete(f"{p}/health-checks/default", self.delete_default),
            web.get(f"{p}/health-checks/backends/{{name}}", self.get_backend),
            web.put(f"{p}/health-checks/backends/{{name}}", self.put_backend),
            web.delete(f"{p}/health-checks/backends/{{name}}", self.delete_backend),
        ]

    async def put_state(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await load_body(request, BackendStateFields())
        health_ops.set_backend_state(self.ctx, name, body["state"])
        return web.json_response(backend_view(self.ctx, self.ctx.state.backends[name]))

    # -- the default check ---------------------------------------------------------------
    def _default_json(self) -> dict[str, Any]:
        return {"check": _check_json(health_ops.get_health_check(self.ctx, None))}

    async def get_default(self, request: web.Request) -> web.Response:
        return web.json_response(self._default_json())

    async def put_default(self, request: web.Request) -> web.Response:
        await self._put(request, None)
        return web.json_response(self._default_json())

    async def delete_default(self, request: web.Request) -> web.Response:
        health_ops.delete_health_check(self.ctx, None)
        return web.Response(status=204)

    # -- a backend's own check -----------------------------------------------------------
    def _backend_json(self, name: str) -> dict[str, Any]:
        return {
            "backend": name,
            "check": _check_json(health_ops.get_health_check(self.ctx, name)),
            "effective": _check_json(self.ctx.state.effective_check(name)),
        }

    async def get_backend(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        health_ops.get_health_check(self.ctx, name)  # 404 for an unknown backend
        return web.json_response(self._backend_json(name))

    async def put_backend(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        await self._put(request, name)
        return web.json_response(self._backend_json(name))

    async def delete_backend(self, request: web.Request) -> web.Response:
        health_ops.delete_health_check(self.ctx, request.match_info["name"])
        return web.Response(status=204)

    async def _put(self, request: web.Request, name: str | None) -> None:
        body = await load_body(request, HealthCheckFields())
        health_ops.put_health_check(
            self.ctx,
            name,
            body["interval_ms"],
            timeout_ms=body.get("timeout_ms"),
            rise=body.get("rise"),
            fall=body.get("fall"),
        )
