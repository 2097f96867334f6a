"""Statistics end to end against the real broker: /metrics, STAT LISTEN, statsd, REST.

The central test pushes a known exchange through the proxy with a scripted client that
counts every byte and frame it writes and reads after OpenOk, then checks that the
Prometheus counters, a STAT LISTEN json line, a STAT LISTEN human line, the statsd
datagrams and REST's /api/v1/stats all report exactly those figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import pytest
from pamqp import body as pbody
from pamqp import commands
from pamqp import frame as pframe
from pamqp import header as pheader
from prometheus_client.parser import text_string_to_metric_families

from amqpprox.admin import stats as statfmt
from amqpprox.amqp import scanner
from amqpprox.amqp.frames import NeedData
from amqpprox.runtime import Runtime, SimpleMode
from tests.conftest import (
    BROKER_HOST,
    BROKER_PORT,
    RunningProxy,
    ctl,
    free_closed_port,
    make_settings,
    running_proxy,
)
from tests.polling import until
from tests.rawamqp import RawClient

pytestmark = pytest.mark.broker

MESSAGES = 1000
MESSAGE_SIZE = 1000
BACKEND = "default-backend"


async def wait_for(condition: Callable[[], bool], limit: float = 5.0) -> None:
    await until(condition, timeout=limit)


# -- a client that counts what it puts on and takes off the wire ----------------------------
@dataclass
class Wire:
    bytes: int = 0
    frames: int = 0


class CountingClient:
    """A RawClient after OpenOk, counting bytes and frames both ways."""

    def __init__(self, raw: RawClient) -> None:
        self.raw = raw
        self.sent = Wire()
        self.received = Wire()
        assert raw.frames.buffered == 0, "nothing may follow OpenOk before we speak"

    async def send(self, *frames: bytes) -> None:
        data = b"".join(frames)
        self.sent.bytes += len(data)
        self.sent.frames += len(frames)
        await self.raw.send(data)

    async def read_frame(self) -> tuple[int, int, bytes]:
        reader = self.raw.frames
        while True:
            frame = reader.next_frame()
            if not isinstance(frame, NeedData):
                self.received.frames += 1
                return frame.type, frame.channel, frame.payload
            chunk = await asyncio.wait_for(self.raw.reader.read(65536), 10)
            if not chunk:
                raise EOFError("connection closed")
            self.received.bytes += len(chunk)
            reader.feed(chunk)

    async def read_method(self, class_id: int, method_id: int) -> None:
        while True:
            kind, _channel, payload = await self.read_frame()
            if kind == 1 and payload[:4] == class_id.to_bytes(2, "big") + method_id.to_bytes(
                2, "big"
            ):
                return


async def exchange(client: CountingClient) -> None:
    """Channel, queue, MESSAGES publishes, consume them all, close: 3004 frames each way."""
    queue = f"amqpprox-stats-{uuid.uuid4().hex}"
    await client.send(pframe.marshal(commands.Channel.Open(), 1))
    await client.read_method(20, 11)
    await client.send(
        pframe.marshal(commands.Queue.Declare(queue=queue, exclusive=True, auto_delete=True), 1)
    )
    await client.read_method(50, 11)
    payload = b"x" * MESSAGE_SIZE
    message = (
        pframe.marshal(commands.Basic.Publish(exchange="", routing_key=queue), 1),
        pframe.marshal(pheader.ContentHeader(0, MESSAGE_SIZE, commands.Basic.Properties()), 1),
        pframe.marshal(pbody.ContentBody(payload), 1),
    )
    await client.send(*(message * MESSAGES))
    await client.send(pframe.marshal(commands.Basic.Consume(queue=queue, no_ack=True), 1))
    bodies = 0
    while bodies < MESSAGES:
        kind, _channel, data = await client.read_frame()
        if kind == 3:
            assert data == payload
            bodies += 1
    await client.send(pframe.marshal(commands.Connection.Close(200, "bye", 0, 0), 0))
    await client.read_method(10, 51)  # CloseOk: as a client does, close the socket now
    client.raw.writer.close()


# -- helpers over the admin plane ---------------------------------------------------------
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(proxy_admin_url: str) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(proxy_admin_url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def rest_stats(admin_url: str, flt: str | None = None) -> tuple[int, object]:
    params = {"filter": flt} if flt is not None else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(admin_url + "/api/v1/stats", params=params) as resp,
    ):
        return resp.status, await resp.json()


class Stream:
    """A STAT LISTEN connection on the control socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: str, line: str) -> Stream:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), 5)
        writer.write(line.encode() + b"\n")
        await writer.drain()
        return cls(reader, writer)

    async def line(self, timeout: float = 5.0) -> str:
        return (await asyncio.wait_for(self.reader.readline(), timeout)).decode()

    async def human_report(self, timeout: float = 5.0) -> list[str]:
        """One "all" emission: lines up to the empty line that ends it."""
        lines: list[str] = []
        while (line := await self.line(timeout)) != "\n":
            assert line, "stream closed"
            lines.append(line.rstrip("\n"))
        return lines

    def close(self) -> None:
        self.writer.close()


async def receive_datagrams(sock: socket.socket, count: int, timeout: float = 5.0) -> list[str]:
    loop = asyncio.get_running_loop()
    out: list[str] = []
    deadline = loop.time() + timeout
    while len(out) < count:
        remaining = deadline - loop.time()
        assert remaining > 0, f"only {len(out)} of {count} datagrams arrived"
        out.append((await asyncio.wait_for(loop.sock_recv(sock, 65536), remaining)).decode())
    return out


def statsd_value(grams: list[str], name: str, tag: str) -> int:
    prefix = f"amqpprox.{name},{tag}:"
    (found,) = [g for g in grams if g.startswith(prefix)]
    return int(found[len(prefix) :].split("|")[0])


# -- the four views agree -------------------------------------------------------------------
async def test_known_traffic_is_counted_exactly_and_identically_everywhere(
    proxy: RunningProxy,
) -> None:
    hub = proxy.ctx.stats
    json_stream = await Stream.open(proxy.control_socket, "STAT LISTEN json overall")
    human_stream = await Stream.open(proxy.control_socket, "STAT LISTEN human overall")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    try:
        udp_port = udp.getsockname()[1]
        assert await ctl(proxy.control_socket, f"STAT SEND 127.0.0.1 {udp_port}") == (
            f"Sending stats on 127.0.0.1:{udp_port}\n"
        )
        await wait_for(lambda: len(hub.listeners) == 2)

        raw = await RawClient.connect(proxy.port)
        assert type(await raw.open()).__name__ == "ConnectionOpenOk"
        client = CountingClient(raw)
        await exchange(client)
        # Frames: Channel.Open, Queue.Declare, 3 per publish, Basic.Consume, Connection.Close;
        # back: Channel.OpenOk, Declare-Ok, Consume-Ok, 3 per delivery, CloseOk.
        assert client.sent.frames == client.received.frames == 3 * MESSAGES + 4
        assert client.sent.bytes > MESSAGES * MESSAGE_SIZE

        (session,) = list(proxy.ctx.sessions)
        await wait_for(lambda: session.finished)
        assert (session.in_bytes, session.in_frames) == (client.sent.bytes, client.sent.frames)
        assert (session.out_bytes, session.out_frames) == (
            client.received.bytes,
            client.received.frames,
        )
        before = await scrape(proxy.admin_url)

        assert proxy.runtime.cleanup_once() == 1  # collect, publish, remove

        report = json.loads(await json_stream.line())
        human = await human_stream.line()
        grams = await receive_datagrams(udp, 13 + 4 + 13 + 4 + 13 + 13)
        after = await scrape(proxy.admin_url)
        status, rest = await rest_stats(proxy.admin_url, "overall")
    finally:
        json_stream.close()
        human_stream.close()
        udp.close()

    assert len(proxy.ctx.sessions) == 0
    labels = {"vhost": "/", "backend": BACKEND}
    overall_tag = "rmqEndpointType=overall"
    for direction, wire, suffix, packets in (
        ("client_to_broker", client.sent, "Received", session.in_packets),
        ("broker_to_client", client.received, "Sent", session.out_packets),
    ):
        for samples in (before, after):  # a counter does not drop when its session goes
            assert value(samples, "amqpprox_bytes_total", direction=direction, **labels) == (
                wire.bytes
            )
            assert value(samples, "amqpprox_frames_total", direction=direction, **labels) == (
                wire.frames
            )
            assert value(samples, "amqpprox_packets_total", direction=direction, **labels) == (
                packets
            )
        assert report[f"bytes{suffix}"] == wire.bytes
        assert report[f"frames{suffix}"] == wire.frames
        assert report[f"packets{suffix}"] == packets
        assert statsd_value(grams, f"bytes{suffix}", overall_tag) == wire.bytes
        assert statsd_value(grams, f"frames{suffix}", overall_tag) == wire.frames
        assert statsd_value(grams, f"packets{suffix}", overall_tag) == packets
        vhost_tag = "rmqEndpointType=vhost,rmqVhostName=/"
        assert statsd_value(grams, f"bytes{suffix}", vhost_tag) == wire.bytes
    assert human == (
        "Paused: 0 Active: 0 Auth denied: 0 Limited connections: 0 Removed(Clean): 1 "
        "Removed(Broker): 0 Removed(Client): 0 "
        f"IN: {statfmt.human_bytes(client.sent.bytes)}/s {session.in_packets} pkt/s "
        f"{client.sent.frames} frames/s "
        f"OUT: {statfmt.human_bytes(client.received.bytes)}/s {session.out_packets} pkt/s "
        f"{client.received.frames} frames/s\n"
    )
    assert report["removedConnectionGraceful"] == 1  # the client's own clean close
    assert statsd_value(grams, "removedConnectionGraceful", overall_tag) == 1
    assert statsd_value(grams, "activeConnectionCount", overall_tag) == 0
    assert status == 200 and rest == report
    assert value(after, "amqpprox_sessions_opened_total", **labels) == 1
    assert value(after, "amqpprox_sessions_closed_total", reason="client_graceful", **labels) == 1
    assert value(after, "amqpprox_sessions", state="active", **labels) == 0
    assert value(before, "amqpprox_handshake_duration_seconds_count") == 1
    assert 0 < value(before, "amqpprox_handshake_duration_seconds_sum") < 5
    assert value(before, "amqpprox_backend_connect_duration_seconds_count", backend=BACKEND) == 1


# -- STAT LISTEN streams ---------------------------------------------------------------------
@pytest.fixture
async def fast_proxy(tmp_socket_dir: str) -> AsyncIterator[RunningProxy]:
    """Simple mode with a 50 ms cleanup interval: STAT LISTEN emits on its own."""
    async with running_proxy(tmp_socket_dir, cleanup_interval_ms=50) as running:
        yield running


async def test_stat_listen_json_streams_one_line_per_interval(fast_proxy: RunningProxy) -> None:
    raw = await RawClient.connect(fast_proxy.port)
    await raw.open()
    stream = await Stream.open(fast_proxy.control_socket, "STAT LISTEN json all")
    try:
        docs = [json.loads(await stream.line()) for _ in range(3)]
    finally:
        stream.close()
    for doc in docs:
        assert list(doc) == ["overall", "process", "bufferpool", "vhosts", "sources", "backends"]
        assert doc["overall"]["activeConnectionCount"] == 1
        assert doc["vhosts"]["/"]["activeConnectionCount"] == 1
        assert doc["sources"]["127.0.0.1"]["activeConnectionCount"] == 1
        assert doc["backends"][f"127.0.0.1_{BROKER_PORT}"]["activeConnectionCount"] == 1
        assert doc["process"]["mem_rss_kb"] > 0
    hub = fast_proxy.ctx.stats
    await wait_for(lambda: not hub.listeners)  # the reader went away: the listener is dropped
    raw.abort()


async def test_stat_listen_human_all_and_per_source_toggle(fast_proxy: RunningProxy) -> None:
    raw = await RawClient.connect(fast_proxy.port)
    await raw.open()
    path = fast_proxy.control_socket
    stream = await Stream.open(path, "STAT LISTEN human all")
    try:
        report = await stream.human_report()
        headers = [line for line in report if line.endswith(":")]
        assert headers == [
            "Overall:",
            "Process:",
            "BufferPool:",
            "Vhosts:",
            "Sources:",
            "Backends:",
        ]
        assert report[1].startswith("Paused: 0 Active: 1 ")
        assert report[3].startswith("CPU%: ") and " RSS: " in report[3]
        assert report[5].startswith("Spilt to heap: 0, Pools (Current/Peak): ")
        assert report[report.index("Sources:") + 1].startswith("127.0.0.1: Paused: 0 Active: 1 ")
        assert await ctl(path, "STAT DISABLE per-source") == "DISABLE per-source applied.\n"
        fast_proxy.ctx.stats.last = None
        await wait_for(lambda: fast_proxy.ctx.stats.last is not None)
        while True:  # reports already queued may predate the change
            report = await stream.human_report()
            sources = report.index("Sources:")
            if report[sources + 1] == "Backends:":
                break
        assert await ctl(path, "stat enable PER-SOURCE") == "ENABLE per-source applied.\n"
    finally:
        stream.close()
        raw.abort()


async def test_all_except_per_source_and_single_object_filters(fast_proxy: RunningProxy) -> None:
    raw = await RawClient.connect(fast_proxy.port)
    await raw.open()
    path = fast_proxy.control_socket
    streams = {
        term: await Stream.open(path, f"STAT LISTEN json {term}")
        for term in ("all-except-per-source", "process", "bufferpool", "vhost=/", "vhost=nope")
    }
    unknown = await Stream.open(path, "STAT LISTEN human foo=bar")
    try:
        docs = {term: json.loads(await stream.line()) for term, stream in streams.items()}
        assert await unknown.line() == "Unknown filter type: 'FOO'\n"
    finally:
        for stream in (*streams.values(), unknown):
            stream.close()
        raw.abort()
    assert "sources" not in docs["all-except-per-source"]
    assert docs["all-except-per-source"]["overall"]["activeConnectionCount"] == 1
    assert set(docs["process"]) == {
        "cpu_percent_overall",
        "cpu_percent_user",
        "cpu_percent_system",
        "mem_rss_kb",
    }
    assert docs["bufferpool"]["spill_to_heap_count"] == 0
    assert "queued_to_clients_bytes" in docs["bufferpool"]
    assert docs["vhost=/"]["activeConnectionCount"] == 1
    assert set(docs["vhost=nope"].values()) == {0}
    status, doc = await rest_stats(fast_proxy.admin_url, "all-except-per-source")
    assert status == 200 and isinstance(doc, dict) and "sources" not in doc
    assert (await rest_stats(fast_proxy.admin_url, "vhost"))[0] == 400
    status, error = await rest_stats(fast_proxy.admin_url, "foo=bar")
    assert status == 400 and error == {
        "error": "invalid_argument",
        "message": "Unknown filter type: 'FOO'",
    }


async def test_a_stream_ends_when_the_proxy_stops(tmp_socket_dir: str) -> None:
    runtime = Runtime(make_settings(tmp_socket_dir, cleanup_interval_ms=50))
    await runtime.start()
    stream = await Stream.open(runtime.settings.control_socket, "STAT LISTEN json overall")
    try:
        assert json.loads(await stream.line())["activeConnectionCount"] == 0
        await runtime.stop()
        rest = await asyncio.wait_for(stream.reader.read(), 5)
        assert all(json.loads(line) for line in rest.decode().splitlines())
    finally:
        stream.close()


# -- STAT SEND -------------------------------------------------------------------------------
async def test_stat_send_errors_never_stop_the_control_socket(proxy: RunningProxy) -> None:
    path = proxy.control_socket
    reply = await ctl(path, "STAT SEND no-such-host.invalid 8125")
    assert reply.startswith("Cannot resolve statsd host 'no-such-host.invalid': ")
    assert reply.endswith("\n")
    assert await ctl(path, "STAT SEND 127.0.0.1 port") == "No output port specified.\n"
    assert await ctl(path, "STAT SEND 127.0.0.1 70000") == "Invalid port: 70000\n"
    assert await ctl(path, "STAT SEND 127.0.0.1 8125 overall") == (
        "Filters aren't supported when sending metrics.\n"
    )
    assert await ctl(path, "STAT SEND 127.0.0.1 8125 bogus") == "Filter specified incorrectly.\n"
    assert proxy.ctx.stats.senders == []
    # Nothing listens on this port: sending is best effort, the interval still completes.
    dead = free_closed_port()
    assert await ctl(path, f"STAT SEND 127.0.0.1 {dead}") == f"Sending stats on 127.0.0.1:{dead}\n"
    proxy.runtime.cleanup_once()
    proxy.runtime.cleanup_once()
    assert await ctl(path, "STAT STOP SEND") == "Stopped sending stats.\n"
    assert proxy.ctx.stats.senders == []
    assert await ctl(path, "DATACENTER PRINT") == "\n"


# -- Prometheus semantics ------------------------------------------------------------------
async def test_metrics_families_and_labels(proxy: RunningProxy) -> None:
    path = proxy.control_socket
    dead = free_closed_port()
    assert await ctl(path, f"BACKEND ADD dead dc 127.0.0.1 {dead}") == ""
    assert await ctl(path, "MAP BACKEND deadvh dead") == ""
    refused = await RawClient.connect(proxy.port)
    closed = await refused.open("deadvh")
    assert type(closed).__name__ == "ConnectionClose"
    await refused.close_ok()

    live = await RawClient.connect(proxy.port)
    await live.open()
    (session,) = [s for s in proxy.ctx.sessions if s.vhost == "/"]
    assert await ctl(path, f"SESSION {session.id} PAUSE") == ""

    samples = await scrape(proxy.admin_url)
    labels = {"vhost": "/", "backend": BACKEND}
    # c or python, as this run's build and AMQPPROX_NO_EXTENSIONS (test_native_build checks them)
    version = proxy.runtime.plane.version
    in_use = scanner.IMPLEMENTATION
    assert value(samples, "amqpprox_build_info", version=version, scanner=in_use) == 1
    assert value(samples, "amqpprox_sessions", state="paused", **labels) == 1
    assert value(samples, "amqpprox_sessions", state="active", **labels) == 0
    failures = "amqpprox_backend_connect_failures_total"
    assert value(samples, failures, backend="dead", reason="refused") >= 1
    assert value(samples, failures, backend="dead", reason="dns") == 0
    await wait_for(lambda: all(s.finished for s in proxy.ctx.sessions if s.vhost == "deadvh"))
    samples = await scrape(proxy.admin_url)
    assert (
        value(
            samples,
            "amqpprox_sessions_closed_total",
            vhost="deadvh",
            backend="",
            reason="no_backend",
        )
        == 1
    )
    assert value(samples, "amqpprox_listener_up", port=str(proxy.port), tls="false") == 1
    assert value(samples, "amqpprox_connections_accepted_total") == 2
    assert any(name.startswith("process_") for name, _labels in samples)
    label_names = {key for _name, labels_ in samples for key, _v in labels_}
    assert not label_names & {"source", "client", "ip", "address"}
    assert "127.0.0.1" not in {v for _name, labels_ in samples for _k, v in labels_}

    assert await ctl(path, "LISTEN STOP") == ""
    samples = await scrape(proxy.admin_url)
    assert value(samples, "amqpprox_listener_up", port=str(proxy.port), tls="false") == 0
    live.abort()


async def test_two_runtimes_have_separate_registries(tmp_socket_dir: str) -> None:
    runtimes = []
    for name in ("a", "b"):
        os.mkdir(os.path.join(tmp_socket_dir, name))
        runtime = Runtime(make_settings(os.path.join(tmp_socket_dir, name)))
        await runtime.start()
        runtimes.append(runtime)
    try:
        port = await runtimes[0].configure_simple(SimpleMode(0, BROKER_HOST, BROKER_PORT))
        client = await RawClient.connect(port)
        await client.open()
        first, second = [await scrape(f"http://127.0.0.1:{r.admin_port}") for r in runtimes]
        assert value(first, "amqpprox_connections_accepted_total") == 1
        assert value(second, "amqpprox_connections_accepted_total") == 0
        client.abort()
    finally:
        for runtime in runtimes:
            await runtime.stop()
