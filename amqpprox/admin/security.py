"""Who may ask the admin plane what: the request checks that run before any handler.

Four middlewares, in the order ``admin.app`` installs them:

* ``host_middleware``: DNS rebinding. A ``Host`` must name this admin plane: a loopback
  name or address (``localhost``, ``127.0.0.1``, ``[::1]``), the bind address
  (``--adminHost``) or one of ``--adminAllowedHosts``, with any port or none; others get
  421 Misdirected Request (JSON under ``/api/``, plain text elsewhere). ``/healthz`` and
  ``/readyz`` are exempt: Kubernetes probes send the pod's IP as ``Host``, and the probes
  reveal nothing but the version and the listening ports, and change nothing. A request
  without ``Host`` (HTTP/1.0) is let through: browsers always send one.
* ``origin_middleware``: cross-site request forgery. A state-changing request (anything
  but GET, HEAD, OPTIONS) whose ``Origin`` is not this admin plane's own
  (``scheme://Host``), ``null`` included, or whose ``Sec-Fetch-Site`` is neither
  ``same-origin`` nor ``none``, gets 403. Clients that send neither header (curl,
  automation) are untouched. The dashboard's routes are exempt here only because their
  handlers make the same check (``cross_site``) next to their CSRF token, with a page.
* ``token_middleware``: with ``--adminToken``, ``Authorization: Bearer <token>`` on
  every mutating request (and with ``--adminTokenForReads`` on reads), except the probes
  and what the caller exempts (the dashboard's pages, which have their own login);
  compared in constant time. Not installed without a token.
* ``json_middleware``: every REST POST (``/api/...``), with a body or without, and every
  REST request that carries a body, must say ``Content-Type: application/json`` (or
  ``application/*+json``), else 415. HTML forms and ``no-cors`` fetches can only send
  GET and POST with a form or text type, so a browser cannot forge such a call without a
  CORS preflight, which this admin plane never grants. A PUT or DELETE without a body
  needs no type: no browser sends one across origins without that preflight either.

Imports only aiohttp and ``core.context``; never the data plane.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from amqpprox.core.context import Settings

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# The one state-changing method an HTML form or a no-cors fetch can send across origins.
FORM_METHODS = frozenset({"POST"})
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
SAME_ORIGIN_SITES = frozenset({"same-origin", "none"})
API_PREFIX = "/api/"


def _is_api(request: web.Request) -> bool:
    return request.path.startswith(API_PREFIX)


def _refusal(request: web.Request, status: int, code: str, message: str) -> web.Response:
    """JSON for the REST API, plain text for every other page."""
    headers = {"Cache-Control": "no-store"}
    if _is_api(request):
        return web.json_response(
            {"error": code, "message": message}, status=status, headers=headers
        )
    return web.Response(text=message + "\n", status=status, headers=headers)


# -- Host: DNS rebinding -------------------------------------------------------------------
def host_name(value: str) -> str | None:
    """The name in a ``Host`` value, lower-cased, without port or IPv6 brackets.

    None when it is malformed (a bracket left open, a port that is not digits).
    """
    text = value.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        name, rest = text[1:end], text[end + 1 :]
    elif text.count(":") > 1:  # a bare IPv6 address (a Host must bracket it; a list may not)
        name, rest = text, ""
    else:
        name, colon, port = text.partition(":")
        rest = colon + port
    if rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit()):
        return None
    return name or None


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """Loopback, the bind address and ``--adminAllowedHosts``, as ``host_name`` gives them."""
    names: Iterable[str] = (*LOOPBACK_HOSTS, settings.admin_host, *settings.admin_allowed_hosts)
    return frozenset(n for n in map(host_name, names) if n is not None)


def host_middleware(allowed: frozenset[str]) -> Middleware:
    """421 for a ``Host`` that does not name this admin plane (probes exempt)."""

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Host")
        if given is not None and request.path not in OPEN_PATHS and host_name(given) not in allowed:
            return _refusal(
                request,
                421,
                "misdirected_request",
                "this admin plane does not answer to that Host name; list it with "
                "--adminAllowedHosts",
            )
        return await handler(request)

    return check_host


# -- Origin: cross-site request forgery ----------------------------------------------------
def own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}".lower()


def cross_site(request: web.Request) -> str | None:
    """Why the browser says this request comes from another origin; None if it does not.

    A request with neither ``Origin`` nor ``Sec-Fetch-Site`` makes no claim (curl).
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() not in SAME_ORIGIN_SITES:
        return f"Sec-Fetch-Site is {site}"
    origin = request.headers.get("Origin")
    if origin is not None and origin.strip().lower() != own_origin(request):
        return f"Origin {origin} is not this admin plane's"
    return None


def origin_middleware(exempt: Callable[[web.Request], bool]) -> Middleware:
    """403 for a state-changing request another origin's page sent."""

    @web.middleware
    async def check_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in READ_METHODS and not exempt(request):
            reason = cross_site(request)
            if reason is not None:
                return _refusal(
                    request, 403, "cross_origin", f"cross-origin request refused: {reason}"
                )
        return await handler(request)

    return check_origin


# -- the bearer token ----------------------------------------------------------------------
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


# -- JSON-only REST writes -----------------------------------------------------------------
def is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def json_middleware() -> Middleware:
    """415 for a REST POST, or a REST request with a body, not typed as JSON."""

    @web.middleware
    async def check_json(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            _is_api(request)
            and (request.method in FORM_METHODS or request.body_exists)
            and not is_json(request.content_type)
        ):
            return _refusal(
                request,
                415,
                "unsupported_media_type",
                "a REST POST (and any REST request with a body) must be sent as "
                f"application/json, not {request.content_type}",
            )
        return await handler(request)

    return check_json
