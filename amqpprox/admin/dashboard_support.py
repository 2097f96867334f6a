"""What the dashboard's views (``admin.dashboard``) are built from, outside the views.

The constants of its pages, the actions (what each POST does and how its confirmation
asks), the template filters, and its security:

Every POST must carry the per-process CSRF token and, when the browser says where it
comes from (``Origin``, ``Sec-Fetch-Site``), come from this origin
(``admin.security.cross_site``). With an admin token configured, actions need it: the
confirmation step asks for it, and a valid entry starts a login: a random session id kept
server-side for 12 hours (revoked by signing out) in an HttpOnly ``SameSite=Strict``
cookie, so later actions don't ask again. Action URLs are built from route names and
quoted parameters (``route_url``), never from the request's path. With
``--adminTokenForReads`` the pages need that login too (``login_middleware`` sends
readers to ``/login``, which then shows nothing about this proxy). The REST API keeps
accepting only ``Authorization: Bearer``: the cookie is honoured on dashboard routes
alone, so a cookie never authorises a REST call; the bearer check (``admin.security``)
exempts the dashboard's routes (``is_dashboard_route``), whose handlers check CSRF,
origin and token themselves.
Must not import ``proxy``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import MultiDictProxy

from amqpprox.admin import audit, humanize, security
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
LOGIN_LIFETIME = 12 * 3600.0  # seconds a dashboard login lasts
MAX_LOGINS = 1000
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
    """CSRF token, origin check and the admin-token login of the dashboard.

    A login is a random session id (the cookie's value) kept here, hashed, until it expires
    (``lifetime`` seconds on ``clock``) or its holder signs out; the cookie carries the same
    ``Max-Age``. At most ``MAX_LOGINS`` are kept: beyond that the oldest is forgotten.
    """

    def __init__(
        self,
        token: str | None,
        *,
        protect_reads: bool,
        lifetime: float = LOGIN_LIFETIME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token or None
        self.protect_reads = protect_reads and self.token is not None
        self.lifetime = lifetime
        self.clock = clock
        self._secret = secrets.token_bytes(32)
        self.csrf = hmac.new(self._secret, b"csrf", hashlib.sha256).hexdigest()
        self._logins: dict[str, float] = {}  # sha256 of a session id -> its expiry

    @staticmethod
    def _key(session_id: str) -> str:
        return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).hexdigest()

    def signed_in(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        key = self._key(request.cookies.get(LOGIN_COOKIE, ""))
        expiry = self._logins.get(key)
        if expiry is None:
            return False
        if self.clock() >= expiry:
            del self._logins[key]
            return False
        return True

    def token_ok(self, given: str) -> bool:
        if self.token is None:
            return True
        return hmac.compare_digest(
            given.encode("utf-8", "surrogateescape"),
            self.token.encode("utf-8", "surrogateescape"),
        )

    def set_login(self, request: web.Request, response: web.StreamResponse) -> None:
        """Start a new login: a fresh session id, remembered here and set as the cookie."""
        now = self.clock()
        for key in [k for k, expiry in self._logins.items() if expiry <= now]:
            del self._logins[key]
        while len(self._logins) >= MAX_LOGINS:
            del self._logins[min(self._logins, key=self._logins.__getitem__)]
        session_id = secrets.token_urlsafe(32)
        self._logins[self._key(session_id)] = now + self.lifetime
        response.set_cookie(
            LOGIN_COOKIE,
            session_id,
            max_age=max(1, int(self.lifetime)),
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )

    def audit(self, request: web.Request, what: str) -> None:
        """Log a dashboard change (``admin.audit``): who (address, login) and what."""
        credential = "login" if self.token is not None else "no token configured"
        audit.audit(request, what, via="Dashboard", credential=credential)

    def revoke(self, request: web.Request) -> None:
        """Sign out: the request's session id no longer works, wherever it is kept."""
        self._logins.pop(self._key(request.cookies.get(LOGIN_COOKIE, "")), None)

    @staticmethod
    def same_origin(request: web.Request) -> bool:
        """Whether the browser says this POST comes from our own pages (absent = no claim)."""
        return security.cross_site(request) is None

    def check_post(self, request: web.Request, form: MultiDictProxy[Any]) -> None:
        given = str(form.get("csrf", ""))
        if not self.same_origin(request) or not hmac.compare_digest(
            given.encode(), self.csrf.encode()
        ):
            raise Forbidden(
                "This form was not sent by one of this proxy's pages (or the proxy has "
                "restarted since it was loaded). Reload the page and try again."
            )


GUARD = web.AppKey("dashboard_guard", Guard)


@dataclass(frozen=True)
class SessionLinks:
    """The sessions page's links: its filters kept, one thing changed (sort, page...)."""

    params: Mapping[str, object]
    sort: str
    desc: bool
    page: int

    def link(self, **changes: object) -> str:
        merged: dict[str, object] = {
            **self.params,
            "sort": self.sort,
            "dir": "desc" if self.desc else None,
            "page": self.page,
        }
        merged.update(changes)
        if merged.get("sort") == "id":
            merged["sort"] = None
        if merged.get("page") == 1:
            merged["page"] = None
        query = urlencode({k: v for k, v in merged.items() if v is not None})
        return "/sessions" + (f"?{query}" if query else "")

    def sort_link(self, column: str) -> str:
        flip = column == self.sort and not self.desc
        return self.link(sort=column, dir="desc" if flip else None, page=1)

    def aria_sort(self, column: str) -> str:
        if column != self.sort:
            return "none"
        return "descending" if self.desc else "ascending"


class Forbidden(Exception):
    pass


PUBLIC_ROUTES = frozenset({"dashboard-static", "dashboard-login", "dashboard-login-post"})


def route_name(request: web.Request) -> str:
    route = request.match_info.route
    name = route.name or (route.resource.name if route.resource is not None else None)
    return name or ""


def is_dashboard_route(request: web.Request) -> bool:
    """Whether ``request`` goes to one of the dashboard's routes (pages, actions, static)."""
    return route_name(request).startswith(ROUTE_PREFIX)


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
            and route_name(request) not in PUBLIC_ROUTES
            and request.method in ("GET", "HEAD")
            and not guard.signed_in(request)
        ):
            if request.headers.get(LIVE_HEADER):
                return web.json_response({"error": "unauthorized"}, status=401)
            raise web.HTTPSeeOther(f"/login?{urlencode({'next': request.path_qs})}")
        return await handler(request)

    return dashboard_login


def _local_path(text: str) -> bool:
    return (
        text.startswith("/")
        and text[1:2] not in ("/", "\\")
        and "\\" not in text
        and not any(unicodedata.category(c) == "Cc" for c in text)
    )


def safe_next(value: object, default: str = "/") -> str:
    """A local path to go back to after an action or a login (never another site).

    It must start with one ``/`` (not ``//`` nor ``/\\``: no scheme, no host) and hold no
    backslash and no control character (browsers drop tabs and newlines from URLs, so
    ``/<TAB>/evil.example`` would become ``//evil.example``), before and after one more
    percent-decoding (``/%2F/evil.example``). Anything else gives ``default``.
    """
    text = str(value or "")
    if len(text) > 2000 or not (_local_path(text) and _local_path(unquote(text))):
        return default
    return text


def route_url(router: web.UrlDispatcher, name: str, **parts: object) -> str:
    """The path of the route called ``name``, each part percent-encoded whole.

    ``/``, ``?``, ``%`` and ``#`` in a part are encoded too, so that no value (a vhost
    named ``../vhosts/%2F/force-disconnect?``) can leave its path segment and turn one
    action into another. (aiohttp's ``url_for`` leaves ``/`` as it is, so ``..`` would
    survive it and the browser would resolve it.) Never built from the request's path.
    """
    info = router[name].get_info()
    formatter = str(info.get("formatter", info.get("path", "")))
    return formatter.format_map({k: quote(str(v), safe="") for k, v in parts.items()})


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
