"""From a client's Connection.Open to its broker's OpenOk: admission (LIMIT), the
route, the auth service, then each candidate backend address in the route's order until
a broker handshake completes.

Every step has a deadline (name resolution, TCP connect, TLS, the broker handshake); a
candidate that fails is counted (``DataPlane.connect_failed``, with the reason: one of
``core.stats.CONNECT_FAILURE_REASONS``) and the next one tried. A
broker that answers the handshake with ``Connection.Close`` ends the loop: its refusal
reaches the client, as the session decides. What a handshake is belongs to the
session's protocol adapter; this loop only opens sockets and waits for the outcome.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
import time
from typing import TYPE_CHECKING

from amqpprox.core.backend_status import BackendState
from amqpprox.core.selection import SingleBackendPlan
from amqpprox.core.sessions import CloseReason
from amqpprox.core.state import Route
from amqpprox.proxy import proxy_protocol
from amqpprox.proxy.connector import open_connection
from amqpprox.proxy.deadline import Deadline
from amqpprox.proxy.lifecycle import Phase
from amqpprox.proxy.tls import contexts_of
from amqpprox.proxy.transports import BrokerSide

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from amqpprox.core.model import Backend
    from amqpprox.proxy.session import Session

log = logging.getLogger("amqpprox.session")
_monotonic = time.monotonic

__all__ = ["Outcome", "run", "start"]


class Outcome(enum.Enum):
    """How one connection attempt ended."""

    OPEN = 1  # the broker's OpenOk: the session is live
    BROKER_CLOSED = 2  # the broker answered with Connection.Close: forwarded, no retry
    FAILED = 3  # no AMQP answer (refused, reset, timeout, garbage): try the next candidate
    TIMED_OUT = 4  # the broker handshake deadline passed (then treated as FAILED)
    ABANDONED = 5  # the session ended meanwhile (client gone, refused, disconnected)


def start(session: Session) -> None:
    """Admit the session (LIMIT), find its route, and start connecting it."""
    refusal = session.plane.admit(session)
    if refusal is not None:
        session.limited_refusal(refusal.code, refusal.text)
        return
    state = session.plane.ctx.state
    route = state.route(session.vhost)
    if route is None:
        broken = state.broken_target(session.vhost)
        if broken is not None:
            log.error("No %s %s for vhost=%s", broken.kind, broken.target, session.vhost)
            text = f"No {broken.kind} {broken.target} for vhost {session.vhost}"
            session.refuse(CloseReason.BROKEN_MAPPING, text)
            return
        log.error("No mapping available for vhost=%s", session.vhost)
        session.refuse(CloseReason.NO_MAPPING, f"No known broker mapping for vhost {session.vhost}")
        return
    node = session.adapter.node
    if node is not None:  # a stream node listener: this one backend, after the same checks
        if node not in state.backends:
            session.refuse(CloseReason.BROKEN_MAPPING, f"No backend {node} for node listener")
            return
        route = Route(route.kind, route.name, SingleBackendPlan(node))
    if route.kind == "farm":
        session.farm_name = route.name
    session.move(Phase.CONNECTING)
    # The plane keeps the task until done; the session need not.
    session.plane.track(session.loop.create_task(run(session, route)))


async def run(session: Session, route: Route) -> None:
    """AUTH SERVICE (when configured), then the candidates in order."""
    if session.plane.ctx.state.auth.service:
        start_ok = session.adapter.start_ok
        assert start_ok is not None
        decision = await session.plane.authenticate(session, start_ok)
        if session.finished:
            return
        if not decision.allow:
            if decision.fault is not None:
                log.warning(
                    "session %d: auth service failed for vhost %s: %s",
                    session.id,
                    session.vhost,
                    decision.fault,
                )
            session.deny(start_ok, decision.reason)
            return
        if decision.mechanism is not None:
            replaced = start_ok.with_credentials(decision.mechanism, decision.credentials or b"")
            if decision.reason:
                replaced = replaced.with_extra_properties([("amqpprox_auth", decision.reason)])
            session.auth_start_ok = replaced
    await _try_candidates(session, route)


async def _try_candidates(session: Session, route: Route) -> None:
    """The route's ready members in order, skipping those health says are down; when
    every ready member is down (or the others failed too), the down ones are tried anyway,
    so that a wrong verdict cannot take a vhost offline. ``drain`` and ``maint`` members
    are never tried (core.backend_status)."""
    ctx = session.plane.ctx
    state, health = ctx.state, ctx.health
    ready = 0
    held_back: list[str] = []
    while not session.finished:
        name = route.plan.next_backend()
        if name is None:
            break
        if name not in state.backends or state.backend_state(name) is not BackendState.READY:
            continue
        ready += 1
        if health.skips(name):
            held_back.append(name)
            continue
        if await _try_backend(session, name):
            return
    if held_back and not session.finished:
        log.warning(
            "%s of %s %s for vhost=%s down: trying %s anyway",
            "Every ready member" if len(held_back) == ready else "The remaining members",
            route.kind,
            route.name,
            session.vhost,
            ", ".join(held_back),
        )
        for name in held_back:
            if await _try_backend(session, name) or session.finished:
                return
    if session.finished:
        return
    if not ready:
        log.error("No ready broker for vhost=%s (%s %s)", session.vhost, route.kind, route.name)
        session.refuse(CloseReason.NO_BACKEND, f"No ready broker for vhost {session.vhost}")
        return
    log.error("No backends available for connection, vhost=%s", session.vhost)
    session.refuse(CloseReason.NO_BACKEND, f"No broker reachable for vhost {session.vhost}")


async def _try_backend(session: Session, name: str) -> bool:
    """Each address of backend ``name`` until one answers; True when the session is
    settled (open, refused by the broker, or abandoned). Tells the health book how the
    backend did (passive detection): failed only when no address answered."""
    plane = session.plane
    backend = plane.ctx.state.backends.get(name)
    if backend is None:
        return False
    try:
        addresses = plane.resolver.known(backend) or await plane.resolver.resolve(
            backend, plane.ctx.settings.connect_timeout
        )
    except (OSError, TimeoutError) as error:
        _failed(session, name, "dns")
        log.warning("Failed to resolve %s:%d for %s: %s", backend.host, backend.port, name, error)
        plane.ctx.health.record_attempt(name, False, f"dns: {error}")
        return False
    entry = plane.ctx.health.entry(name)
    if entry is not None and entry.addresses and len(addresses) > 1:
        # Addresses whose last check failed go last (a stable sort keeps the resolver's order).
        addresses = sorted(addresses, key=lambda a: not entry.addresses.get(a[0], True))
    last_error: str | None = None
    for host, found in addresses:
        if session.finished:
            return True
        port = session.adapter.backend_port(backend, found)
        outcome, failure = await _try_endpoint(session, name, host, port, backend)
        if outcome is Outcome.OPEN or outcome is Outcome.BROKER_CLOSED:
            plane.ctx.health.record_attempt(name, True)
            return True
        if outcome is not Outcome.FAILED or session.finished:
            return True
        last_error = failure
    plane.ctx.health.record_attempt(name, False, last_error)
    return False


def _failed(session: Session, name: str, reason: str) -> str:
    session.connect_failures += 1
    session.plane.connect_failed(name, reason)
    return reason


def _connect_error(error: OSError, backend: Backend) -> str:
    """The failure reason of a TCP (+ TLS) connect that raised ``error``."""
    if isinstance(error, ssl.SSLError):
        return "tls"
    if isinstance(error, TimeoutError):
        return "timeout"
    if backend.tls and isinstance(error, ConnectionAbortedError):  # TLS handshake deadline
        return "tls"
    return "refused"


async def _try_endpoint(
    session: Session, name: str, host: str, port: int, backend: Backend
) -> tuple[Outcome, str | None]:
    """One address: the outcome, and for a failure its reason and address."""
    settings, loop = session.settings, session.loop
    session.connect_started_mono, session.broker_connected_mono = _monotonic(), None
    try:
        if backend.proxy_protocol or backend.tls:
            opening = _open_flagged(session, backend, host, port)
            deadline = settings.connect_timeout + settings.tls_handshake_timeout * backend.tls
        else:
            opening = loop.create_connection(BrokerSide, host, port)
            deadline = settings.connect_timeout
        # Cancels this task at the deadline: no extra task, unlike wait_for.
        with Deadline(loop, deadline):
            transport, side = await opening
    except (OSError, TimeoutError) as error:
        reason = _failed(session, name, _connect_error(error, backend))
        log.warning("connect to %s (%s:%d) failed: %s", name, host, port, error)
        return Outcome.FAILED, f"{reason} ({host}:{port}): {error or 'timed out'}"
    session.broker_connected_mono = _monotonic()
    if session.finished:
        transport.abort()
        return Outcome.ABANDONED, None
    attempt = session.attach_broker(name, side, (host, port))
    # A plain timer settles the attempt on timeout: cheaper than wait_for + shield.
    timer = loop.call_later(
        settings.broker_handshake_timeout, session.settle_attempt, Outcome.TIMED_OUT
    )
    outcome = await attempt
    timer.cancel()
    if outcome is Outcome.OPEN:
        session.plane.ctx.state.vhost_opened(session.vhost)  # VHOST PRINT lists it now
    elif outcome is Outcome.TIMED_OUT or outcome is Outcome.FAILED:
        if outcome is Outcome.TIMED_OUT:
            log.warning("broker handshake with %s (%s:%d) timed out", name, host, port)
        reason = _failed(session, name, "timeout" if outcome is Outcome.TIMED_OUT else "no_amqp")
        session.detach_broker()
        return Outcome.FAILED, f"{reason} ({host}:{port}): no AMQP answer"
    return outcome, None


def _open_flagged(
    session: Session, backend: Backend, host: str, port: int
) -> Coroutine[object, object, tuple[asyncio.Transport, BrokerSide]]:
    """Connect to a backend flagged SEND-PROXY[-V2] and/or TLS: header first, then TLS."""
    client, version = session.client, backend.proxy_protocol
    return open_connection(
        BrokerSide,
        host,
        port,
        proxy_header=(lambda _own, dst: proxy_protocol.encode(version, client, dst))
        if version
        else None,
        ssl_context=contexts_of(session.plane.ctx).context("EGRESS") if backend.tls else None,
        server_hostname=backend.host if backend.tls else None,
        ssl_handshake_timeout=session.settings.tls_handshake_timeout if backend.tls else None,
    )
