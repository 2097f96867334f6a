"""The stream protocol codec, sans-IO: the scanner, the Metadata rewriter and both
handshakes, with byte tables and every chunking of the same bytes."""

from __future__ import annotations

import contextlib
import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amqpprox.proxy.stream_metadata import MetadataRewriter
from amqpprox.stream import codec
from amqpprox.stream import handshake as hs
from amqpprox.stream.scanner import StreamScanner
from tests.rawstream import peer_properties, request, sasl_plain, string, tune


def _metadata_response(corr: int, brokers: list[tuple[int, str, int]]) -> bytes:
    body = struct.pack(">I", corr) + struct.pack(">i", len(brokers))
    for ref, host, port in brokers:
        body += struct.pack(">H", ref) + string(host) + struct.pack(">I", port)
    body += struct.pack(">i", 1) + string("s1") + struct.pack(">HHi", 1, 0, 1) + b"\x00\x01"
    return codec.frame(struct.pack(">HH", codec.METADATA | codec.RESPONSE, 1) + body)


DELIVER = codec.frame(struct.pack(">HH", 0x0008, 1) + b"\x01" + b"x" * 300)
HEARTBEAT = codec.frame(struct.pack(">HH", codec.HEARTBEAT, 1))
CLOSE = codec.close_request(9, codec.OK, "bye")
CLOSE_OK = codec.close_response(9)
META = _metadata_response(7, [(0, "node-a", 5552), (1, "node-b", 5553)])
STREAM = DELIVER + HEARTBEAT + META + DELIVER + CLOSE + CLOSE_OK


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


@given(st.lists(st.integers(min_value=0), max_size=12))
def test_any_chunking_counts_the_same_frames(cuts: list[int]) -> None:
    scanner = StreamScanner(65536)
    for chunk in _chunks(STREAM, cuts):
        assert scanner.feed(chunk) == -1
    assert scanner.frames == 6
    assert scanner.at_boundary
    assert scanner.close_seen and scanner.close_ok_seen


def test_a_frame_over_the_cap_is_reported_at_its_offset() -> None:
    scanner = StreamScanner(100)
    big = struct.pack(">IH", 500, 0x0002)
    assert scanner.feed(HEARTBEAT + big) == len(HEARTBEAT)
    assert "500" in scanner.error and "100" in scanner.error
    assert scanner.frames == 1


def test_a_frame_shorter_than_its_header_is_refused() -> None:
    scanner = StreamScanner(100)
    assert scanner.feed(struct.pack(">IH", 2, 0x0017)) == 0
    assert "shorter" in scanner.error


def test_boundary_offset() -> None:
    scanner = StreamScanner(65536)
    assert scanner.boundary_offset(DELIVER) == 0
    scanner.feed(DELIVER[:10])
    assert scanner.boundary_offset(DELIVER[10:]) == len(DELIVER) - 10
    assert scanner.boundary_offset(b"xx") == -1
    scanner = StreamScanner(65536)
    scanner.feed(DELIVER[:3])  # a header split across reads
    assert scanner.boundary_offset(DELIVER[3:]) == len(DELIVER) - 3


def _where(host: str, port: int) -> tuple[str, int]:
    return ("proxy.example", 15552)


EXPECTED = (
    DELIVER
    + HEARTBEAT
    + _metadata_response(7, [(0, "proxy.example", 15552), (1, "proxy.example", 15552)])
    + DELIVER
    + CLOSE
    + CLOSE_OK
)


@given(st.lists(st.integers(min_value=0), max_size=12))
def test_metadata_is_rewritten_whatever_the_chunking(cuts: list[int]) -> None:
    out: list[bytes] = []
    rewriter = MetadataRewriter(out.append, _where, 65536)
    for chunk in _chunks(STREAM, cuts):
        rewriter(chunk)
    assert b"".join(out) == EXPECTED


def test_frames_other_than_metadata_pass_as_the_same_object() -> None:
    out: list[bytes] = []
    rewriter = MetadataRewriter(out.append, _where, 65536)
    data = DELIVER + HEARTBEAT
    rewriter(data)
    assert out == [data] and out[0] is data  # no copy on the hot path


def test_an_unreadable_metadata_response_passes_unchanged() -> None:
    out: list[bytes] = []
    broken = codec.frame(struct.pack(">HHI", codec.METADATA | codec.RESPONSE, 1, 7) + b"\xff")
    MetadataRewriter(out.append, _where, 65536)(broken)
    assert b"".join(out) == broken


# -- the handshake, as broker -------------------------------------------------------------
CLIENT_HANDSHAKE = (
    peer_properties(1, {"connection_name": "c1"})
    + request(codec.SASL_HANDSHAKE, 2)
    + sasl_plain("guest", "guest", 3)
)


def _server() -> hs.ServerHandshake:
    return hs.ServerHandshake(1048576, 60, [("product", "amqpprox")])


def _frames(data: bytes) -> list[codec.Frame]:
    splitter = hs.FrameSplitter()
    return [codec.split(p) for p in splitter.feed(data)]


@given(st.lists(st.integers(min_value=0), max_size=8))
def test_server_handshake_any_chunking(cuts: list[int]) -> None:
    server = _server()
    whole = CLIENT_HANDSHAKE + tune(131072, 30) + request(codec.OPEN, 4, string("vh"))
    events: list[object] = []
    for chunk in _chunks(whole + HEARTBEAT, cuts):
        events += server.receive_data(chunk)
    assert events == [hs.OpenReceived("vh", 4)]
    assert server.client_properties == {"connection_name": "c1"}
    assert server.tuned == (131072, 30)
    assert server.mechanism == "PLAIN" and server.credentials == b"\0guest\0guest"
    assert server.pending_bytes() == HEARTBEAT  # pipelined after Open: kept for the relay
    keys = [f.key for f in _frames(server.data_to_send())]
    assert keys == [
        codec.PEER_PROPERTIES | codec.RESPONSE,
        codec.SASL_HANDSHAKE | codec.RESPONSE,
        codec.SASL_AUTHENTICATE | codec.RESPONSE,
        codec.TUNE,
    ]


def test_server_handshake_refuses_an_unknown_mechanism_and_accepts_a_retry() -> None:
    server = _server()
    server.receive_data(peer_properties(1) + request(codec.SASL_HANDSHAKE, 2))
    server.data_to_send()
    body = string("EXTERNAL") + struct.pack(">i", 0)
    server.receive_data(request(codec.SASL_AUTHENTICATE, 3, body))
    [answer] = _frames(server.data_to_send())
    assert codec.response_code(answer.body) == (3, codec.SASL_MECHANISM_NOT_SUPPORTED)
    server.receive_data(sasl_plain("u", "p", 4))
    assert [f.key for f in _frames(server.data_to_send())] == [
        codec.SASL_AUTHENTICATE | codec.RESPONSE,
        codec.TUNE,
    ]


def test_server_handshake_answers_a_close() -> None:
    server = _server()
    assert server.receive_data(codec.close_request(5, codec.OK, "bye")) == [hs.ClientClosed()]
    [answer] = _frames(server.data_to_send())
    assert answer.key == codec.CLOSE | codec.RESPONSE
    assert codec.response_code(answer.body) == (5, codec.OK)


def test_server_handshake_refuses_a_command_out_of_order() -> None:
    with pytest.raises(codec.StreamProtocolError) as caught:
        _server().receive_data(request(codec.OPEN, 1, string("/")))
    assert caught.value.code == codec.UNKNOWN_FRAME


@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_the_codecs_error(data: bytes) -> None:
    with contextlib.suppress(codec.StreamProtocolError):
        _server().receive_data(data)


# -- the handshake, as client (the replay) -----------------------------------------------
def _response(command: int, corr: int, code: int = codec.OK, tail: bytes = b"") -> bytes:
    return codec.response(command, corr, code, tail)


def _opened_server() -> hs.ServerHandshake:
    server = _server()
    server.receive_data(CLIENT_HANDSHAKE + tune(131072, 30) + request(codec.OPEN, 4, string("vh")))
    return server


def test_client_handshake_replays_step_by_step() -> None:
    client = hs.ClientHandshake(_opened_server(), [("amqpprox_client", "1.2.3.4:5")])
    [first] = _frames(client.initiate())
    reader = codec.Reader(first.body)
    assert reader.u32() == 1
    assert dict(reader.properties()) == {"connection_name": "c1", "amqpprox_client": "1.2.3.4:5"}
    assert client.receive_data(_response(codec.PEER_PROPERTIES, 1, tail=b"\x00\x00\x00\x00")) == []
    assert [f.key for f in _frames(client.data_to_send())] == [codec.SASL_HANDSHAKE]
    assert client.receive_data(_response(codec.SASL_HANDSHAKE, 2, tail=b"\x00\x00\x00\x00")) == []
    assert [f.key for f in _frames(client.data_to_send())] == [codec.SASL_AUTHENTICATE]
    # The broker's SASL answer and its Tune in one read.
    broker_tune = tune(1048576, 60)
    assert client.receive_data(_response(codec.SASL_AUTHENTICATE, 3) + broker_tune) == []
    sent = _frames(client.data_to_send())
    assert [f.key for f in sent] == [codec.TUNE, codec.OPEN]
    assert codec.read_tune(sent[0].body) == (131072, 30)  # the smaller of each
    props = codec.properties([("advertised_host", "node-a"), ("advertised_port", "5552")])
    trailing = HEARTBEAT
    events = client.receive_data(_response(codec.OPEN, 4, tail=props) + trailing)
    assert events == [
        hs.BrokerOpened(4, [("advertised_host", "node-a"), ("advertised_port", "5552")], trailing)
    ]


@pytest.mark.parametrize(
    ("step", "code", "stage"),
    [
        (0, codec.AUTHENTICATION_FAILURE, "authentication"),
        (1, codec.VIRTUAL_HOST_ACCESS_FAILURE, "open"),
    ],
)
def test_client_handshake_reports_the_brokers_code(step: int, code: int, stage: str) -> None:
    client = hs.ClientHandshake(_opened_server(), [])
    client.initiate()
    client.receive_data(_response(codec.PEER_PROPERTIES, 1, tail=b"\x00\x00\x00\x00"))
    client.receive_data(_response(codec.SASL_HANDSHAKE, 2, tail=b"\x00\x00\x00\x00"))
    if step == 0:
        events = client.receive_data(_response(codec.SASL_AUTHENTICATE, 3, code))
    else:
        client.receive_data(_response(codec.SASL_AUTHENTICATE, 3) + tune())
        events = client.receive_data(_response(codec.OPEN, 4, code))
    assert events == [hs.BrokerRefused(code, stage)]


def test_client_handshake_refuses_an_unexpected_answer() -> None:
    client = hs.ClientHandshake(_opened_server(), [])
    client.initiate()
    with pytest.raises(codec.StreamProtocolError):
        client.receive_data(_response(codec.OPEN, 1))
