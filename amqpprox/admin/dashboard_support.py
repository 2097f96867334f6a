"""What the dashboard's views (``admin.dashboard``) are built from, outside the views.

The constants of its pages, the actions (what each POST does and how its confirmation
asks), the template filters, and its security:

Every POST must carry the per-process CSRF token and, when the browser says where it
comes from (``Origin``, ``Sec-Fetch-Site``), come from this origin. With an admin token
configured, actions need it: the confirmation step asks for it, and a valid entry sets
an HttpOnly ``SameSite=Strict`` cookie holding an HMAC of it (never the token), so later
actions don't ask again. With ``--adminTokenForReads`` the pages need that cookie too
(``login_middleware`` sends readers to ``/login``). The REST API keeps accepting only
``Authorization: Bearer``: the cookie is honoured on dashboard routes alone, so a cookie
never authorises a REST call; the bearer check (``admin.security``) exempts the dashboard's
routes (``is_dashboard_route``), whose handlers check CSRF, origin and token themselves.
Must not import ``proxy``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import MultiDictProxy

from amqpprox.admin import humanize
from amqpprox.core import operations as ops
from amqpprox.core.context import Context
from amqpprox.core.digits import ascii_digits
from amqpprox.core.sessions import SessionBase, SessionState

ROUTE_PREFIX = "dashboard-"
LIVE_HEADER = "X-Dashboard-Live"
LOGIN_COOKIE = "amqpprox_dashboard"
FLASH_COOKIE = "amqpprox_flash"
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
LIVE_INTERVAL_MS = 1000

SESSION_SORTS = {
    "id": "id",
    "client": "source",
    "vhost": "vhost",
    "backend": "backend",
    "state": "state",
    "age": "started_at",
    "in": "in_bytes",
    "out": "out_bytes",
    "in_rate": None,  # sorted here, from the sampler's rates
    "out_rate": None,
}
STATE_FILTERS = ("live", *(s.value for s in SessionState), "all")


@dataclass(frozen=True, slots=True)
class Action:
    label: str
    title: str  # the confirmation question; {target} is the session or vhost
    explain: str
    danger: bool = False


SESSION_ACTIONS: dict[str, Action] = {
    "pause": Action(
        "Pause",
        "Pause {target}?",
        "The client's frames stop being relayed to the broker; the broker's keep flowing.",
    ),
    "unpause": Action("Resume", "Resume {target}?", "Relaying in both directions resumes."),
    "disconnect": Action(
        "Disconnect",
        "Disconnect {target} gracefully?",
        "The client gets Connection.Close 200 with the reason below, then the broker does.",
        danger=True,
    ),
    "force-disconnect": Action(
        "Force disconnect",
        "Force-disconnect {target}?",
        "Both sockets are closed at once, without an AMQP close.",
        danger=True,
    ),
}
SESSION_OPS: dict[str, Callable[[Context, int], SessionBase]] = {
    "pause": ops.pause_session,
    "unpause": ops.unpause_session,
    "force-disconnect": ops.force_disconnect_session,
}
VHOST_ACTIONS: dict[str, Action] = {
    "pause": Action(
        "Pause",
        "Pause vhost {target}?",
        "Its sessions stop relaying client frames, and new connections are held at "
        "Connection.Open until the vhost is resumed.",
    ),
    "unpause": Action(
        "Resume",
        "Resume vhost {target}?",
        "Held connections go on to their broker; established paused sessions are cut so "
        "that their clients reconnect.",
    ),
    "backend-disconnect": Action(
        "Backend disconnect",
        "Disconnect the broker side of vhost {target}?",
        "Every session of the vhost loses its broker connection; clients are told by the "
        "broker's close.",
        danger=True,
    ),
    "force-disconnect": Action(
        "Force disconnect",
        "Force-disconnect every session of vhost {target}?",
        "Client and broker sockets of every session of the vhost are closed at once.",
        danger=True,
    ),
}
VHOST_OPS: dict[str, Callable[[Context, str], list[SessionBase]]] = {
    "pause": ops.pause_vhost,
    "unpause": ops.unpause_vhost,
    "backend-disconnect": ops.backend_disconnect_vhost,
    "force-disconnect": ops.force_disconnect_vhost,
}


# -- security ------------------------------------------------------------------------------
class Guard:
    """CSRF token, origin check and the admin-token login of the dashboard."""

    def __init__(self, token: str | None, *, protect_reads: bool) -> None:
        self.token = token or None
        self.protect_reads = protect_reads and self.token is not None
        self._secret = secrets.token_bytes(32)
        self.csrf = self._mac(b"csrf")

    def _mac(self, message: bytes) -> str:
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def login_value(self) -> str:
        assert self.token is not None
        return self._mac(b"login\0" + self.token.encode("utf-8", "surrogateescape"))

    def signed_in(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        given = request.cookies.get(LOGIN_COOKIE, "")
        return hmac.compare_digest(given.encode(), self.login_value().encode())

    def token_ok(self, given: str) -> bool:
        if self.token is None:
            return True
        return hmac.compare_digest(
            given.encode("utf-8", "surrogateescape"),
            self.token.encode("utf-8", "surrogateescape"),
        )

    def set_login(self, request: web.Request, response: web.StreamResponse) -> None:
        response.set_cookie(
            LOGIN_COOKIE,
            self.login_value(),
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )

    @staticmethod
    def same_origin(request: web.Request) -> bool:
        """Whether the browser says this POST comes from our own pages (absent = no claim)."""
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        return origin == f"{request.scheme}://{request.host}"

    def check_post(self, request: web.Request, form: MultiDictProxy[Any]) -> None:
        given = str(form.get("csrf", ""))
        if not self.same_origin(request) or not hmac.compare_digest(
            given.encode(), self.csrf.encode()
        ):
            raise Forbidden(
                "This form was not sent by one of this proxy's pages (or the proxy has "
                "restarted since it was loaded). Reload the page and try again."
            )


class Forbidden(Exception):
    pass


PUBLIC_ROUTES = frozenset({"dashboard-static", "dashboard-login", "dashboard-login-post"})


def _route_name(request: web.Request) -> str:
    route = request.match_info.route
    name = route.name or (route.resource.name if route.resource is not None else None)
    return name or ""


def is_dashboard_route(request: web.Request) -> bool:
    """Whether ``request`` goes to one of the dashboard's routes (pages, actions, static)."""
    return _route_name(request).startswith(ROUTE_PREFIX)


def login_middleware(guard: Guard) -> Middleware:
    """With reads protected, a dashboard page read without the login cookie goes to /login.

    A live refresh gets a 401 instead. Public routes (static files, the login form) and
    every route that is not the dashboard's are untouched.
    """

    @web.middleware
    async def dashboard_login(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            guard.protect_reads
            and is_dashboard_route(request)
            and _route_name(request) not in PUBLIC_ROUTES
            and request.method in ("GET", "HEAD")
            and not guard.signed_in(request)
        ):
            if request.headers.get(LIVE_HEADER):
                return web.json_response({"error": "unauthorized"}, status=401)
            raise web.HTTPSeeOther(f"/login?{urlencode({'next': request.path_qs})}")
        return await handler(request)

    return dashboard_login


def safe_next(value: object, default: str = "/") -> str:
    """A local path to go back to after an action (never another site)."""
    text = str(value or "")
    if not text.startswith("/") or text.startswith("//") or "\\" in text:
        return default
    return text


# -- rendering -----------------------------------------------------------------------------
def state_css(session: SessionBase) -> str:
    if session.finished:
        return "closed"
    return session.state.value


def template_filters() -> dict[str, Callable[..., Any]]:
    return {
        "bytes": humanize.bytes_,
        "count": humanize.count,
        "byte_rate": humanize.byte_rate,
        "rate": humanize.rate,
        "grouped": humanize.grouped,
        "duration": humanize.duration,
        "latency": humanize.latency,
        "timestamp": humanize.timestamp,
        "age": humanize.age,
        "urlpart": lambda v: quote(str(v), safe=""),
        "state_css": state_css,
    }


def parse_int(text: str | None, default: int) -> int:
    if text is None or not ascii_digits(text) or len(text) > 9:
        return default
    return int(text)
