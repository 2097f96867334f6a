"""LIMIT and AUTH as operations, and the admission checks a new connection goes through.

The configured values live in ``ProxyState`` (``default_limits``, ``vhost_limits``,
``auth``) as ``core.model.Limits`` and ``AuthConfig``, so they are versioned and part of
the definitions document. This module adds what is not configuration:

* ``Admission``: the one-second fixed windows of the connection-rate limiters (enforcing
  and alarm-only, evaluated independently for every connection, as upstream), and the
  count of admitted live sessions per vhost and in total (``LIMIT CONNECTIONS``). A
  window that has ended is dropped at the next sweep (once a second), so vhost names
  clients invent leave nothing behind; each refusal is counted in the statistics
  (``StatsHub.limit_refusals``) by limit name and bounded vhost label.
* the operations the control socket and REST both call; each change of a data-rate
  limit is pushed to the live sessions through a hook the data plane registers.

No sockets and no HTTP here; the data plane enforces data rates, this module only says
what they are.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from amqpprox.core.model import LIMIT_FIELDS, AuthConfig, AuthFormat, Limits
from amqpprox.core.sessions import UNKNOWN_VHOST
from amqpprox.errors import InvalidArgument, NotFound

if TYPE_CHECKING:  # the Context holds the Admission: it imports this module
    from amqpprox.core.context import Context

log = logging.getLogger("amqpprox.limits")

WINDOW_SECONDS = 1.0
RESOURCE_ERROR = 506
NOT_ALLOWED = 530


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connection is not admitted: the Connection.Close to send, and which limit
    (``conn_rate``, ``connections`` or ``total_connections``) refused it."""

    code: int
    text: str
    limit: str = ""


def describe_rate(limit: int) -> str:
    """The original's description of a connection-rate limiter."""
    return f"Allow average {limit} number of connections per 1 seconds"


class _Window:
    """A fixed one-second window: up to ``limit`` connections, then refusals until it ends."""

    __slots__ = ("count", "start")

    def __init__(self) -> None:
        self.start = float("-inf")
        self.count = 0

    def allow(self, limit: int, now: float) -> bool:
        if now - self.start >= WINDOW_SECONDS:
            self.start, self.count = now, 0
        if self.count >= limit:
            return False
        self.count += 1
        return True


class Admission:
    """Per-process limiter state; one per Context (``ctx.admission``)."""

    def __init__(self) -> None:
        self._rate: dict[str, _Window] = {}
        self._alarm: dict[str, _Window] = {}
        self._admitted: dict[int, str] = {}  # session id -> vhost, while it lives
        self._per_vhost: Counter[str] = Counter()
        self._swept = float("-inf")
        # Called after any limit changes (the data plane re-applies data rates to sessions).
        self.on_change: list[Callable[[], None]] = []

    @property
    def live(self) -> int:
        return len(self._admitted)

    def live_of(self, vhost: str) -> int:
        return self._per_vhost[vhost]

    def admit(self, ctx: Context, session_id: int, vhost: str, now: float) -> Refusal | None:
        """Check a session that sent Connection.Open; on success it counts until ``release``."""
        if now - self._swept >= WINDOW_SECONDS:
            self._sweep(now)
        refusal = self._check(ctx, session_id, vhost, now)
        if refusal is not None:
            label = vhost if ctx.state.is_known_vhost(vhost) else UNKNOWN_VHOST
            ctx.stats.limit_refusals[(label, refusal.limit)] += 1
        return refusal

    def _sweep(self, now: float) -> None:
        """Drop the windows that have ended: a new one starts afresh anyway."""
        self._swept = now
        for windows in (self._rate, self._alarm):
            for vhost in [v for v, w in windows.items() if now - w.start >= WINDOW_SECONDS]:
                del windows[vhost]

    def _check(self, ctx: Context, session_id: int, vhost: str, now: float) -> Refusal | None:
        state = ctx.state
        own = state.vhost_limits.get(vhost)
        default = state.default_limits
        limits = default if own is None else own.over(default)
        if limits.conn_rate_alarm is not None:
            window = self._alarm.setdefault(vhost, _Window())
            if not window.allow(limits.conn_rate_alarm, now):
                origin = "" if own is not None and own.conn_rate_alarm is not None else "default "
                log.warning(
                    "AMQPPROX_CONNECTION_LIMIT: The connection request for %s should be "
                    "limited by %s%s",
                    vhost,
                    origin,
                    describe_rate(limits.conn_rate_alarm),
                )
        if limits.conn_rate is not None:
            window = self._rate.setdefault(vhost, _Window())
            if not window.allow(limits.conn_rate, now):
                origin = "" if own is not None and own.conn_rate is not None else "default "
                log.info(
                    "AMQPPROX_CONNECTION_LIMIT: The connection request for %s is limited by %s%s",
                    vhost,
                    origin,
                    describe_rate(limits.conn_rate),
                )
                return Refusal(
                    RESOURCE_ERROR,
                    f"The connection for {vhost}, is limited by proxy.",
                    "conn_rate",
                )
        if limits.connections is not None and self._per_vhost[vhost] >= limits.connections:
            log.info(
                "AMQPPROX_CONNECTION_LIMIT: The connection request for %s is limited by "
                "%d concurrent connections",
                vhost,
                limits.connections,
            )
            return Refusal(
                NOT_ALLOWED,
                f"NOT_ALLOWED - vhost {vhost} reached its limit of {limits.connections} "
                "concurrent connections at the proxy",
                "connections",
            )
        total = default.total_connections
        if total is not None and len(self._admitted) >= total:
            log.info(
                "AMQPPROX_CONNECTION_LIMIT: The connection request for %s is limited by "
                "the total of %d concurrent connections",
                vhost,
                total,
            )
            return Refusal(
                RESOURCE_ERROR,
                f"RESOURCE_ERROR - the proxy reached its limit of {total} concurrent connections",
                "total_connections",
            )
        self._admitted[session_id] = vhost
        self._per_vhost[vhost] += 1
        return None

    def release(self, session_id: int) -> None:
        """The session ended (or never was admitted: then nothing happens)."""
        vhost = self._admitted.pop(session_id, None)
        if vhost is not None:
            self._per_vhost[vhost] -= 1
            if not self._per_vhost[vhost]:
                del self._per_vhost[vhost]

    def changed(self) -> None:
        for hook in list(self.on_change):
            hook()


# -- operations ------------------------------------------------------------------------------
def _check_field(name: str) -> None:
    if name not in LIMIT_FIELDS:
        raise InvalidArgument(f"unknown limit {name!r}")


def set_limit(ctx: Context, vhost: str | None, name: str, value: int | None) -> Limits:
    """Set (or with None, disable) one limit of ``vhost``, or of the default with None."""
    _check_field(name)
    state = ctx.state
    if vhost is None:
        limits = replace(state.default_limits, **{name: value})
        state.set_default_limits(limits)
    else:
        limits = replace(state.vhost_limits.get(vhost) or Limits(), **{name: value})
        state.set_vhost_limits(vhost, limits)
    ctx.admission.changed()
    return limits


def default_limits(ctx: Context) -> Limits:
    return ctx.state.default_limits


def put_default_limits(ctx: Context, limits: Limits) -> Limits:
    ctx.state.set_default_limits(limits)
    ctx.admission.changed()
    return limits


def vhost_limits(ctx: Context, vhost: str) -> Limits:
    """A vhost's own limits; NotFound when it has none."""
    limits = ctx.state.vhost_limits.get(vhost)
    if limits is None:
        raise NotFound(f"vhost {vhost!r} has no limits of its own")
    return limits


def all_vhost_limits(ctx: Context) -> dict[str, Limits]:
    return dict(sorted(ctx.state.vhost_limits.items()))


def effective_limits(ctx: Context, vhost: str) -> Limits:
    return ctx.state.limits_for(vhost)


def put_vhost_limits(ctx: Context, vhost: str, limits: Limits) -> bool:
    """Replace a vhost's own limits; returns whether it had none before."""
    created = vhost not in ctx.state.vhost_limits
    ctx.state.set_vhost_limits(vhost, limits)
    ctx.admission.changed()
    return created


def delete_vhost_limits(ctx: Context, vhost: str) -> bool:
    existed = vhost in ctx.state.vhost_limits
    if existed:
        ctx.state.set_vhost_limits(vhost, Limits())
        ctx.admission.changed()
    return existed


def set_auth_service(
    ctx: Context, host: str, port: int, target: str, fmt: AuthFormat = "protobuf"
) -> AuthConfig:
    """AUTH SERVICE: new sessions ask ``http://host:port<target>`` before connecting out."""
    auth = AuthConfig(host, port, target, fmt)
    ctx.state.set_auth(auth)
    return auth


def set_auth_always_allow(ctx: Context) -> AuthConfig:
    auth = AuthConfig()
    ctx.state.set_auth(auth)
    return auth


def set_auth(ctx: Context, auth: AuthConfig) -> AuthConfig:
    ctx.state.set_auth(auth)
    return auth


def get_auth(ctx: Context) -> AuthConfig:
    return ctx.state.auth
