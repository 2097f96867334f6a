"""Prometheus ``/metrics`` and REST ``/api/v1/stats``, both reading core snapshots.

One custom collector, registered in a registry private to this admin app (never the
global one), turns the session registry into metric families at scrape time: nothing
here is touched per frame. Counters are cumulative since start and include the sessions
already removed (``SessionRegistry.removed_by_route``), so no ``_total`` series ever
goes down. The client address is never a label (unbounded cardinality); per-source
figures stay on STAT and REST. Must not import ``proxy``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from amqpprox import __version__, build
from amqpprox.admin import stats as statfmt
from amqpprox.admin.keys import CONTEXT
from amqpprox.core.context import Context
from amqpprox.core.sessions import CloseReason
from amqpprox.core.stats import SESSION_STATES, Histogram, route_totals
from amqpprox.errors import InvalidArgument

REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)

DIRECTIONS = ("client_to_broker", "broker_to_client")


class AmqpproxCollector(Collector):
    """Every amqpprox_* family, built from the Context at each scrape."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._listeners_seen: set[tuple[int, bool]] = set()

    def describe(self) -> Iterable[Metric]:
        return []  # families depend on live state; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        ctx = self._ctx
        hub = ctx.stats
        registry = ctx.sessions
        hub.observe_latencies(registry)
        routes = route_totals(registry)

        info = GaugeMetricFamily(
            "amqpprox_build_info",
            "amqpprox build information; scanner is the relay's frame scanner, c or python.",
            labels=["version", "scanner"],
        )
        info.add_metric([__version__, build()], 1)
        yield info

        sessions = GaugeMetricFamily(
            "amqpprox_sessions",
            "Live sessions by vhost, backend and state "
            "(handshaking includes choosing and connecting to a backend; "
            "paused includes sessions held at Open by VHOST PAUSE).",
            labels=["vhost", "backend", "state"],
        )
        opened = CounterMetricFamily(
            "amqpprox_sessions_opened",
            "Sessions that completed the broker handshake (OpenOk relayed to the client).",
            labels=["vhost", "backend"],
        )
        closed = CounterMetricFamily(
            "amqpprox_sessions_closed",
            'Sessions that ended, by reason (refused ones included, with backend "").',
            labels=["vhost", "backend", "reason"],
        )
        traffic_bytes = CounterMetricFamily(
            "amqpprox_bytes",
            "Bytes relayed after the handshake.",
            labels=["vhost", "backend", "direction"],
        )
        frames = CounterMetricFamily(
            "amqpprox_frames",
            "AMQP frames relayed after the handshake.",
            labels=["vhost", "backend", "direction"],
        )
        packets = CounterMetricFamily(
            "amqpprox_packets",
            "Socket reads carrying relayed data.",
            labels=["vhost", "backend", "direction"],
        )
        coalesce_waits = CounterMetricFamily(
            "amqpprox_coalesce_waits",
            "Times read coalescing (--coalesceReadsMs) left a streaming side unread for its "
            "window; direction is the stream's.",
            labels=["vhost", "backend", "direction"],
        )
        for (vhost, backend), totals in sorted(routes.items()):
            for state in SESSION_STATES:
                sessions.add_metric([vhost, backend, state], totals.states.get(state, 0))
            opened.add_metric([vhost, backend], totals.opened)
            for reason in CloseReason:
                if reason in totals.by_reason:
                    closed.add_metric([vhost, backend, reason.value], totals.by_reason[reason])
            for family, inbound, outbound in (
                (traffic_bytes, totals.in_bytes, totals.out_bytes),
                (frames, totals.in_frames, totals.out_frames),
                (packets, totals.in_packets, totals.out_packets),
                (coalesce_waits, totals.in_coalesce_waits, totals.out_coalesce_waits),
            ):
                family.add_metric([vhost, backend, DIRECTIONS[0]], inbound)
                family.add_metric([vhost, backend, DIRECTIONS[1]], outbound)
        yield from (sessions, opened, closed, traffic_bytes, frames, packets, coalesce_waits)

        accepted = CounterMetricFamily(
            "amqpprox_connections_accepted", "Client connections accepted by the listeners."
        )
        accepted.add_metric([], registry.opened_total)
        yield accepted

        handshake = HistogramMetricFamily(
            "amqpprox_handshake_duration_seconds",
            "Connection.Open received to OpenOk relayed: backend choice, broker connect and "
            "the broker handshake (and any time held by VHOST PAUSE).",
        )
        _add_histogram(handshake, [], hub.handshake_latency)
        yield handshake

        connect = HistogramMetricFamily(
            "amqpprox_backend_connect_duration_seconds",
            "TCP connect time to the backend a session uses.",
            labels=["backend"],
        )
        for backend, histogram in sorted(hub.connect_latency.items()):
            _add_histogram(connect, [backend], histogram)
        yield connect

        failures = CounterMetricFamily(
            "amqpprox_backend_connect_failures",
            "Failed attempts to reach a backend (resolve, connect or broker handshake).",
            labels=["backend"],
        )
        for backend, count in sorted(hub.connect_failures.items()):
            failures.add_metric([backend], count)
        yield failures

        listener_up = GaugeMetricFamily(
            "amqpprox_listener_up",
            "1 while an AMQP listener serves the port, 0 once stopped.",
            labels=["port", "tls"],
        )
        current = {(spec.port, spec.tls) for spec in ctx.listeners.specs()}
        self._listeners_seen |= current
        for port, tls in sorted(self._listeners_seen):
            up = 1 if (port, tls) in current else 0
            listener_up.add_metric([str(port), "true" if tls else "false"], up)
        yield listener_up
        yield from _listener_counters(ctx)

        probe = hub.buffer_probe
        if probe is not None:
            figures = probe(registry)
            queued = GaugeMetricFamily(
                "amqpprox_write_buffer_bytes",
                "Bytes waiting in transports' write buffers, by where they are going.",
                labels=["direction"],
            )
            queued.add_metric([DIRECTIONS[0]], figures.queued_to_brokers_bytes)
            queued.add_metric([DIRECTIONS[1]], figures.queued_to_clients_bytes)
            yield queued
            stalled = GaugeMetricFamily(
                "amqpprox_backpressured_sessions",
                "Sessions with reading stopped because the other side's write buffer is full.",
            )
            stalled.add_metric([], figures.backpressured_sessions)
            yield stalled


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


def _listener_counters(ctx: Context) -> Iterable[Metric]:
    """Per port, for every port listened on since start (stopped ones keep their counts)."""
    ports = ctx.listeners.counted_ports()
    counts = {port: ctx.listeners.counters(port) for port in ports}
    for key, name, text in LISTENER_COUNTERS:
        family = CounterMetricFamily(name, text, labels=["port"])
        for port in ports:
            family.add_metric([str(port)], counts[port].get(key, 0))
        yield family


def _add_histogram(family: HistogramMetricFamily, labels: list[str], hist: Histogram) -> None:
    family.add_metric(labels, hist.cumulative(), sum_value=hist.sum)


def make_registry(ctx: Context) -> CollectorRegistry:
    """A registry for one runtime: our collector plus the standard process/platform/gc ones."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AmqpproxCollector(ctx))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


async def metrics_handler(request: web.Request) -> web.Response:
    """GET /metrics: the text format (or OpenMetrics when the scraper asks for it)."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": content_type})


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
    app[REGISTRY] = make_registry(ctx)
    app.router.add_get("/metrics", metrics_handler)
