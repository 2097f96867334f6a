"""Statistics without sockets: interval deltas, removals, totals, and the STAT renderings."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amqpprox.admin import stats as statfmt
from amqpprox.core.sessions import CloseReason, SessionBase, SessionRegistry, SessionState
from amqpprox.core.stats import (
    COUNTER_NAMES,
    REMOVED_BY_REASON,
    TRAFFIC,
    BufferFigures,
    Histogram,
    ProcessStats,
    StatsHub,
    StatSnapshot,
    route_totals,
    session_stats,
    zero_stats,
)
from amqpprox.errors import InvalidArgument


def make_session(
    registry: SessionRegistry,
    *,
    vhost: str = "/",
    backend: str | None = "rabbit",
    client: str = "10.0.0.1",
) -> SessionBase:
    session = SessionBase(registry.next_id(), (client, 40000), ("127.0.0.1", 5672))
    session.vhost = vhost
    session.backend_name = backend
    if backend is not None:
        session.egress_remote = ("10.1.1.1", 5672)
        session.state = SessionState.ACTIVE
        session.opened_at = session.started_at
    registry.add(session)
    return session


def traffic(session: SessionBase, n: int) -> None:
    session.in_bytes += 100 * n
    session.in_frames += 3 * n
    session.in_packets += n
    session.out_bytes += 10 * n
    session.out_frames += 2 * n
    session.out_packets += n


def finish(session: SessionBase, reason: CloseReason) -> None:
    session.close_reason = reason
    session.state = SessionState.CLOSED


def emit(hub: StatsHub, registry: SessionRegistry) -> StatSnapshot:
    """What runtime.cleanup_once does, without a Context."""
    snapshot = hub.collect(registry)
    hub.publish(snapshot)
    hub.forget(registry.cleanup())
    return snapshot


def test_traffic_is_reported_as_deltas_per_axis() -> None:
    registry, hub = SessionRegistry(), StatsHub()
    a = make_session(registry, vhost="a", client="10.0.0.1")
    b = make_session(registry, vhost="b", client="10.0.0.2")
    traffic(a, 5)
    traffic(b, 1)
    first = emit(hub, registry)
    assert first.overall["bytesReceived"] == 600 and first.overall["framesSent"] == 12
    assert first.vhosts["a"]["bytesReceived"] == 500
    assert first.sources["10.0.0.2"]["packetsReceived"] == 1
    assert first.backends["10.1.1.1_5672"]["activeConnectionCount"] == 2
    traffic(a, 2)
    second = emit(hub, registry)
    assert second.overall["bytesReceived"] == 200
    assert second.vhosts["b"]["bytesReceived"] == 0
    third = emit(hub, registry)
    assert all(third.overall[name] == 0 for name in COUNTER_NAMES[4:])


def test_a_removed_session_counts_once_then_disappears() -> None:
    registry, hub = SessionRegistry(), StatsHub()
    a = make_session(registry)
    traffic(a, 1)
    emit(hub, registry)
    traffic(a, 1)  # its last bytes, then it ends
    finish(a, CloseReason.BROKER_SNAPPED)
    snap = emit(hub, registry)
    assert snap.overall["removedConnectionBrokerSnapped"] == 1
    assert snap.overall["activeConnectionCount"] == 0
    assert snap.overall["bytesReceived"] == 100
    after = emit(hub, registry)
    assert after.overall == zero_stats() and after.vhosts == {}


@pytest.mark.parametrize(
    ("reason", "counter"),
    [
        (CloseReason.CLIENT_GRACEFUL, "removedConnectionGraceful"),
        (CloseReason.PROXY_FORCED, "removedConnectionGraceful"),
        (CloseReason.NO_MAPPING, "removedConnectionGraceful"),
        (CloseReason.CLIENT_SNAPPED, "removedConnectionClientSnapped"),
        (CloseReason.BROKER_SNAPPED, "removedConnectionBrokerSnapped"),
    ],
)
def test_removal_categories(reason: CloseReason, counter: str) -> None:
    registry, hub = SessionRegistry(), StatsHub()
    finish(make_session(registry), reason)
    assert emit(hub, registry).overall[counter] == 1


def test_gauges_and_the_unconnected_backend_key() -> None:
    registry, hub = SessionRegistry(), StatsHub()
    held = make_session(registry, vhost="", backend=None)
    held.paused = True
    denied = make_session(registry)
    denied.auth_denied = True
    denied.limited = True
    snap = hub.collect(registry)
    assert snap.overall["pausedConnectionCount"] == 1
    assert snap.overall["authDeniedConnectionCount"] == 1
    assert snap.overall["limitedConnectionCount"] == 1
    assert snap.overall["activeConnectionCount"] == 2
    assert snap.backends["0.0.0.0_0"]["pausedConnectionCount"] == 1
    assert "" in snap.vhosts


def test_per_source_can_be_disabled() -> None:
    registry, hub = SessionRegistry(), StatsHub()
    make_session(registry)
    hub.per_source = False
    assert hub.collect(registry).sources == {}
    hub.per_source = True
    assert list(hub.collect(registry).sources) == ["10.0.0.1"]


def test_a_peek_does_not_move_the_interval() -> None:
    registry, hub = SessionRegistry(), StatsHub()
    a = make_session(registry)
    traffic(a, 1)
    assert hub.collect(registry, commit=False).overall["bytesReceived"] == 100
    assert hub.collect(registry).overall["bytesReceived"] == 100
    assert hub.collect(registry).overall["bytesReceived"] == 0


def test_route_totals_survive_removal() -> None:
    registry, hub = SessionRegistry(), StatsHub()
    a = make_session(registry, vhost="v", backend="r1")
    traffic(a, 7)
    before = route_totals(registry)[("v", "r1")]
    finish(a, CloseReason.CLIENT_GRACEFUL)
    emit(hub, registry)
    assert len(registry) == 0
    after = route_totals(registry)[("v", "r1")]
    assert (after.in_bytes, after.out_frames, after.opened) == (
        before.in_bytes,
        before.out_frames,
        1,
    )
    assert after.by_reason == {CloseReason.CLIENT_GRACEFUL: 1}
    assert sum(after.states.values()) == 0


def test_latencies_are_observed_once_each() -> None:
    registry, hub = SessionRegistry(), StatsHub()
    a = make_session(registry)
    a.open_received_mono, a.open_ok_mono = 10.0, 10.25
    a.connect_started_mono, a.broker_connected_mono = 10.0, 10.002
    hub.observe_latencies(registry)
    hub.observe_latencies(registry)
    assert hub.handshake_latency.count == 1 and hub.handshake_latency.sum == 0.25
    assert hub.connect_latency["rabbit"].count == 1
    assert a.handshake_seconds == 0.25
    detail = session_stats(a)
    assert detail["timings"]["handshake_seconds"] == 0.25  # type: ignore[index]
    assert detail["client_to_broker"] == {"bytes": 0, "frames": 0, "packets": 0}


def test_histogram_buckets_are_cumulative() -> None:
    hist = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 7.0):
        hist.observe(value)
    assert hist.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]


# -- renderings ----------------------------------------------------------------------------
def snapshot_with(stats: dict[str, int]) -> StatSnapshot:
    full = zero_stats() | stats
    return StatSnapshot(
        overall=full,
        process=ProcessStats(1, 0, 1, 15152),
        buffers=BufferFigures(2048, 0, 1),
        vhosts={"/": full},
        sources={"127.0.0.1": full},
        backends={"127.0.0.1_5672": full},
        taken_at=0.0,
        interval_seconds=1.0,
    )


def test_human_bytes_matches_the_original() -> None:
    # Values from the original's STAT LISTEN human output (reference original-outputs.txt).
    assert statfmt.human_bytes(138765) == "135.513 KB"
    assert statfmt.human_bytes(15152 * 1024) == "14.7969 MB"
    assert statfmt.human_bytes(1023) == "1023 B"
    assert statfmt.human_bytes(1024) == "1 KB"
    assert statfmt.human_bytes(3 * 1024**3) == "3 GB"
    assert statfmt.human_bytes(1024**4) == f"{1024**4} B"


def test_human_layouts() -> None:
    snap = snapshot_with({"activeConnectionCount": 1, "bytesReceived": 138765})
    line = (
        "Paused: 0 Active: 1 Auth denied: 0 Limited connections: 0 Removed(Clean): 0 "
        "Removed(Broker): 0 Removed(Client): 0 IN: 135.513 KB/s 0 pkt/s 0 frames/s "
        "OUT: 0 B/s 0 pkt/s 0 frames/s"
    )
    assert statfmt.render_human(snap, statfmt.StatFilter("OVERALL")) == line + "\n"
    text = statfmt.render_human(snap)
    assert text.split("\n") == [
        "Overall:",
        line,
        "Process:",
        "CPU%: 1 USR%: 0 SYS%: 1 RSS: 14.7969 MB",
        "BufferPool:",
        "Spilt to heap: 0, Pools (Current/Peak): (none), "
        "Write buffers (to clients/to brokers): 2 KB/0 B, Backpressured sessions: 1",
        "Vhosts:",
        f"/: {line}",
        "Sources:",
        f"127.0.0.1: {line}",
        "Backends:",
        f"127.0.0.1_5672: {line}",
        "",
        "",
    ]
    without = statfmt.render_human(snap, statfmt.StatFilter("ALL-EXCEPT-PER-SOURCE"))
    assert "Sources:" not in without and "127.0.0.1_5672: " in without
    zero = statfmt.render_human(snap, statfmt.parse_filter("vhost=nope"))
    assert zero.startswith("Paused: 0 Active: 0 ")
    assert statfmt.render_human(snap, statfmt.parse_filter("foo=bar")) == (
        "Unknown filter type: 'FOO'\n"
    )


def test_json_layouts() -> None:
    snap = snapshot_with({"activeConnectionCount": 1})
    line = statfmt.render_json(snap)
    assert line.endswith("}\n") and "\n" not in line[:-1]
    assert line.startswith('{"overall": {"pausedConnectionCount": 0, "activeConnectionCount": 1, ')
    doc = json.loads(line)
    assert list(doc) == ["overall", "process", "bufferpool", "vhosts", "sources", "backends"]
    assert list(doc["overall"]) == list(COUNTER_NAMES)
    assert doc["process"] == {
        "cpu_percent_overall": 1,
        "cpu_percent_user": 0,
        "cpu_percent_system": 1,
        "mem_rss_kb": 15152,
    }
    assert doc["bufferpool"]["spill_to_heap_count"] == 0 and doc["bufferpool"]["pools"] == {}
    assert "sources" not in json.loads(
        statfmt.render_json(snap, statfmt.parse_filter("all-except-per-source"))
    )
    assert (
        json.loads(statfmt.render_json(snap, statfmt.parse_filter("Backend=127.0.0.1_5672")))[
            "activeConnectionCount"
        ]
        == 1
    )
    assert statfmt.render_json(snap, statfmt.parse_filter("source=x")) == (
        json.dumps(zero_stats()) + "\n"
    )
    assert statfmt.render_json(snap, statfmt.parse_filter("x=y")) == "Unknown filter type: 'X'\n"


@pytest.mark.parametrize("term", ["foo", "vhost=", "=x", "a=b=c", "vhost"])
def test_bad_filters(term: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        statfmt.parse_filter(term)
    assert caught.value.legacy_text == "Filter specified incorrectly.\n"


def test_filter_words_are_case_insensitive_values_are_not() -> None:
    assert statfmt.parse_filter("Process") == statfmt.StatFilter("PROCESS")
    assert statfmt.parse_filter("vHost=MyHost") == statfmt.StatFilter("VHOST", "MyHost")
    assert statfmt.parse_filter(None) == statfmt.StatFilter("ALL")


def test_statsd_datagrams() -> None:
    snap = snapshot_with({"activeConnectionCount": 1, "bytesReceived": 1234})
    snap.vhosts[""] = zero_stats()  # before Open: never sent
    grams = [g.decode() for g in statfmt.statsd_datagrams(snap)]
    assert grams[0] == "amqpprox.pausedConnectionCount,rmqEndpointType=overall:0|g"
    assert "amqpprox.bytesReceived,rmqEndpointType=overall:1234|c" in grams
    assert "amqpprox.bytesReceived,rmqEndpointType=vhost,rmqVhostName=/:1234|c" in grams
    assert "amqpprox.cpu_percent_overall:1|c" in grams and "amqpprox.mem_rss_kb:15152|c" in grams
    assert "amqpprox.spill_to_heap_count:0|c" in grams
    assert (
        "amqpprox.activeConnectionCount,rmqEndpointType=sources,"
        "rmqEndpointHostname=127.0.0.1:1|g" in grams
    )
    assert (
        "amqpprox.framesSent,rmqEndpointType=backends,rmqEndpointHostname=127.0.0.1_5672:0|c"
        in grams
    )
    assert not any("rmqVhostName=:" in g for g in grams)
    assert len(grams) == 13 + 4 + 13 + 4 + 13 + 13


def test_statsd_tags_cannot_be_forged_by_a_name() -> None:
    snap = snapshot_with({"bytesReceived": 7})
    snap.vhosts["a,rmqEndpointType=x:9|c\nevil"] = snap.vhosts.pop("/")
    grams = [g.decode() for g in statfmt.statsd_datagrams(snap)]
    mine = [g for g in grams if "rmqVhostName=" in g]
    assert (
        "amqpprox.bytesReceived,rmqEndpointType=vhost,rmqVhostName=a_rmqEndpointType_x_9_c_evil:7|c"
        in mine
    )
    assert all(g.count(":") == 1 and g.count("|") == 1 and "\n" not in g for g in mine)


# -- the grouped collection against a one-session-at-a-time reference ------------------------
session_specs = st.lists(
    st.tuples(
        st.sampled_from(["/", "a", "b"]),  # vhost
        st.sampled_from(["10.0.0.1", "10.0.0.2", "::1"]),  # client host
        st.sampled_from([("0.0.0.0", 0), ("10.1.1.1", 5672), ("10.1.1.2", 5672)]),  # broker
        st.sampled_from([None, *CloseReason]),
        st.booleans(),  # paused
        st.booleans(),  # auth denied
        st.booleans(),  # limited
        st.lists(st.integers(0, 10_000), min_size=6, max_size=6),  # traffic, first interval
        st.lists(st.integers(0, 10_000), min_size=6, max_size=6),  # added in the second
    ),
    max_size=25,
)


def _reference(
    sessions: list[SessionBase], before: dict[int, tuple[int, ...]], per_source: bool
) -> dict[str, dict[str, dict[str, int]]]:
    """The snapshot's four tables computed the plain way: each session adds to each axis."""
    tables: dict[str, dict[str, dict[str, int]]] = {
        "overall": {},
        "vhosts": {},
        "sources": {},
        "backends": {},
    }
    for s in sessions:
        now = (s.in_packets, s.out_packets, s.in_frames, s.out_frames, s.in_bytes, s.out_bytes)
        delta = [c - b for c, b in zip(now, before.get(s.id, (0,) * 6), strict=True)]
        keys = [("overall", ""), ("vhosts", s.vhost)]
        if per_source:
            keys.append(("sources", s.client[0]))
        keys.append(("backends", f"{s.egress_remote[0]}_{s.egress_remote[1]}"))
        for table, key in keys:
            stats = tables[table].setdefault(key, zero_stats())
            if s.close_reason is None:
                stats["activeConnectionCount"] += 1
            else:
                stats[REMOVED_BY_REASON[s.close_reason]] += 1
            stats["pausedConnectionCount"] += s.paused
            stats["authDeniedConnectionCount"] += s.auth_denied
            stats["limitedConnectionCount"] += s.limited
            for name, value in zip(TRAFFIC, delta, strict=True):
                stats[name] += value
    return tables


@settings(max_examples=200, deadline=None)
@given(session_specs, st.booleans())
def test_grouped_collection_matches_the_per_session_sums(
    specs: list[tuple[Any, ...]], per_source: bool
) -> None:
    registry = SessionRegistry()
    hub = StatsHub()
    hub.per_source = per_source
    sessions = []
    for vhost, host, broker, _reason, paused, denied, limited, first, _second in specs:
        s = SessionBase(registry.next_id(), (host, 40000), ("127.0.0.1", 5673))
        s.vhost, s.egress_remote, s.paused, s.auth_denied, s.limited = (
            vhost, broker, paused, denied, limited,
        )  # fmt: skip
        (s.in_packets, s.out_packets, s.in_frames, s.out_frames, s.in_bytes, s.out_bytes) = first
        registry.add(s)
        sessions.append(s)
    hub.collect(registry)  # the first interval sets the baselines
    before = {
        s.id: (s.in_packets, s.out_packets, s.in_frames, s.out_frames, s.in_bytes, s.out_bytes)
        for s in sessions
    }
    for s, spec in zip(sessions, specs, strict=True):
        extra = spec[8]
        s.in_packets += extra[0]
        s.out_packets += extra[1]
        s.in_frames += extra[2]
        s.out_frames += extra[3]
        s.in_bytes += extra[4]
        s.out_bytes += extra[5]
        s.close_reason = spec[3]
    snapshot = hub.collect(registry)
    want = _reference(sessions, before, per_source)
    assert snapshot.overall == want["overall"].get("", zero_stats())
    assert snapshot.vhosts == want["vhosts"]
    assert snapshot.sources == want["sources"]
    assert snapshot.backends == want["backends"]
