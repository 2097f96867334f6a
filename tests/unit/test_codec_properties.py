"""Hypothesis properties: chunking never changes the outcome; garbage only ever
raises ProtocolError; field values and frames round-trip."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amqpprox.amqp.errors import ProtocolError
from amqpprox.amqp.fields import FieldValue, Timestamp, decode_table, encode_table
from amqpprox.amqp.frames import (
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    NEED_DATA,
    PROTOCOL_HEADER,
    Frame,
    FrameReader,
    encode_frame,
)
from amqpprox.amqp.handshake import (
    ClientEvent,
    ClientHandshake,
    ServerEvent,
    ServerHandshake,
)
from amqpprox.amqp.methods import (
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    decode_method,
    encode_method,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ field values

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).filter(
        lambda d: abs(d) < Decimal(2**31) / 1000
    ),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.integers(min_value=0, max_value=2**64 - 1).map(Timestamp),
)
field_values: st.SearchStrategy[FieldValue] = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=10), inner, max_size=4),
    ),
    max_leaves=20,
)
tables = st.dictionaries(st.text(max_size=12), field_values, max_size=6)


def _same_types(a: FieldValue, b: FieldValue) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return all(_same_types(a[k], b[k]) for k in a)
    return True


@FAST
@given(tables)
def test_tables_round_trip(table: dict[str, FieldValue]) -> None:
    decoded = decode_table(encode_table(table))
    assert decoded == table
    assert _same_types(decoded, table)


@FAST
@given(st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(9999, 1, 1)))
def test_datetimes_encode_as_timestamps(value: dt.datetime) -> None:
    decoded = decode_table(encode_table({"t": value}))["t"]
    assert isinstance(decoded, Timestamp)
    assert decoded.to_datetime() == value.replace(microsecond=0, tzinfo=dt.UTC)


@FAST
@given(st.binary(max_size=300))
def test_decode_table_garbage_raises_only_protocol_error(data: bytes) -> None:
    try:
        decode_table(data)
    except ProtocolError as exc:
        assert exc.reply_code == 502


@FAST
@given(tables, st.data())
def test_decode_table_mutations_raise_only_protocol_error(
    table: dict[str, FieldValue], data: st.DataObject
) -> None:
    wire = bytearray(encode_table(table))
    if wire:
        for _ in range(data.draw(st.integers(1, 4))):
            index = data.draw(st.integers(0, len(wire) - 1))
            wire[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    try:
        decode_table(bytes(wire[:cut]))
    except ProtocolError as exc:
        assert exc.reply_code == 502


@FAST
@given(st.binary(max_size=200))
def test_decode_method_garbage_raises_only_protocol_error(payload: bytes) -> None:
    for candidate in (payload, b"\x00\x0a" + payload[:2] + payload[2:]):
        try:
            decode_method(candidate)
        except ProtocolError as exc:
            assert exc.reply_code == 502


# ------------------------------------------------------------------------ frames

frames = st.builds(
    Frame,
    st.sampled_from([FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT]),
    st.integers(0, 65535),
    st.binary(max_size=64),
)


def _chunks(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@FAST
@given(st.lists(frames, max_size=8), st.lists(st.integers(0, 10_000), max_size=12))
def test_frames_round_trip_under_any_chunking(sent: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(*f) for f in sent)
    reader = FrameReader()
    received = []
    for chunk in _chunks(stream, cuts):
        reader.feed(chunk)
        while (frame := reader.next_frame()) is not NEED_DATA:
            received.append(frame)
    assert received == sent
    assert reader.take_buffered() == b""


@FAST
@given(st.lists(st.binary(max_size=40), max_size=10), st.integers(8, 200))
def test_frame_reader_garbage_raises_only_protocol_error(
    chunks: list[bytes], max_frame_size: int
) -> None:
    reader = FrameReader(max_frame_size)
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while (frame := reader.next_frame()) is not NEED_DATA:
                assert len(frame.payload) + 8 <= max_frame_size
            assert reader.buffered <= max_frame_size + len(chunk)
    except ProtocolError as exc:
        assert exc.reply_code == 501


# -------------------------------------------------------------------- handshakes

START_OK = ConnectionStartOk(
    encode_table({"product": "hypothesis", "capabilities": {"basic.nack": True}}),
    "PLAIN",
    b"\x00guest\x00guest",
    "en_US",
)
TUNE_OK = ConnectionTuneOk(2047, 131072, 60)
OPEN = ConnectionOpen("/vhost")
PIPELINED = encode_frame(FRAME_METHOD, 1, b"\x00\x14\x00\x0a\x00")
CLIENT_STREAM = (
    PROTOCOL_HEADER
    + encode_method(START_OK)
    + encode_frame(FRAME_HEARTBEAT, 0, b"")
    + encode_method(TUNE_OK)
    + encode_method(OPEN)
    + PIPELINED
)
BROKER_STREAM = (
    encode_method(ConnectionStart(0, 9, {"product": "RabbitMQ"}, "PLAIN AMQPLAIN", "en_US"))
    + encode_method(ConnectionTune(2047, 131072, 60))
    + encode_method(ConnectionOpenOk())
)


def _run_server(chunks: list[bytes]) -> tuple[list[ServerEvent], bytes, bytes]:
    server = ServerHandshake()
    events: list[ServerEvent] = []
    out = b""
    for chunk in chunks:
        events += server.receive_data(chunk)
        out += server.data_to_send()
    return events, out, server.pending_bytes()


def _run_client(chunks: list[bytes]) -> tuple[list[ClientEvent], bytes]:
    client = ClientHandshake(START_OK, TUNE_OK, OPEN)
    events: list[ClientEvent] = []
    out = b""
    for chunk in chunks:
        events += client.receive_data(chunk)
        out += client.data_to_send()
    return events, out


SERVER_REFERENCE = _run_server([CLIENT_STREAM])
CLIENT_REFERENCE = _run_client([BROKER_STREAM])


@FAST
@given(st.lists(st.integers(0, 10_000), max_size=20))
def test_server_any_chunking_same_outcome(cuts: list[int]) -> None:
    assert _run_server(_chunks(CLIENT_STREAM, cuts)) == SERVER_REFERENCE
    assert SERVER_REFERENCE[2] == PIPELINED


@FAST
@given(st.lists(st.integers(0, 10_000), max_size=20))
def test_client_any_chunking_same_outcome(cuts: list[int]) -> None:
    assert _run_client(_chunks(BROKER_STREAM, cuts)) == CLIENT_REFERENCE


@FAST
@given(st.binary(max_size=120), st.booleans(), st.lists(st.integers(0, 200), max_size=5))
def test_server_garbage_raises_only_protocol_error(
    garbage: bytes, with_header: bool, cuts: list[int]
) -> None:
    server = ServerHandshake(max_frame_size=4096, max_pending_bytes=64)
    stream = (PROTOCOL_HEADER if with_header else b"") + garbage
    for chunk in _chunks(stream, cuts):
        try:
            server.receive_data(chunk)
        except ProtocolError:
            server.close(501, "bad")
    server.data_to_send()
    server.pending_bytes()


@FAST
@given(st.binary(max_size=120), st.data())
def test_server_mutated_stream_raises_only_protocol_error(
    garbage: bytes, data: st.DataObject
) -> None:
    stream = bytearray(CLIENT_STREAM)
    index = data.draw(st.integers(0, len(stream) - 1))
    stream[index] = data.draw(st.integers(0, 255))
    server = ServerHandshake()
    try:
        server.receive_data(bytes(stream) + garbage)
    except ProtocolError as exc:
        assert 500 <= exc.reply_code <= 599


@FAST
@given(st.binary(max_size=120), st.data())
def test_client_mutated_stream_raises_only_protocol_error(
    garbage: bytes, data: st.DataObject
) -> None:
    stream = bytearray(BROKER_STREAM)
    index = data.draw(st.integers(0, len(stream) - 1))
    stream[index] = data.draw(st.integers(0, 255))
    client = ClientHandshake(START_OK, TUNE_OK, OPEN)
    try:
        client.receive_data(bytes(stream) + garbage)
    except ProtocolError as exc:
        assert 500 <= exc.reply_code <= 599
