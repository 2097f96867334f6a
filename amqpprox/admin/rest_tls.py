"""REST for the TLS contexts: /api/v1/tls/{ingress|egress} and its /ciphers.

The same operations as the control socket's TLS commands (``core.operations``). A PUT
replaces the whole of a direction's settings: a context is built from them first, and
only a context that built is used, so a missing or unparsable file is a 400 naming the
file and the previous context keeps serving. Bodies are the ``TlsFields`` schema of
``core.definitions`` (which also carries both directions in the definitions document).
Errors, ETag and If-Match come from ``admin.rest``'s middleware: these paths are
configuration. Never imports the data plane.
"""

from __future__ import annotations

from aiohttp import web

from amqpprox.admin.rest import VERSION_PATH, load_body
from amqpprox.core import tls_ops
from amqpprox.core.context import Context
from amqpprox.core.definitions import TlsFields, tls_from_json, tls_json
from amqpprox.core.tls import Direction, parse_direction
from amqpprox.errors import NotFound

PATHS = ("ingress", "egress")


def _direction(request: web.Request) -> Direction:
    text = request.match_info["direction"]
    direction = parse_direction(text) if text in PATHS else None
    if direction is None:
        raise NotFound(f"no TLS direction {text!r}: ingress or egress")
    return direction


class TlsApi:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        p = VERSION_PATH  # relative to the REST sub-app's mount
        return [
            web.get(f"{p}/tls/{{direction}}", self.get_tls),
            web.put(f"{p}/tls/{{direction}}", self.put_tls),
            web.get(f"{p}/tls/{{direction}}/ciphers", self.get_ciphers),
        ]

    async def get_tls(self, request: web.Request) -> web.Response:
        return web.json_response(tls_json(tls_ops.tls_settings(self.ctx, _direction(request))))

    async def put_tls(self, request: web.Request) -> web.Response:
        direction = _direction(request)
        body = await load_body(request, TlsFields())
        settings = tls_ops.put_tls_settings(self.ctx, direction, tls_from_json(body))
        return web.json_response(tls_json(settings))

    async def get_ciphers(self, request: web.Request) -> web.Response:
        direction = _direction(request)
        return web.json_response({"ciphers": tls_ops.tls_ciphers(self.ctx, direction)})
