"""Prometheus ``/metrics`` and REST ``/api/v1/stats``, both reading core snapshots.

At each scrape ``render`` turns the Context (session registry, statistics hub,
configuration, listeners) into the amqpprox_* families, written by ``admin.exposition``
(one pass over the (vhost, backend) totals; thousands of series cost milliseconds),
followed by the standard process/platform/GC collectors of a ``prometheus_client``
registry private to this admin app (never the global one). Nothing here is touched per
frame. Counters are cumulative since start and include the sessions
already removed (``SessionRegistry.removed_by_route``), so no ``_total`` series ever
goes down. Every label is bounded by configuration: the client address is never one
(per-source figures stay on STAT and REST), and a vhost is one only once configured or
opened (``SessionRegistry.vhost_label``; others count under ``""``). Must not import
``proxy``.
"""

from __future__ import annotations

import json

from aiohttp import web
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

from amqpprox import __version__, build
from amqpprox.admin import stats as statfmt
from amqpprox.admin.exposition import Exposition, labels
from amqpprox.admin.keys import CONTEXT
from amqpprox.admin.metrics_health import health_families
from amqpprox.admin.metrics_moves import render_moves
from amqpprox.admin.metrics_protocols import listener_protocols, protocol_families
from amqpprox.admin.metrics_traces import trace_families
from amqpprox.core.context import Context
from amqpprox.core.sessions import UNKNOWN_VHOST, CloseReason
from amqpprox.core.stats import (
    AUTH_RESULTS,
    CONNECT_FAILURE_REASONS,
    LIMIT_NAMES,
    RELOAD_RESULTS,
    SESSION_STATES,
    Histogram,
    RouteTotals,
    route_totals,
)
from amqpprox.core.totals import protocol_totals
from amqpprox.errors import InvalidArgument

REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)

DIRECTIONS = ("client_to_broker", "broker_to_client")


def render(ctx: Context, openmetrics: bool = False) -> str:
    """Every amqpprox_* family, built from the Context at this scrape."""
    hub = ctx.stats
    registry = ctx.sessions
    hub.observe_latencies(registry)
    out = Exposition(openmetrics)
    out.family(
        "amqpprox_build_info",
        "gauge",
        "amqpprox build information; scanner is the relay's frame scanner, c or python.",
    )
    out.line("amqpprox_build_info", labels(("version", "scanner"), (__version__, build())), 1)
    _route_families(out, route_totals(registry))
    protocol_families(out, protocol_totals(registry))

    out.family(
        "amqpprox_connections_accepted", "counter", "Client connections accepted by the listeners."
    )
    out.line("amqpprox_connections_accepted_total", "", registry.opened_total)
    out.family(
        "amqpprox_handshake_duration_seconds",
        "histogram",
        "Connection.Open received to OpenOk relayed: backend choice, broker connect and "
        "the broker handshake (for a session held by VHOST PAUSE, from its release).",
    )
    _histogram(out, "amqpprox_handshake_duration_seconds", "", hub.handshake_latency)
    out.family(
        "amqpprox_backend_connect_duration_seconds",
        "histogram",
        "TCP connect time to the backend a session uses.",
    )
    for backend, histogram in sorted(hub.connect_latency.items()):
        label_set = labels(("backend",), (backend,))
        _histogram(out, "amqpprox_backend_connect_duration_seconds", label_set, histogram)
    _backend_failures(out, ctx)
    health_families(out, ctx)
    _listener_families(out, ctx)
    listener_protocols(out, ctx.listeners.specs())
    _farm_families(out, ctx)
    _auth_families(out, ctx)
    _limit_refusals(out, ctx)
    _reload_families(out, ctx)
    render_moves(out, ctx)
    trace_families(out, ctx.traces)

    probe = hub.buffer_probe
    if probe is not None:
        figures = probe(registry)
        out.family(
            "amqpprox_write_buffer_bytes",
            "gauge",
            "Bytes waiting in transports' write buffers, by where they are going.",
        )
        to_broker, to_client = (labels(("direction",), (d,)) for d in DIRECTIONS)
        out.line("amqpprox_write_buffer_bytes", to_broker, figures.queued_to_brokers_bytes)
        out.line("amqpprox_write_buffer_bytes", to_client, figures.queued_to_clients_bytes)
        out.family(
            "amqpprox_backpressured_sessions",
            "gauge",
            "Sessions with reading stopped because the other side's write buffer is full.",
        )
        out.line("amqpprox_backpressured_sessions", "", figures.backpressured_sessions)
    return out.text()


# (family, help) of the per-(vhost, backend) families, in output order.
_SESSIONS = (
    "amqpprox_sessions",
    "Live sessions by vhost, backend and state (handshaking includes choosing and "
    "connecting to a backend; paused includes sessions held at Open by VHOST PAUSE).",
)
_OPENED = (
    "amqpprox_sessions_opened",
    "Sessions that completed the broker handshake (OpenOk relayed to the client).",
)
_CLOSED = (
    "amqpprox_sessions_closed",
    'Sessions that ended, by reason (refused ones included, with backend "").',
)
_TRAFFIC = (
    ("amqpprox_bytes", "Bytes relayed after the handshake."),
    ("amqpprox_frames", "AMQP frames relayed after the handshake."),
    ("amqpprox_packets", "Socket reads carrying relayed data."),
    (
        "amqpprox_coalesce_waits",
        "Times read coalescing (--coalesceReadsMs) left a streaming side unread for its "
        "window; direction is the stream's.",
    ),
)
_REASONS = tuple((reason, f',reason="{reason.value}"}} ') for reason in CloseReason)
_STATES = tuple((state, f',state="{state}"}} ') for state in SESSION_STATES)
_IN = f',direction="{DIRECTIONS[0]}"}} '
_OUT = f',direction="{DIRECTIONS[1]}"}} '


def _route_families(out: Exposition, routes: dict[tuple[str, str], RouteTotals]) -> None:
    """The per-(vhost, backend) families: one pass over the routes, each label set
    escaped once (the bulk of a scrape with many vhosts)."""
    sessions: list[str] = []
    opened: list[str] = []
    closed: list[str] = []
    traffic: tuple[list[str], ...] = ([], [], [], [])
    names = tuple(f"{name}_total{{" for name, _text in _TRAFFIC)
    for (vhost, backend), totals in sorted(routes.items()):
        route = labels(("vhost", "backend"), (vhost, backend))
        states = totals.states
        for state, tail in _STATES:
            sessions.append(f"amqpprox_sessions{{{route}{tail}{states.get(state, 0)}\n")
        opened.append(f"amqpprox_sessions_opened_total{{{route}}} {totals.opened}\n")
        by_reason = totals.by_reason
        for reason, tail in _REASONS:
            count = by_reason.get(reason)
            if count is not None:
                closed.append(f"amqpprox_sessions_closed_total{{{route}{tail}{count}\n")
        for lines, name, inbound, outbound in (
            (traffic[0], names[0], totals.in_bytes, totals.out_bytes),
            (traffic[1], names[1], totals.in_frames, totals.out_frames),
            (traffic[2], names[2], totals.in_packets, totals.out_packets),
            (traffic[3], names[3], totals.in_coalesce_waits, totals.out_coalesce_waits),
        ):
            lines.append(f"{name}{route}{_IN}{inbound}\n{name}{route}{_OUT}{outbound}\n")
    for (name, text), kind, lines in (
        (_SESSIONS, "gauge", sessions),
        (_OPENED, "counter", opened),
        (_CLOSED, "counter", closed),
        *((family, "counter", lines) for family, lines in zip(_TRAFFIC, traffic, strict=True)),
    ):
        out.family(name, kind, text)
        out.parts.extend(lines)


def _backend_failures(out: Exposition, ctx: Context) -> None:
    """Zeros for every configured backend and reason, so alerts have a series to watch."""
    counts = ctx.stats.connect_failure_reasons
    backends = set(ctx.state.backends) | {backend for backend, _reason in counts}
    out.family(
        "amqpprox_backend_connect_failures",
        "counter",
        "Failed attempts to reach a backend, by reason: dns (name resolution), refused "
        "(TCP connect refused, reset or unreachable), timeout (connect or broker handshake "
        "deadline), tls (TLS handshake), no_amqp (connected, but no AMQP answer).",
    )
    for backend in sorted(backends):
        for reason in CONNECT_FAILURE_REASONS:
            label_set = labels(("backend", "reason"), (backend, reason))
            out.line(
                "amqpprox_backend_connect_failures_total",
                label_set,
                counts.get((backend, reason), 0),
            )


def _listener_families(out: Exposition, ctx: Context) -> None:
    """Every listener served since start: up or not, and what each port turned away."""
    listeners = ctx.listeners
    current = {(spec.port, spec.tls) for spec in listeners.specs()}
    every = {(spec.port, spec.tls) for spec in listeners.listened_specs()} | current
    out.family(
        "amqpprox_listener_up",
        "gauge",
        "1 while an AMQP listener serves the port, 0 once stopped.",
    )
    for port, tls in sorted(every):
        label_set = labels(("port", "tls"), (str(port), "true" if tls else "false"))
        out.line("amqpprox_listener_up", label_set, 1 if (port, tls) in current else 0)
    ports = listeners.counted_ports()
    counts = {port: listeners.counters(port) for port in ports}
    for key, name, text in LISTENER_COUNTERS:
        out.family(name, "counter", text)
        for port in ports:
            out.line(name + "_total", labels(("port",), (str(port),)), counts[port].get(key, 0))


def _farm_families(out: Exposition, ctx: Context) -> None:
    """Which backends each farm has: joined with the per-backend series, it lets an alert
    speak of a farm (every member failing) although those series name only backends."""
    out.family(
        "amqpprox_farm_member",
        "gauge",
        "1 for each backend a farm has (FARM ADD order is not kept in labels).",
    )
    for farm in sorted(ctx.state.farms.values(), key=lambda f: f.name):
        for backend in sorted(set(farm.members)):
            out.line("amqpprox_farm_member", labels(("farm", "backend"), (farm.name, backend)), 1)


def _auth_families(out: Exposition, ctx: Context) -> None:
    hub = ctx.stats
    out.family(
        "amqpprox_auth_requests",
        "counter",
        "Requests to the auth service (AUTH SERVICE), by result: allow, deny, error (no "
        "usable answer: unreachable, HTTP error, unparseable), timeout (no answer in time).",
    )
    out.by_result("amqpprox_auth_requests_total", AUTH_RESULTS, hub.auth_results)
    out.family(
        "amqpprox_auth_latency_seconds",
        "histogram",
        "Time from asking the auth service to its answer (or the error or deadline).",
    )
    _histogram(out, "amqpprox_auth_latency_seconds", "", hub.auth_latency)


def _limit_refusals(out: Exposition, ctx: Context) -> None:
    """Refusals by vhost and limit; zeros for every vhost's own limits and the defaults'
    (under vhost ``""``), so there is a series before the first refusal."""
    counts = dict(ctx.stats.limit_refusals)
    state = ctx.state
    for vhost, limits in state.vhost_limits.items():
        for name in LIMIT_NAMES:
            if getattr(limits, name, None) is not None:
                counts.setdefault((vhost, name), 0)
    for name in LIMIT_NAMES:
        if getattr(state.default_limits, name, None) is not None:
            counts.setdefault((UNKNOWN_VHOST, name), 0)
    out.family(
        "amqpprox_limit_refusals",
        "counter",
        "Connections refused by LIMIT, by vhost and limit: conn_rate, connections, "
        'total_connections (vhost "" for vhosts neither configured nor opened).',
    )
    for (vhost, limit), count in sorted(counts.items()):
        label_set = labels(("vhost", "limit"), (vhost, limit))
        out.line("amqpprox_limit_refusals_total", label_set, count)


def _reload_families(out: Exposition, ctx: Context) -> None:
    """Reloads of --definitions (SIGHUP, --watchDefinitions): zeros from the start."""
    hub = ctx.stats
    out.family(
        "amqpprox_config_reloads",
        "counter",
        "Reloads of the --definitions file (SIGHUP or --watchDefinitions), by result: ok "
        "(applied), failed (unreadable, not JSON or invalid; nothing changed).",
    )
    out.by_result("amqpprox_config_reloads_total", RELOAD_RESULTS, hub.config_reloads)
    out.family(
        "amqpprox_config_last_reload_success_timestamp_seconds",
        "gauge",
        "When the --definitions file was last applied (at start or by a reload), in "
        "seconds since the epoch; absent when none was.",
    )
    if hub.config_last_success is not None:
        name = "amqpprox_config_last_reload_success_timestamp_seconds"
        out.line(name, "", hub.config_last_success)


# ListenerControl.counters names -> (family, help): connections a listener turned away
# before they became sessions (so amqpprox_connections_accepted never saw them).
LISTENER_COUNTERS = (
    (
        "tls_handshake_failures",
        "amqpprox_listener_tls_handshake_failures",
        "Client TLS handshakes that failed or timed out on a secure listener.",
    ),
    (
        "proxy_header_rejected",
        "amqpprox_listener_proxy_header_rejected",
        "Connections closed by a PROXY listener for a missing, invalid or late PROXY header.",
    ),
)


def _histogram(out: Exposition, name: str, label_set: str, hist: Histogram) -> None:
    out.histogram(name, label_set, hist.cumulative(), hist.sum)


def make_registry() -> CollectorRegistry:
    """A registry for one runtime: the standard process/platform/gc collectors (ours,
    ``render``, is written out beside them)."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


async def metrics_handler(request: web.Request) -> web.Response:
    """GET /metrics: the text format (or OpenMetrics when the scraper asks for it)."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    ctx = request.config_dict[CONTEXT]
    openmetrics = content_type.startswith("application/openmetrics-text")
    ours = render(ctx, openmetrics).encode()
    return web.Response(
        body=ours + encoder(request.app[REGISTRY]), headers={"Content-Type": content_type}
    )


def _error(error: InvalidArgument) -> web.Response:
    return web.json_response(
        {"error": error.code, "message": error.message}, status=error.http_status
    )


async def stats_handler(request: web.Request) -> web.Response:
    """GET /api/v1/stats?filter=F: STAT LISTEN json's document for the last interval.

    Before the first cleanup interval has ended, the figures since startup.
    """
    ctx = request.config_dict[CONTEXT]
    hub = ctx.stats
    try:
        flt = statfmt.parse_filter(request.query.get("filter"))
        snapshot = hub.last or hub.collect(ctx.sessions, ctx.hostnames.cached, commit=False)
        doc = statfmt.document(snapshot, flt)
    except InvalidArgument as error:
        return _error(error)
    return web.Response(text=json.dumps(doc), content_type="application/json")


def setup(app: web.Application, ctx: Context) -> None:
    """Register /metrics on the (root) admin app; ``stats_handler`` is the REST app's."""
    app[REGISTRY] = make_registry()
    app.router.add_get("/metrics", metrics_handler)
