"""Bearer-token protection of the admin plane (``--adminToken``, ``AMQPPROX_ADMIN_TOKEN``).

With a token set, every mutating request (anything but GET, HEAD and OPTIONS) needs
``Authorization: Bearer <token>``; with ``--adminTokenForReads`` reads need it too,
except the health probes ``/healthz`` and ``/readyz``, and except what the caller
exempts (the dashboard's pages, which have their own login). Tokens are compared in
constant time. Without a token the middleware is not installed at all.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def needs_token(request: web.Request, *, protect_reads: bool) -> bool:
    if request.path in OPEN_PATHS:
        return False
    return protect_reads or request.method not in READ_METHODS


def token_matches(header: str, token: str) -> bool:
    """Whether ``header`` is ``Bearer <token>``, compared in constant time."""
    given = header.encode("utf-8", "surrogateescape")
    expected = f"Bearer {token}".encode()
    return hmac.compare_digest(given, expected)


def unauthorized() -> web.Response:
    return web.json_response(
        {"error": "unauthorized", "message": "this request needs Authorization: Bearer <token>"},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="amqpprox"'},
    )


def token_middleware(
    token: str,
    *,
    protect_reads: bool = False,
    exempt: Callable[[web.Request], bool] = lambda request: False,
) -> Middleware:
    """Refuse requests without the bearer token, except the probes and ``exempt`` ones."""
    if not token:
        raise ValueError("the admin token must not be empty")

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            needs_token(request, protect_reads=protect_reads)
            and not exempt(request)
            and not token_matches(request.headers.get("Authorization", ""), token)
        ):
            return unauthorized()
        return await handler(request)

    return check_token
