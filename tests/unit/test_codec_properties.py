"""Hypothesis properties: chunking never changes the outcome; garbage only ever
raises ProtocolError; field values and frames round-trip."""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import itertools
import math
from collections.abc import Callable
from decimal import Decimal

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pamqp import decode as pamqp_decode
from pamqp import frame as pamqp_frame

from amqpprox.amqp import methods
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
    ConnectionClose,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    UnknownMethod,
    decode_method,
    encode_method,
    encode_method_payload,
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


# ------------------------------------------------------- pamqp as an independent oracle
def _same_value(ours: object, theirs: object) -> bool:
    """Our decoded value and pamqp's for the same bytes: equal, up to representation
    (pamqp gives a byte array as bytearray, a long string that is not UTF-8 as bytes where
    we show it with replacement characters, a timestamp as a datetime)."""
    if isinstance(theirs, dict):
        return (
            isinstance(ours, dict)
            and ours.keys() == theirs.keys()
            and all(_same_value(ours[k], theirs[k]) for k in ours)
        )
    if isinstance(theirs, list):
        return (
            isinstance(ours, list)
            and len(ours) == len(theirs)
            and all(_same_value(a, b) for a, b in zip(ours, theirs, strict=True))
        )
    if isinstance(theirs, bytearray):
        return ours == bytes(theirs)
    if isinstance(theirs, bytes):
        return ours in (theirs, theirs.decode("utf-8", "replace"))
    if isinstance(theirs, dt.datetime):
        # pamqp 4 reads a timestamp past 2106 (above 2**32 - 1) as milliseconds.
        seconds = ours // 1000 if isinstance(ours, int) and ours > 0xFFFFFFFF else ours
        return isinstance(ours, Timestamp) and seconds == calendar.timegm(theirs.utctimetuple())
    if isinstance(theirs, float) and isinstance(ours, float) and math.isnan(theirs):
        return math.isnan(ours)
    return type(ours) is type(theirs) and ours == theirs


def assert_pamqp_reads_the_same(data: bytes, table: object) -> None:
    """``data`` (a table's contents, as ``decode_table`` reads them) was accepted as
    ``table``: pamqp must accept it too, as the same table. pamqp does not know every
    field type (it refuses 'U', for one) and insists on UTF-8 field names (we replace
    what is not): then it has no say."""
    try:
        _used, theirs = pamqp_decode.field_table(len(data).to_bytes(4, "big") + data)
    except UnicodeDecodeError:
        return
    except ValueError as error:
        if str(error).startswith("Unknown type"):
            return
        raise AssertionError(f"accepted {data!r}, which pamqp refuses: {error}") from error
    assert _same_value(table, theirs), (data, table, theirs)


def _assert_pamqp_reads_the_same_method(payload: bytes, method: object) -> None:
    """A Connection method we decoded from ``payload``: pamqp reads the same arguments."""
    if isinstance(method, UnknownMethod):
        return  # not ours to check: the relay passes other classes through
    try:
        theirs = pamqp_frame._unmarshal_method_frame(payload)
    except UnicodeDecodeError:
        return  # pamqp insists on UTF-8 where we replace (reply texts, field names)
    except ValueError as error:
        if "Unknown type" in str(error):
            return
        raise AssertionError(f"accepted {payload!r}, which pamqp refuses: {error}") from error
    except Exception as error:
        raise AssertionError(f"accepted {payload!r}, which pamqp refuses: {error!r}") from error
    for item in dataclasses.fields(method):  # type: ignore[arg-type]
        if item.name.startswith("_"):
            continue
        name = item.name.removesuffix("_raw")  # StartOk keeps its table's bytes
        ours = getattr(method, name)
        assert _same_value(ours, getattr(theirs, name)), (payload, name, ours, theirs)


def test_a_timestamp_past_2106_is_compared_as_pamqp_4_reads_it() -> None:
    """pamqp 4 takes a timestamp above 2**32 - 1 for milliseconds: still the same value."""
    wire = encode_table({"t": Timestamp(2**32)})
    assert_pamqp_reads_the_same(wire, decode_table(wire))


@FAST
@given(st.binary(max_size=300))
def test_decode_table_garbage_raises_only_protocol_error(data: bytes) -> None:
    try:
        table = decode_table(data)
    except ProtocolError as exc:
        assert exc.reply_code == 502
    else:
        assert_pamqp_reads_the_same(data, table)


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
        decoded = decode_table(bytes(wire[:cut]))
    except ProtocolError as exc:
        assert exc.reply_code == 502
    else:
        assert_pamqp_reads_the_same(bytes(wire[:cut]), decoded)


@FAST
@given(st.binary(max_size=200))
@example(encode_method_payload(ConnectionClose(320, "CONNECTION_FORCED - bye", 10, 40)))
@example(encode_method_payload(ConnectionOpen("/vhost", "", True)))
@example(encode_method_payload(ConnectionTune(2047, 131072, 60))[2:])
@example(encode_method_payload(ConnectionStart(0, 9, {"a": [1, "b"], "c": b"\xff"}))[2:])
def test_decode_method_garbage_raises_only_protocol_error(payload: bytes) -> None:
    for candidate in (payload, b"\x00\x0a" + payload[:2] + payload[2:]):
        try:
            method = decode_method(candidate)
        except ProtocolError as exc:
            assert exc.reply_code == 502
        else:
            _assert_pamqp_reads_the_same_method(candidate, method)


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
# After a good frame, one of a type the spec does not define (4), or not ended by 0xCE.
@example([encode_frame(FRAME_HEARTBEAT, 0, b""), b"\x04\x00\x01\x00\x00\x00\x00\xce"], 100)
@example([encode_frame(FRAME_BODY, 1, b"abc")[:-1] + b"\xcf"], 100)
def test_frame_reader_garbage_raises_only_protocol_error(
    chunks: list[bytes], max_frame_size: int
) -> None:
    reader = FrameReader(max_frame_size)
    expected, fault = _spec_frames(b"".join(chunks), max_frame_size)
    got: list[Frame] = []
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while (frame := reader.next_frame()) is not NEED_DATA:
                assert len(frame.payload) + 8 <= max_frame_size
                got.append(frame)
            assert reader.buffered <= max_frame_size + len(chunk)
    except ProtocolError as exc:
        assert exc.reply_code == 501
        assert fault, f"refused a valid stream after {got}"
    else:
        assert not fault, f"accepted a frame that breaks §4.2.3 after {got}"
    assert got == expected  # exactly the spec's frames, none invented, none dropped


def _spec_frames(stream: bytes, max_frame_size: int) -> tuple[list[Frame], bool]:
    """AMQP 0-9-1 §4.2.3 walked by hand: the whole frames before the first bad one, and
    whether there is one (a type other than 1, 2, 3, 8; too large; end octet not 0xCE)."""
    frames: list[Frame] = []
    pos = 0
    while len(stream) - pos >= 7:
        kind, channel = stream[pos], int.from_bytes(stream[pos + 1 : pos + 3], "big")
        size = int.from_bytes(stream[pos + 3 : pos + 7], "big")
        if kind not in (1, 2, 3, 8) or size + 8 > max_frame_size:
            return frames, True
        if len(stream) - pos < size + 8:
            break
        if stream[pos + 7 + size] != 0xCE:
            return frames, True
        frames.append(Frame(kind, channel, stream[pos + 7 : pos + 7 + size]))
        pos += size + 8
    return frames, False


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
    # Half the time a known-bad byte: a frame's end octet (of the handshake's frames, up
    # to Open) made anything but 0xCE, which must be refused as a frame error.
    ends = _end_octets(CLIENT_STREAM, len(PROTOCOL_HEADER))[:-1]  # the pipelined frame is relayed
    bad_end = data.draw(st.booleans())
    index = data.draw(st.sampled_from(ends) if bad_end else st.integers(0, len(stream) - 1))
    stream[index] = data.draw(st.integers(0, 255).filter(lambda b: b != 0xCE or not bad_end))
    server = ServerHandshake()
    try:
        server.receive_data(bytes(stream) + garbage)
    except ProtocolError as exc:
        assert 500 <= exc.reply_code <= 599
        assert exc.reply_code == 501 or not bad_end, exc
    else:
        assert not bad_end, f"accepted a frame ending in 0x{stream[index]:02X}"


@FAST
@given(st.binary(max_size=120), st.data())
def test_client_mutated_stream_raises_only_protocol_error(
    garbage: bytes, data: st.DataObject
) -> None:
    stream = bytearray(BROKER_STREAM)
    # Half the time a known-bad byte: a frame's end octet made anything but 0xCE.
    bad_end = data.draw(st.booleans())
    ends = _end_octets(BROKER_STREAM, 0)
    index = data.draw(st.sampled_from(ends) if bad_end else st.integers(0, len(stream) - 1))
    stream[index] = data.draw(st.integers(0, 255).filter(lambda b: b != 0xCE or not bad_end))
    client = ClientHandshake(START_OK, TUNE_OK, OPEN)
    try:
        client.receive_data(bytes(stream) + garbage)
    except ProtocolError as exc:
        assert 500 <= exc.reply_code <= 599
        assert exc.reply_code == 501 or not bad_end, exc
    else:
        assert not bad_end, f"accepted a frame ending in 0x{stream[index]:02X}"


def _end_octets(stream: bytes, start: int) -> list[int]:
    """Offsets of the end octets of the whole frames in ``stream`` from ``start``."""
    ends, pos = [], start
    while pos + 7 <= len(stream):
        pos += 7 + int.from_bytes(stream[pos + 3 : pos + 7], "big")
        ends.append(pos)
        pos += 1
    return ends


# The handshake's fast path (methods._QUICK) must read exactly what the careful path
# reads, and leave every refusal, with its text, to it.
_QUICK_PREFIXES = sorted(methods._QUICK)  # every method the fast path reads


def _outcome(decode: Callable[[bytes], object], payload: bytes) -> object:
    try:
        return decode(payload)
    except ProtocolError as exc:
        return (exc.reply_code, exc.reply_text)


@FAST
@given(st.sampled_from(_QUICK_PREFIXES), st.binary(max_size=80))
@example(b"\x00\x0a\x00\x0b", encode_method_payload(START_OK)[4:])
@example(b"\x00\x0a\x00\x0b", encode_method_payload(START_OK)[4:-1])
@example(b"\x00\x0a\x00\x0b", encode_method_payload(START_OK)[4:] + b"\x00")
@example(b"\x00\x0a\x00\x28", b"\x01/\x00\x01")
@example(b"\x00\x0a\x00\x28", b"\x01\xff\x00\x00")
@example(b"\x00\x0a\x00\x1f", b"\x07\xff\x00\x02\x00\x00\x00\x3c")
@example(b"\x00\x0a\x00\x29", b"\x00")
@example(b"\x00\x0a\x00\x29", b"\x01/")
def test_the_fast_path_reads_what_the_careful_path_reads(prefix: bytes, rest: bytes) -> None:
    payload = prefix + rest
    assert _outcome(decode_method, payload) == _outcome(methods._decode_careful, payload)
