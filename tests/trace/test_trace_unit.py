"""Sans-IO parts of the trace: the decoder (every method, RabbitMQ's extensions, secrets
redacted, malformed payloads), the frame tap's walk (any chunking gives the same events,
a tap attached mid-frame starts at the next boundary), readers that fall behind, and
pamqp used nowhere outside ``amqpprox/amqp``."""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands, frame, header

from amqpprox.amqp.scanner import FrameScanner
from amqpprox.amqp.trace_decode import REDACTED, decode_frame
from amqpprox.core.traces import (
    BUFFER_BYTES,
    StopReason,
    TraceFilter,
    TraceOptions,
    TraceRegistry,
)
from amqpprox.proxy.trace_tap import KEEP_LIMIT, TraceTap

PACKAGE = Path(__file__).resolve().parents[2] / "amqpprox"


def _decode(value: Any, channel: int = 1) -> dict[str, Any]:
    raw = frame.marshal(value, channel)
    return decode_frame(raw[0], channel, raw[7:-1])


@pytest.mark.parametrize("method", sorted(commands.INDEX_MAPPING.items()))
def test_every_method_of_the_protocol_decodes(method: tuple[int, type]) -> None:
    cls = method[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Basic.RecoverAsync
        value = cls()
    for name in cls.attributes():  # fields without a default: a value of their type
        if getattr(value, name) is None:
            kind = cls.amqp_type(name)
            setattr(value, name, {} if kind == "table" else "" if "str" in kind else 0)
    decoded = _decode(value, channel=0 if cls.name.startswith("Connection") else 3)
    assert decoded["type"] == "method"
    assert decoded["method"] == cls.name
    json.dumps(decoded)  # JSON-able, whatever the arguments


def test_rabbitmq_extensions_with_their_arguments() -> None:
    assert _decode(commands.Confirm.Select(nowait=False))["method"] == "Confirm.Select"
    nack = _decode(commands.Basic.Nack(delivery_tag=7, multiple=True, requeue=False))
    assert nack["arguments"] == {"delivery_tag": 7, "multiple": True, "requeue": False}
    bind = _decode(commands.Exchange.Bind(destination="d", source="s", routing_key="k"))
    assert bind["method"] == "Exchange.Bind"
    assert (bind["arguments"]["destination"], bind["arguments"]["source"]) == ("d", "s")
    declare = _decode(commands.Queue.Declare(queue="q", arguments={"x-queue-type": "quorum"}))
    assert declare["arguments"]["arguments"] == {"x-queue-type": "quorum"}


def test_content_header_properties_and_bodies() -> None:
    props = commands.Basic.Properties(
        content_type="text/plain", delivery_mode=2, headers={"a": 1, "b": [1, "x"]}
    )
    decoded = _decode(header.ContentHeader(body_size=10, properties=props))
    assert decoded["body_size"] == 10
    assert decoded["properties"] == {
        "content_type": "text/plain",
        "delivery_mode": 2,
        "headers": {"a": 1, "b": [1, "x"]},
    }
    assert decode_frame(3, 1, b"", 5) == {"type": "body", "channel": 1, "body_size": 5}
    captured = decode_frame(3, 1, b"\xff\x00", 2)
    assert captured["body_base64"] == "/wA=" and captured["body_truncated"] is False
    assert decode_frame(8, 0, b"") == {"type": "heartbeat", "channel": 0}


def test_secrets_are_redacted_in_the_decoder() -> None:
    start_ok = commands.Connection.StartOk(
        client_properties={"product": "p"}, mechanism="PLAIN", response="\0alice\0s3cret"
    )
    decoded = _decode(start_ok, channel=0)
    assert decoded["arguments"]["response"] == REDACTED
    assert decoded["arguments"]["user"] == "alice"
    secure = _decode(commands.Connection.Secure(challenge="s3cret-challenge"), channel=0)
    secure_ok = _decode(commands.Connection.SecureOk(response="s3cret"), channel=0)
    for redacted in (decoded, secure, secure_ok):
        assert "s3cret" not in json.dumps(redacted)


@pytest.mark.parametrize(
    "payload", [b"", b"\x00", b"\x00\x3c\x00\x28", b"\x00\x3c\x00\x28garbage", b"\xff" * 9]
)
def test_malformed_method_payloads_give_an_error_event(payload: bytes) -> None:
    decoded = decode_frame(1, 1, payload)
    assert decoded["type"] == "method" and "undecodable method frame" in decoded["error"]
    assert decode_frame(2, 1, payload)["error"].startswith("undecodable header frame")
    assert decode_frame(9, 1, payload) == {"type": "unknown(9)", "channel": 1, "size": len(payload)}


STREAM = (
    b"".join(
        frame.marshal(value, channel)
        for value, channel in (
            (commands.Channel.Open(), 1),
            (commands.Basic.Publish(exchange="x", routing_key="r"), 1),
            (header.ContentHeader(body_size=300), 1),
            (commands.Basic.Ack(delivery_tag=1), 1),
        )
    )
    + bytes([3, 0, 1, 0, 0, 1, 44])
    + b"b" * 300
    + b"\xce"
)


def _tapped_events(chunks: list[bytes], body_keep: int = 0) -> list[tuple[Any, ...]]:
    registry = TraceRegistry()
    loop = asyncio.new_event_loop()
    try:
        trace = loop.run_until_complete(_start(registry, body_keep))
    finally:
        loop.close()
    tap = TraceTap(5)
    tap.add(trace)
    relayed: list[bytes] = []
    client, _broker = tap.wrap((relayed.append, relayed.append), (FrameScanner(1 << 20),) * 2)
    for chunk in chunks:
        client(chunk)
    assert b"".join(relayed) == b"".join(chunks)  # every byte relayed, in order
    return [event[1:] for event in trace.buffer]


async def _start(registry: TraceRegistry, body_keep: int) -> Any:
    options = TraceOptions(bodies=body_keep > 0, body_bytes=max(1, body_keep))
    return registry.start(TraceFilter(vhost="/"), options)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=8))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert _tapped_events(chunks, 16) == _tapped_events([STREAM], 16)


def test_events_keep_payloads_and_only_the_asked_body_bytes() -> None:
    events = _tapped_events([STREAM], body_keep=16)
    assert [(e[1], e[2], e[3]) for e in events] == [
        (0, 1, 1),
        (0, 1, 1),
        (0, 2, 1),
        (0, 1, 1),
        (0, 3, 1),
    ]
    assert events[-1][4] == b"b" * 16 and events[-1][5] == 300
    assert _tapped_events([STREAM])[-1][4] == b""  # bodies off: none of it kept


def test_a_tap_attached_mid_frame_starts_at_the_next_boundary() -> None:
    registry = TraceRegistry()
    loop = asyncio.new_event_loop()
    try:
        trace = loop.run_until_complete(_start(registry, 0))
    finally:
        loop.close()
    scanner = FrameScanner(1 << 20)
    first = frame.marshal(commands.Basic.Publish(exchange="x"), 1)
    scanner.feed(first[:5])  # the relay saw part of a frame before the tap came
    tap = TraceTap(1)
    tap.add(trace)
    client, _ = tap.wrap((scanner.feed, scanner.feed), (scanner, scanner))
    client(first[5:] + frame.marshal(commands.Basic.Ack(delivery_tag=4), 1))
    assert [trace.decode(e)["method"] for e in trace.buffer] == ["Basic.Ack"]


async def test_a_reader_that_falls_behind_drops_and_the_trace_stops_at_max_frames() -> None:
    registry = TraceRegistry()
    stopped: list[int] = []
    registry.on_stop.append(lambda t: stopped.append(t.id))
    trace = registry.start(TraceFilter(source="127.0.0.1"), TraceOptions(max_frames=10))
    reader = trace.reader(limit=3)
    for n in range(12):
        trace.record((0.0, 1, 0, 1, 1, b"", n))
    assert (trace.frames, reader.dropped, trace.dropped, registry.dropped_total) == (10, 7, 7, 7)
    assert trace.stop_reason is StopReason.MAX_FRAMES and stopped == [trace.id]
    assert reader.closed and len(reader.queue) == 3
    assert registry.events_total == 10 and registry.active == 0


def test_pamqp_is_used_only_inside_the_codec_package() -> None:
    users = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "pamqp" in path.read_text() and path.parent.name != "amqp"
    )
    assert users == []


def test_a_header_too_large_to_keep_is_shown_by_its_size() -> None:
    props = commands.Basic.Properties(headers={"big": "x" * (KEEP_LIMIT + 10)})
    big = frame.marshal(header.ContentHeader(body_size=1, properties=props), 1)
    events = _tapped_events([big[:1000], big[1000:]])
    assert len(events) == 1 and len(events[0][4]) == KEEP_LIMIT
    registry_trace = TraceRegistry()
    loop = asyncio.new_event_loop()
    try:
        trace = loop.run_until_complete(_start(registry_trace, 0))
    finally:
        loop.close()
    decoded = trace.decode((0.0, 1, 0, *events[0][2:]))
    assert decoded["type"] == "header" and decoded["size"] == len(big) - 8
    assert "too large to keep" in decoded["error"]


async def test_the_buffer_keeps_the_latest_events_within_its_byte_budget() -> None:
    trace = TraceRegistry().start(TraceFilter(vhost="/"), TraceOptions(max_frames=1000))
    chunk = b"x" * (1 << 20)
    for n in range(40):
        trace.record((0.0, 1, 0, 3, 1, chunk, n))
    assert trace.buffered_bytes <= BUFFER_BYTES
    assert [e[6] for e in trace.buffer] == list(range(40 - BUFFER_BYTES // len(chunk), 40))
