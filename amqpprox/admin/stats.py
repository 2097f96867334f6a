"""STAT's renderings: the original's JSON and human layouts, and its statsd datagrams.

Everything here is a pure function of a ``core.stats.StatSnapshot`` except
``StatsdSender``, which owns one UDP socket. Layouts follow the original byte for
byte where it has something to say (reference §8.3-§8.5); the figures it took from
its buffer pool, which an asyncio proxy does not have, are replaced by write-buffer
figures appended to the same ``bufferpool`` object (``pools`` stays, empty).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from dataclasses import dataclass

from amqpprox.core.stats import (
    COUNTER_NAMES,
    GAUGES,
    BufferFigures,
    ConnectionStats,
    ProcessStats,
    StatSnapshot,
    zero_stats,
)
from amqpprox.errors import InvalidArgument
from amqpprox.logsetup import escape_controls

log = logging.getLogger("amqpprox.stats")

FILTER_WORDS = ("ALL", "ALL-EXCEPT-PER-SOURCE", "OVERALL", "PROCESS", "BUFFERPOOL")
FILTER_ERROR = "Filter specified incorrectly."
RESOLVE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class StatFilter:
    """``kind`` is a FILTER_WORDS entry or an upper-cased ``type`` of ``type=value``."""

    kind: str = "ALL"
    value: str = ""


def parse_filter(term: str | None) -> StatFilter:
    """The original's filter syntax; raises InvalidArgument("Filter specified incorrectly.").

    Words are case-insensitive; in ``type=value`` the type is, the value is not. As the
    original (boost tokenizer on '='), empty pieces are dropped and exactly two must
    remain. An unknown type is accepted here and reported at each emission.
    """
    if term is None:
        return StatFilter()
    upper = term.upper()
    if upper in FILTER_WORDS:
        return StatFilter(upper)
    pieces = [piece for piece in term.split("=") if piece]
    if len(pieces) != 2:
        raise InvalidArgument(FILTER_ERROR, legacy_text=FILTER_ERROR + "\n")
    return StatFilter(pieces[0].upper(), pieces[1])


def _lookup(snapshot: StatSnapshot, flt: StatFilter) -> ConnectionStats | None:
    """The one counters object a vhost=/backend=/source= filter selects (zeros if absent)."""
    table = {"VHOST": snapshot.vhosts, "BACKEND": snapshot.backends, "SOURCE": snapshot.sources}
    chosen = table.get(flt.kind)
    if chosen is None:
        return None
    return chosen.get(flt.value) or zero_stats()


def _sorted(table: dict[str, ConnectionStats]) -> dict[str, ConnectionStats]:
    return {key: _ordered(table[key]) for key in sorted(table)}


def _ordered(stats: ConnectionStats) -> dict[str, int]:
    return {name: stats[name] for name in COUNTER_NAMES}


def process_document(process: ProcessStats) -> dict[str, int]:
    return {
        "cpu_percent_overall": process.cpu_percent_overall,
        "cpu_percent_user": process.cpu_percent_user,
        "cpu_percent_system": process.cpu_percent_system,
        "mem_rss_kb": process.mem_rss_kb,
    }


def bufferpool_document(buffers: BufferFigures) -> dict[str, object]:
    return {
        "spill_to_heap_count": 0,
        "pools": {},
        "queued_to_clients_bytes": buffers.queued_to_clients_bytes,
        "queued_to_brokers_bytes": buffers.queued_to_brokers_bytes,
        "backpressured_sessions": buffers.backpressured_sessions,
    }


def document(snapshot: StatSnapshot, flt: StatFilter = StatFilter()) -> object:
    """The JSON value STAT LISTEN json prints for ``flt`` (REST returns the same)."""
    if flt.kind in ("ALL", "ALL-EXCEPT-PER-SOURCE"):
        doc: dict[str, object] = {
            "overall": _ordered(snapshot.overall),
            "process": process_document(snapshot.process),
            "bufferpool": bufferpool_document(snapshot.buffers),
            "vhosts": _sorted(snapshot.vhosts),
            "sources": _sorted(snapshot.sources),
            "backends": _sorted(snapshot.backends),
        }
        if flt.kind == "ALL-EXCEPT-PER-SOURCE":
            del doc["sources"]
        return doc
    if flt.kind == "OVERALL":
        return _ordered(snapshot.overall)
    if flt.kind == "PROCESS":
        return process_document(snapshot.process)
    if flt.kind == "BUFFERPOOL":
        return bufferpool_document(snapshot.buffers)
    stats = _lookup(snapshot, flt)
    if stats is None:
        raise InvalidArgument(f"Unknown filter type: '{flt.kind}'")
    return _ordered(stats)


def render_json(snapshot: StatSnapshot, flt: StatFilter = StatFilter()) -> str:
    """One STAT LISTEN json emission. json.dumps's default separators are the original's."""
    try:
        return json.dumps(document(snapshot, flt)) + "\n"
    except InvalidArgument as error:
        return error.message + "\n"


# -- human -------------------------------------------------------------------------------
def human_bytes(count: int) -> str:
    """The original's humanBytes: 1024-based, C++ default (6 significant digits) floats."""
    kb, mb, gb = 1024, 1024**2, 1024**3
    if count < kb or count >= gb * 1024:
        return f"{count} B"
    if count < mb:
        return f"{count / kb:g} KB"
    if count < gb:
        return f"{count / mb:g} MB"
    return f"{count / gb:g} GB"


def human_counters(stats: ConnectionStats) -> str:
    """The counters line. Traffic figures are per interval, printed "/s" as the original
    (exact with the default 1000 ms cleanup interval)."""
    return (
        f"Paused: {stats['pausedConnectionCount']} "
        f"Active: {stats['activeConnectionCount']} "
        f"Auth denied: {stats['authDeniedConnectionCount']} "
        f"Limited connections: {stats['limitedConnectionCount']} "
        f"Removed(Clean): {stats['removedConnectionGraceful']} "
        f"Removed(Broker): {stats['removedConnectionBrokerSnapped']} "
        f"Removed(Client): {stats['removedConnectionClientSnapped']} "
        f"IN: {human_bytes(stats['bytesReceived'])}/s {stats['packetsReceived']} pkt/s "
        f"{stats['framesReceived']} frames/s "
        f"OUT: {human_bytes(stats['bytesSent'])}/s {stats['packetsSent']} pkt/s "
        f"{stats['framesSent']} frames/s"
    )


def human_process(process: ProcessStats) -> str:
    return (
        f"CPU%: {process.cpu_percent_overall} USR%: {process.cpu_percent_user} "
        f"SYS%: {process.cpu_percent_system} RSS: {human_bytes(process.mem_rss_kb * 1024)}"
    )


def human_bufferpool(buffers: BufferFigures) -> str:
    return (
        "Spilt to heap: 0, Pools (Current/Peak): (none), "
        f"Write buffers (to clients/to brokers): {human_bytes(buffers.queued_to_clients_bytes)}"
        f"/{human_bytes(buffers.queued_to_brokers_bytes)}, "
        f"Backpressured sessions: {buffers.backpressured_sessions}"
    )


def _human_table(table: dict[str, ConnectionStats]) -> str:
    # A key is a vhost a client sent, or a host: escaped so it stays one field of one line.
    return "".join(
        f"{escape_controls(key)}: {human_counters(table[key])}\n" for key in sorted(table)
    )


def render_human(snapshot: StatSnapshot, flt: StatFilter = StatFilter()) -> str:
    """One STAT LISTEN human emission (the "all" layout ends with an empty line)."""
    if flt.kind in ("ALL", "ALL-EXCEPT-PER-SOURCE"):
        text = (
            f"Overall:\n{human_counters(snapshot.overall)}\n"
            f"Process:\n{human_process(snapshot.process)}\n"
            f"BufferPool:\n{human_bufferpool(snapshot.buffers)}\n"
            f"Vhosts:\n{_human_table(snapshot.vhosts)}"
        )
        if flt.kind == "ALL":
            text += f"Sources:\n{_human_table(snapshot.sources)}"
        return text + f"Backends:\n{_human_table(snapshot.backends)}\n"
    if flt.kind == "OVERALL":
        return human_counters(snapshot.overall) + "\n"
    if flt.kind == "PROCESS":
        return human_process(snapshot.process) + "\n"
    if flt.kind == "BUFFERPOOL":
        return human_bufferpool(snapshot.buffers) + "\n"
    stats = _lookup(snapshot, flt)
    if stats is None:
        return f"Unknown filter type: '{flt.kind}'\n"
    return human_counters(stats) + "\n"


def render(snapshot: StatSnapshot, output: str, flt: StatFilter) -> str:
    """``output`` is JSON or HUMAN (upper case, as the control command has checked)."""
    return render_json(snapshot, flt) if output == "JSON" else render_human(snapshot, flt)


# -- statsd --------------------------------------------------------------------------------
# A tag value is text from outside (a vhost name, a client's address): the characters
# that delimit a datagram's fields (and any control character) become "_", so a name
# cannot add a tag, a value or a datagram of its own.
_TAG_UNSAFE = re.compile(r"[,=:|\s\x00-\x1f\x7f-\x9f]")


def _metric(name: str, value: int, kind: str, tags: tuple[tuple[str, str], ...] = ()) -> bytes:
    tagged = "".join(f",{key}={_TAG_UNSAFE.sub('_', val)}" for key, val in tags)
    return f"amqpprox.{name}{tagged}:{value}|{kind}".encode()


def _connection_metrics(stats: ConnectionStats, tags: tuple[tuple[str, str], ...]) -> list[bytes]:
    return [
        _metric(name, stats[name], "g" if name in GAUGES else "c", tags) for name in COUNTER_NAMES
    ]


def statsd_datagrams(snapshot: StatSnapshot) -> list[bytes]:
    """One emission's datagrams, in the original's order and with its tags (§8.5).

    Process and pool figures go untagged as counters, as upstream; our write-buffer
    figures are gauges. The original's sendLatency/receiveLatency distributions were
    always zero there and are not sent (our latencies are histograms on /metrics).
    """
    out = _connection_metrics(snapshot.overall, (("rmqEndpointType", "overall"),))
    process = snapshot.process
    out += [
        _metric("cpu_percent_overall", process.cpu_percent_overall, "c"),
        _metric("cpu_percent_user", process.cpu_percent_user, "c"),
        _metric("cpu_percent_system", process.cpu_percent_system, "c"),
        _metric("mem_rss_kb", process.mem_rss_kb, "c"),
    ]
    for vhost in sorted(snapshot.vhosts):
        if vhost:  # sessions before Open: not sent, as upstream
            tags = (("rmqEndpointType", "vhost"), ("rmqVhostName", vhost))
            out += _connection_metrics(snapshot.vhosts[vhost], tags)
    buffers = snapshot.buffers
    out += [
        _metric("spill_to_heap_count", 0, "c"),
        _metric("queued_to_clients_bytes", buffers.queued_to_clients_bytes, "g"),
        _metric("queued_to_brokers_bytes", buffers.queued_to_brokers_bytes, "g"),
        _metric("backpressured_sessions", buffers.backpressured_sessions, "g"),
    ]
    for kind, table in (("sources", snapshot.sources), ("backends", snapshot.backends)):
        for host in sorted(table):
            tags = (("rmqEndpointType", kind), ("rmqEndpointHostname", host))
            out += _connection_metrics(table[host], tags)
    return out


class StatsdSender:
    """One STAT SEND destination: an IPv4 UDP socket, errors logged, never raised."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self._socket.bind(("0.0.0.0", 0))

    @classmethod
    async def open(cls, host: str, port: int) -> StatsdSender:
        """Resolve ``host`` once (IPv4), as the original; InvalidArgument if it cannot be."""
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM),
                RESOLVE_TIMEOUT,
            )
        except (OSError, TimeoutError, UnicodeError) as error:
            reason = "timed out" if isinstance(error, TimeoutError) else None
            reason = reason or getattr(error, "strerror", None) or str(error)
            raise InvalidArgument(f"Cannot resolve statsd host '{host}': {reason}") from error
        if not infos:
            raise InvalidArgument(f"Cannot resolve statsd host '{host}': no IPv4 address")
        address = infos[0][4]
        return cls((str(address[0]), int(address[1])))

    def deliver(self, snapshot: StatSnapshot) -> None:
        failed = 0
        error: OSError | None = None
        for datagram in statsd_datagrams(snapshot):
            try:
                self._socket.sendto(datagram, self.address)
            except OSError as exc:  # full buffer, unreachable port: statsd is best effort
                failed += 1
                error = exc
        if failed:
            log.warning("Failed to send %d metrics to %s:%d: %s", failed, *self.address, error)

    def close(self) -> None:
        self._socket.close()
