"""REST for LIMIT and AUTH: /api/v1/limits[/default | /vhosts/{vhost}] and /api/v1/auth.

The same operations as the control socket (``core.limits``); bodies are validated by the
marshmallow schemas of ``core.definitions`` (which also carries limits and auth in the
definitions document) and the values by ``core.model``. Errors, ETag and If-Match come
from ``admin.rest``'s middleware: these paths are configuration.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from amqpprox.admin.rest import VERSION_PATH, load_body
from amqpprox.core import limits as lim
from amqpprox.core.context import Context
from amqpprox.core.definitions import (
    AuthFields,
    DefaultLimitsFields,
    VhostLimitsFields,
    auth_from_json,
    auth_json,
    limits_from_json,
    limits_json,
)
from amqpprox.errors import NotFound


class LimitsApi:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        p = VERSION_PATH  # relative to the REST sub-app's mount
        return [
            web.get(f"{p}/limits", self.list_limits),
            web.get(f"{p}/limits/default", self.get_default),
            web.put(f"{p}/limits/default", self.put_default),
            web.delete(f"{p}/limits/default", self.delete_default),
            web.get(f"{p}/limits/vhosts/{{vhost}}", self.get_vhost),
            web.put(f"{p}/limits/vhosts/{{vhost}}", self.put_vhost),
            web.delete(f"{p}/limits/vhosts/{{vhost}}", self.delete_vhost),
            web.get(f"{p}/auth", self.get_auth),
            web.put(f"{p}/auth", self.put_auth),
        ]

    def _vhost_json(self, vhost: str) -> dict[str, Any]:
        own = lim.vhost_limits(self.ctx, vhost)
        return {
            "vhost": vhost,
            **limits_json(own, vhost=True),
            "effective": limits_json(lim.effective_limits(self.ctx, vhost), vhost=True),
        }

    async def list_limits(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "default": limits_json(lim.default_limits(self.ctx)),
                "vhosts": {
                    vhost: limits_json(limits, vhost=True)
                    for vhost, limits in lim.all_vhost_limits(self.ctx).items()
                },
            }
        )

    async def get_default(self, request: web.Request) -> web.Response:
        return web.json_response(limits_json(lim.default_limits(self.ctx)))

    async def put_default(self, request: web.Request) -> web.Response:
        body = await load_body(request, DefaultLimitsFields())
        limits = lim.put_default_limits(self.ctx, limits_from_json(body))
        return web.json_response(limits_json(limits))

    async def delete_default(self, request: web.Request) -> web.Response:
        lim.put_default_limits(self.ctx, limits_from_json({}))
        return web.Response(status=204)

    async def get_vhost(self, request: web.Request) -> web.Response:
        return web.json_response(self._vhost_json(request.match_info["vhost"]))

    async def put_vhost(self, request: web.Request) -> web.Response:
        vhost = request.match_info["vhost"]
        body = await load_body(request, VhostLimitsFields())
        limits = limits_from_json(body)
        created = lim.put_vhost_limits(self.ctx, vhost, limits)
        if limits.empty:  # nothing of its own: the vhost follows the default
            return web.json_response(
                {
                    "vhost": vhost,
                    **limits_json(limits, vhost=True),
                    "effective": limits_json(lim.effective_limits(self.ctx, vhost), vhost=True),
                }
            )
        return web.json_response(self._vhost_json(vhost), status=201 if created else 200)

    async def delete_vhost(self, request: web.Request) -> web.Response:
        vhost = request.match_info["vhost"]
        if not lim.delete_vhost_limits(self.ctx, vhost):
            raise NotFound(f"vhost {vhost!r} has no limits of its own")
        return web.Response(status=204)

    async def get_auth(self, request: web.Request) -> web.Response:
        return web.json_response(auth_json(lim.get_auth(self.ctx)))

    async def put_auth(self, request: web.Request) -> web.Response:
        body = await load_body(request, AuthFields())
        config = lim.set_auth(self.ctx, auth_from_json(body))
        return web.json_response(auth_json(config))
