"""Statistics over the session registry: interval snapshots, cumulative totals, latencies.

The relay keeps plain int counters on each session (design rule 3). Nothing here runs
per frame: everything reads those ints when somebody asks, i.e. once per cleanup
interval (STAT LISTEN, STAT SEND) or per scrape (/metrics, REST).

Two views of the same counters:

* ``StatsHub.collect`` makes the original's *interval* snapshot (reference §8.1): the
  13 connection counters per overall / vhost / source / backend, traffic as the delta
  since the previous collection, removals counted in the interval the session is
  removed, the rest as gauges; plus process and buffer figures. ``runtime`` calls it
  each cleanup interval, then ``publish`` hands the snapshot to the STAT listeners and
  statsd senders, then finished sessions are removed and ``forget`` drops them.
* ``route_totals`` (``core.totals``) sums, per (vhost, backend name), the live sessions'
  counters and the retained totals of removed ones, so Prometheus counters never go
  backwards.

Vhosts are counted under ``SessionRegistry.vhost_label``: a vhost a client merely names
(never configured, never opened) is folded into ``UNKNOWN_VHOST`` here too, so STAT and
statsd do not grow with invented names either. The hub also keeps the plain counters
the data plane feeds through small hooks (never prometheus objects on the hot path):
connect failures by backend and reason, auth service answers and latency, limit
refusals by vhost label and limit, reloads of the definitions file.

``session_stats(session)`` is one session's counters and handshake timings as a dict
(for REST's session detail). This module must not import ``proxy`` or ``admin``.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import resource
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from amqpprox.core.sessions import CloseReason, SessionBase, SessionRegistry
from amqpprox.core.totals import SESSION_STATES, STATE_LABEL, RouteTotals, route_totals

if TYPE_CHECKING:  # the Context holds the StatsHub: it imports this module
    from amqpprox.core.context import Context

__all__ = [
    "SESSION_STATES",
    "STATE_LABEL",
    "RouteTotals",
    "StatsHub",
    "route_totals",
    "session_stats",
]

log = logging.getLogger("amqpprox.stats")

# The original's 13 connection counters, in its output order.
GAUGES = (
    "pausedConnectionCount",
    "activeConnectionCount",
    "authDeniedConnectionCount",
    "limitedConnectionCount",
)
REMOVED = (
    "removedConnectionGraceful",
    "removedConnectionBrokerSnapped",
    "removedConnectionClientSnapped",
)
TRAFFIC = (
    "packetsReceived",
    "packetsSent",
    "framesReceived",
    "framesSent",
    "bytesReceived",
    "bytesSent",
)
COUNTER_NAMES = GAUGES + REMOVED + TRAFFIC

# Which removal counter a close reason feeds. As upstream, proxy-driven endings
# (graceful or forced disconnects, refusals: auth, limits, no mapping, no backend,
# handshake deadline) count as graceful; unlike upstream, a client's own clean
# Connection.Close counts as graceful too (we parse it after OPEN; the original could not).
REMOVED_BY_REASON: dict[CloseReason, str] = {
    CloseReason.CLIENT_GRACEFUL: "removedConnectionGraceful",
    CloseReason.PROXY_GRACEFUL: "removedConnectionGraceful",
    CloseReason.PROXY_FORCED: "removedConnectionGraceful",
    CloseReason.BACKEND_DISCONNECTED: "removedConnectionGraceful",
    CloseReason.AUTH_DENIED: "removedConnectionGraceful",
    CloseReason.LIMITED: "removedConnectionGraceful",
    CloseReason.NO_MAPPING: "removedConnectionGraceful",
    CloseReason.BROKEN_MAPPING: "removedConnectionGraceful",
    CloseReason.NO_BACKEND: "removedConnectionGraceful",
    CloseReason.HANDSHAKE_TIMEOUT: "removedConnectionGraceful",
    CloseReason.BROKER_SNAPPED: "removedConnectionBrokerSnapped",
    CloseReason.BROKER_UNRESPONSIVE: "removedConnectionBrokerSnapped",
    CloseReason.CLIENT_SNAPPED: "removedConnectionClientSnapped",
    CloseReason.PROTOCOL_ERROR: "removedConnectionClientSnapped",
}

# Where a session's count goes in the 13 figures: active, or the removal counter; and
# the flags' gauges.
_ACTIVE = COUNTER_NAMES.index("activeConnectionCount")
_PAUSED = COUNTER_NAMES.index("pausedConnectionCount")
_AUTH_DENIED = COUNTER_NAMES.index("authDeniedConnectionCount")
_LIMITED = COUNTER_NAMES.index("limitedConnectionCount")
_REMOVED_AT = {reason: COUNTER_NAMES.index(name) for reason, name in REMOVED_BY_REASON.items()}

# Histogram buckets (seconds) for handshake and broker-connect latencies.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Why an attempt to reach a backend failed (the ``reason`` of the connect-failure counter):
# name resolution, TCP connect refused or reset, a deadline (connect, TLS or broker
# handshake), the TLS handshake, or a connection that never answered in AMQP.
CONNECT_FAILURE_REASONS = ("refused", "timeout", "tls", "dns", "no_amqp")
# The auth service's answers: ALLOW, DENY, no usable answer, no answer in time.
AUTH_RESULTS = ("allow", "deny", "error", "timeout")
# The limits that refuse connections (``core.limits.Refusal.limit``).
LIMIT_NAMES = ("conn_rate", "connections", "total_connections")
RELOAD_RESULTS = ("ok", "failed")  # reloads of the --definitions file (core.reload)
LISTENER_QUEUE = 8  # snapshots kept for a slow STAT LISTEN reader; older ones are dropped

ConnectionStats = dict[str, int]
Traffic = tuple[int, int, int, int, int, int]
_NO_TRAFFIC: Traffic = (0, 0, 0, 0, 0, 0)
# What makes sessions count alike in a snapshot: vhost, source host (when per-source
# statistics are on), broker endpoint, close reason, paused, auth denied, limited.
_GroupKey = tuple[str, str | None, tuple[str, int], CloseReason | None, bool, bool, bool]


def zero_stats() -> ConnectionStats:
    return dict.fromkeys(COUNTER_NAMES, 0)


@dataclass(frozen=True, slots=True)
class ProcessStats:
    """CPU use over the last interval (integer % of one core) and current RSS in KiB."""

    cpu_percent_overall: int = 0
    cpu_percent_user: int = 0
    cpu_percent_system: int = 0
    mem_rss_kb: int = 0


@dataclass(frozen=True, slots=True)
class BufferFigures:
    """What stands in for the original's buffer pool in an asyncio proxy.

    ``queued_to_clients_bytes`` / ``queued_to_brokers_bytes``: bytes accepted by the
    transports' write buffers but not yet written to the sockets, summed over sessions.
    ``backpressured_sessions``: sessions with one side's reading stopped because the
    other side's write buffer passed its high-water mark (operator pauses not counted).
    """

    queued_to_clients_bytes: int = 0
    queued_to_brokers_bytes: int = 0
    backpressured_sessions: int = 0


@dataclass(frozen=True, slots=True)
class StatSnapshot:
    """One collection interval, as STAT LISTEN / STAT SEND / REST show it."""

    overall: ConnectionStats
    process: ProcessStats
    buffers: BufferFigures
    vhosts: dict[str, ConnectionStats]
    sources: dict[str, ConnectionStats]
    backends: dict[str, ConnectionStats]
    taken_at: float  # wall clock
    interval_seconds: float  # since the previous collection (0.0 for the first)


class StatsSink(Protocol):
    """A consumer of interval snapshots (a STAT LISTEN stream, a statsd destination)."""

    def deliver(self, snapshot: StatSnapshot) -> None: ...

    def close(self) -> None: ...


class StatsListener:
    """A STAT LISTEN stream's mailbox: bounded, never blocks the cleanup job."""

    def __init__(self, maxsize: int = LISTENER_QUEUE) -> None:
        self.queue: asyncio.Queue[StatSnapshot] = asyncio.Queue(maxsize)

    def deliver(self, snapshot: StatSnapshot) -> None:
        if self.queue.full():  # a slow reader loses the oldest interval, not the newest
            self.queue.get_nowait()
        self.queue.put_nowait(snapshot)

    def close(self) -> None:
        pass


class Histogram:
    """Bucket counts of observed values (the Prometheus collector renders them)."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class CpuMonitor:
    """Process CPU use between consecutive samples, as whole percents of one core."""

    def __init__(self) -> None:
        self._last: tuple[float, float, float] | None = None
        self.current = ProcessStats()

    def sample(self) -> ProcessStats:
        now = time.monotonic()
        times = os.times()
        user, system = times.user, times.system
        cpu = (0, 0, 0)
        if self._last is not None:
            wall = now - self._last[0]
            if wall > 0:
                du = max(0.0, user - self._last[1]) / wall * 100
                ds = max(0.0, system - self._last[2]) / wall * 100
                cpu = (round(du + ds), round(du), round(ds))
        self._last = (now, user, system)
        self.current = ProcessStats(cpu[0], cpu[1], cpu[2], rss_kb())
        return self.current


def rss_kb() -> int:
    """Current resident set size in KiB (peak RSS where /proc is not available)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


BufferProbe = Callable[[Iterable[SessionBase]], BufferFigures]


class StatsHub:
    """Per-Context statistics state: interval baselines, sinks, latency histograms."""

    def __init__(self) -> None:
        self.per_source = True
        # Failed connect attempts per backend (all reasons), and per (backend, reason).
        self.connect_failures: Counter[str] = Counter()
        self.connect_failure_reasons: Counter[tuple[str, str]] = Counter()
        # The auth service: answers by result, and how long each took.
        self.auth_results: Counter[str] = Counter()
        self.auth_latency = Histogram()
        # Connections refused by a limit, per (vhost label, limit name).
        self.limit_refusals: Counter[tuple[str, str]] = Counter()
        # Reloads of the --definitions file by result (RELOAD_RESULTS), and the wall-clock
        # time the file was last applied (at start or by a reload); None if never.
        self.config_reloads: Counter[str] = Counter()
        self.config_last_success: float | None = None
        # Installed by the data plane: reads the transports' write buffers at collect time.
        self.buffer_probe: BufferProbe | None = None
        self.listeners: set[StatsListener] = set()
        self.senders: list[StatsSink] = []
        self.last: StatSnapshot | None = None
        self.handshake_latency = Histogram()
        self.connect_latency: dict[str, Histogram] = {}
        self._cpu = CpuMonitor()
        self._baseline: dict[int, Traffic] = {}
        self._last_collect: float | None = None
        self._seen_open: set[int] = set()
        self._seen_connect: dict[int, float] = {}

    # -- hooks of the data plane (plain counters, read at scrape time) -------------------
    def connect_failed(self, backend: str, reason: str) -> None:
        self.connect_failures[backend] += 1
        self.connect_failure_reasons[(backend, reason)] += 1

    def auth_answered(self, result: str, seconds: float) -> None:
        self.auth_results[result] += 1
        self.auth_latency.observe(seconds)

    def config_reloaded(self, ok: bool, when: float) -> None:
        self.config_reloads["ok" if ok else "failed"] += 1
        if ok:
            self.config_last_success = when

    # -- interval snapshots -------------------------------------------------------------
    def collect(
        self,
        sessions: Iterable[SessionBase],
        name: Callable[[str], str] = str,
        *,
        commit: bool = True,
    ) -> StatSnapshot:
        """The snapshot of the interval since the last committed collection.

        ``commit`` moves the interval baseline (the cleanup job does); without it the
        snapshot is a peek that leaves the next interval's figures untouched.
        """
        label = sessions.vhost_label if isinstance(sessions, SessionRegistry) else _own_vhost
        sessions = list(sessions)
        # Sessions that fall on the same vhost, source, backend, ending and flags add to
        # the same four tables: sum them per group first, then once per table. With
        # thousands of idle sessions this is one tuple and two dict look-ups each.
        groups: dict[_GroupKey, list[int]] = {}
        baseline = self._baseline
        per_source = self.per_source
        for session in sessions:
            current = (
                session.in_packets,
                session.out_packets,
                session.in_frames,
                session.out_frames,
                session.in_bytes,
                session.out_bytes,
            )
            sid = session.id
            before = baseline.get(sid, _NO_TRAFFIC)
            if commit:
                baseline[sid] = current
            key = (
                label(session),
                session.client[0] if per_source else None,
                session.egress_remote,
                session.close_reason,
                session.paused,
                session.auth_denied,
                session.limited,
            )
            group = groups.get(key)
            if group is None:
                group = groups[key] = [0, 0, 0, 0, 0, 0, 0]
            group[0] += 1
            if current != before:
                for i in range(6):
                    group[i + 1] += current[i] - before[i]
        # Each group's 13 figures as one vector, added to one vector per table entry
        # (the non-zero places only); dicts are made once per entry at the end.
        tables: tuple[dict[str, list[int]], ...] = ({}, {}, {})
        whole = [0] * len(COUNTER_NAMES)
        for key, group in groups.items():
            vhost, source, (host, port), reason, paused, auth_denied, limited = key
            count = group[0]
            figures = [0] * (len(GAUGES) + len(REMOVED)) + group[1:]
            figures[_ACTIVE if reason is None else _REMOVED_AT[reason]] = count
            if paused:
                figures[_PAUSED] = count
            if auth_denied:
                figures[_AUTH_DENIED] = count
            if limited:
                figures[_LIMITED] = count
            places = [i for i, figure in enumerate(figures) if figure]
            for i in places:
                whole[i] += figures[i]
            for table, entry in (
                (tables[0], vhost),
                (tables[1], name(str(source)) if per_source else None),
                (tables[2], f"{name(host)}_{port}"),
            ):
                if entry is None:
                    continue
                vector = table.get(entry)
                if vector is None:
                    table[entry] = figures.copy()
                else:
                    for i in places:
                        vector[i] += figures[i]
        overall = dict(zip(COUNTER_NAMES, whole, strict=True))
        vhosts, sources, backends = (
            {entry: dict(zip(COUNTER_NAMES, vector, strict=True)) for entry, vector in t.items()}
            for t in tables
        )
        if commit:
            self.observe_latencies(sessions)
        now = time.monotonic()
        interval = 0.0 if self._last_collect is None else now - self._last_collect
        if commit:
            self._last_collect = now
            process = self._cpu.sample()
        else:
            process = self._cpu.current
        probe = self.buffer_probe
        buffers = probe(sessions) if probe is not None else BufferFigures()
        return StatSnapshot(
            overall, process, buffers, vhosts, sources, backends, time.time(), interval
        )

    def publish(self, snapshot: StatSnapshot) -> None:
        """Hand one interval to every STAT LISTEN stream and statsd destination."""
        self.last = snapshot
        for listener in list(self.listeners):
            listener.deliver(snapshot)
        for sender in list(self.senders):
            try:
                sender.deliver(snapshot)
            except Exception:  # a sender's bug must not stop the cleanup job
                log.exception("statistics sender failed")

    def forget(self, removed: Iterable[SessionBase]) -> None:
        """Drop the baselines of sessions the registry has just removed."""
        for session in removed:
            self._baseline.pop(session.id, None)
            self._seen_open.discard(session.id)
            self._seen_connect.pop(session.id, None)

    def emit(self, ctx: Context) -> list[SessionBase]:
        """One cleanup interval, in the original's order: collect, publish, remove, reset."""
        snapshot = self.collect(ctx.sessions, ctx.hostnames.cached)
        self.publish(snapshot)
        removed = ctx.sessions.cleanup()
        self.forget(removed)
        return removed

    # -- sinks ----------------------------------------------------------------------------
    def listen(self) -> StatsListener:
        listener = StatsListener()
        self.listeners.add(listener)
        return listener

    def unlisten(self, listener: StatsListener) -> None:
        self.listeners.discard(listener)

    def add_sender(self, sender: StatsSink) -> None:
        self.senders.append(sender)

    def stop_senders(self) -> int:
        senders, self.senders = self.senders, []
        for sender in senders:
            sender.close()
        return len(senders)

    # -- latencies ------------------------------------------------------------------------
    def observe_latencies(self, sessions: Iterable[SessionBase]) -> None:
        """Feed the histograms from sessions' handshake milestones (each once)."""
        for session in sessions:
            if session.id not in self._seen_open:
                handshake = session.handshake_seconds
                if handshake is not None:
                    self._seen_open.add(session.id)
                    self.handshake_latency.observe(handshake)
            connected = session.broker_connected_mono
            backend = session.backend_name
            if (
                connected is not None
                and backend is not None
                and self._seen_connect.get(session.id) != connected
            ):
                seconds = session.backend_connect_seconds
                if seconds is not None:
                    self._seen_connect[session.id] = connected
                    histogram = self.connect_latency.get(backend)
                    if histogram is None:
                        histogram = self.connect_latency[backend] = Histogram()
                    histogram.observe(seconds)


def _own_vhost(session: SessionBase) -> str:
    return session.vhost


# -- one session -------------------------------------------------------------------------
def session_stats(session: SessionBase) -> dict[str, object]:
    """One session's counters and timings, JSON-ready (REST's session detail).

    Directions as in Prometheus: ``client_to_broker`` is what the client sent and the
    proxy relayed, ``broker_to_client`` the reverse. Durations in seconds, ``None``
    until the milestone is reached; ``*_at`` are Unix timestamps.
    """
    now = time.monotonic()
    return {
        "client_to_broker": {
            "bytes": session.in_bytes,
            "frames": session.in_frames,
            "packets": session.in_packets,
        },
        "broker_to_client": {
            "bytes": session.out_bytes,
            "frames": session.out_frames,
            "packets": session.out_packets,
        },
        "timings": {
            "accepted_at": session.started_at,
            "opened_at": session.opened_at,
            "closed_at": session.closed_at,
            "handshake_seconds": session.handshake_seconds,
            "backend_connect_seconds": session.backend_connect_seconds,
            "seconds_since_client_read": now - session.last_in_at,
            "seconds_since_broker_read": now - session.last_out_at,
        },
        "connect_failures": session.connect_failures,
    }
