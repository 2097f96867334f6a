"""ServerHandshake and ClientHandshake driven with hand-written byte streams."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from amqpprox.amqp.errors import ProtocolError
from amqpprox.amqp.fields import FieldValue, decode_table
from amqpprox.amqp.frames import NEED_DATA, Frame, FrameReader
from amqpprox.amqp.handshake import (
    BadProtocolHeader,
    BrokerClosed,
    BrokerOpenOk,
    BrokerStart,
    BrokerTune,
    ClientClosed,
    ClientCloseOk,
    ClientEvent,
    ClientHandshake,
    ClientState,
    OpenReceived,
    ServerEvent,
    ServerHandshake,
    ServerState,
    StartOkReceived,
    TuneOkReceived,
)
from amqpprox.amqp.methods import (
    ConnectionClose,
    ConnectionOpen,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    decode_method,
)

HEADER = b"AMQP\x00\x00\x09\x01"
LEGACY_HEADER = b"AMQP\x01\x01\x00\x09"
HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"

# --- what a client sends
START_OK = (
    b"\x01\x00\x00\x00\x00\x00\x28\x00\x0a\x00\x0b"
    b"\x00\x00\x00\x04\x01at\x01"
    b"\x05PLAIN"
    b"\x00\x00\x00\x0c\x00guest\x00guest"
    b"\x05en_US\xce"
)
TUNE_OK = b"\x01\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x1f\x07\xff\x00\x02\x00\x00\x00\x3c\xce"
OPEN = b"\x01\x00\x00\x00\x00\x00\x08\x00\x0a\x00\x28\x01/\x00\x00\xce"
CHANNEL_OPEN_1 = b"\x01\x00\x01\x00\x00\x00\x05\x00\x14\x00\x0a\x00\xce"
CLOSE_OK = b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x33\xce"
CLIENT_CLOSE = (  # Connection.Close 200 "bye"
    b"\x01\x00\x00\x00\x00\x00\x0e\x00\x0a\x00\x32\x00\xc8\x03bye\x00\x00\x00\x00\xce"
)
CLIENT_STREAM = HEADER + START_OK + TUNE_OK + OPEN

START_OK_VALUE = ConnectionStartOk(b"\x01at\x01", "PLAIN", b"\x00guest\x00guest", "en_US")
TUNE_OK_VALUE = ConnectionTuneOk(2047, 131072, 60)
OPEN_VALUE = ConnectionOpen("/", "", False)

# --- what the proxy answers as the broker
TUNE = b"\x01\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x1e\x07\xff\x00\x02\x00\x00\x00\x3c\xce"
EXPECTED_SERVER_PROPERTIES: dict[str, FieldValue] = {
    "capabilities": {
        "publisher_confirms": True,
        "exchange_exchange_bindings": True,
        "basic.nack": True,
        "consumer_cancel_notify": True,
        "connection.blocked": True,
        "consumer_priorities": True,
        "authentication_failure_close": True,
        "per_consumer_qos": True,
        "direct_reply_to": True,
    },
    "cluster_name": "amqpprox_cloud",
    "copyright": "Copyright (C) Bloomberg Finance L.P. 2016.",
    "product": "amqpprox",
    "version": "0.1",
    "platform": "Python",
}

# --- what a broker sends
BROKER_START = (
    b"\x01\x00\x00\x00\x00\x00\x2a\x00\x0a\x00\x0a\x00\x09"
    b"\x00\x00\x00\x0e\x07productS\x00\x00\x00\x01x"
    b"\x00\x00\x00\x05PLAIN\x00\x00\x00\x05en_US\xce"
)
BROKER_TUNE = b"\x01\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x1e\x00\x00\x00\x02\x00\x00\x00\x3c\xce"
OPEN_OK = b"\x01\x00\x00\x00\x00\x00\x05\x00\x0a\x00\x29\x00\xce"
BROKER_STREAM = BROKER_START + BROKER_TUNE + OPEN_OK
CLOSE_320 = (
    b"\x01\x00\x00\x00\x00\x00\x27\x00\x0a\x00\x32\x01\x40"
    b"\x1cCONNECTION_FORCED - shutdown\x00\x00\x00\x00\xce"
)
CLOSE_403 = (
    b"\x01\x00\x00\x00\x00\x00\x2d\x00\x0a\x00\x32\x01\x93"
    b"\x22ACCESS_REFUSED - Login was refused\x00\x00\x00\x00\xce"
)
CLOSE_530 = (
    b"\x01\x00\x00\x00\x00\x00\x2d\x00\x0a\x00\x32\x02\x12"
    b"\x22NOT_ALLOWED - vhost nope not found\x00\x0a\x00\x28\xce"
)


def all_splits(stream: bytes) -> Iterable[list[bytes]]:
    for i in range(1, len(stream)):
        yield [stream[:i], stream[i:]]
    yield [stream[i : i + 1] for i in range(len(stream))]


# ------------------------------------------------------------------- server side


def run_server(
    chunks: Iterable[bytes], server: ServerHandshake | None = None
) -> tuple[list[ServerEvent], bytes, ServerHandshake]:
    server = server or ServerHandshake()
    events: list[ServerEvent] = []
    out = b""
    for chunk in chunks:
        events += server.receive_data(chunk)
        out += server.data_to_send()
    return events, out, server


def test_server_full_handshake() -> None:
    events, out, server = run_server([CLIENT_STREAM])
    assert events == [
        StartOkReceived(START_OK_VALUE),
        TuneOkReceived(TUNE_OK_VALUE),
        OpenReceived(OPEN_VALUE),
    ]
    assert isinstance(events[2], OpenReceived)
    assert events[2].vhost == "/"
    assert server.state is ServerState.OPEN_RECEIVED
    assert (server.start_ok, server.tune_ok, server.open) == (
        START_OK_VALUE,
        TUNE_OK_VALUE,
        OPEN_VALUE,
    )
    assert server.vhost == "/"
    assert server.pending_bytes() == b""
    # Output: Connection.Start, then Tune 2047/131072/60.
    assert out.endswith(TUNE)
    reader = FrameReader()
    reader.feed(out[: -len(TUNE)])
    frame = reader.next_frame()
    assert isinstance(frame, Frame)
    assert reader.next_frame() is NEED_DATA
    assert (frame.type, frame.channel) == (1, 0)
    start = decode_method(frame.payload)
    assert start == ConnectionStart(0, 9, EXPECTED_SERVER_PROPERTIES, "PLAIN AMQPLAIN", "en_US")
    assert reader.take_buffered() == b""


def test_server_state_walk() -> None:
    server = ServerHandshake()
    assert server.state is ServerState.AWAITING_PROTOCOL_HEADER
    assert (server.start_ok, server.tune_ok, server.open, server.vhost) == (None,) * 4
    server.receive_data(HEADER)
    assert server.state is ServerState.START_SENT
    server.receive_data(START_OK)
    assert server.state is ServerState.TUNE_SENT
    server.receive_data(TUNE_OK)
    assert server.state is ServerState.AWAITING_OPEN
    server.receive_data(OPEN)
    assert server.state is ServerState.OPEN_RECEIVED


def test_server_every_split_point() -> None:
    reference = run_server([CLIENT_STREAM + CHANNEL_OPEN_1])
    for chunks in all_splits(CLIENT_STREAM + CHANNEL_OPEN_1):
        events, out, server = run_server(chunks)
        assert (events, out) == reference[:2], chunks
        assert server.pending_bytes() == CHANNEL_OPEN_1


def test_header_and_start_ok_in_one_chunk() -> None:
    events, _, server = run_server([HEADER + START_OK, TUNE_OK + OPEN])
    assert [type(e) for e in events] == [StartOkReceived, TuneOkReceived, OpenReceived]
    assert server.state is ServerState.OPEN_RECEIVED


def test_short_header_waits() -> None:
    events, out, server = run_server([b"AMQP\x00\x00\x09"])
    assert (events, out) == ([], b"")
    assert server.state is ServerState.AWAITING_PROTOCOL_HEADER


def test_legacy_header_accepted() -> None:
    events, _, server = run_server([LEGACY_HEADER + START_OK + TUNE_OK + OPEN])
    assert len(events) == 3
    assert server.protocol_header == LEGACY_HEADER


@pytest.mark.parametrize(
    "received",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"AMQP\x01\x01\x00\x0a",  # 0-10
        b"AMQP\x00\x00\x09\x00",  # 0-9-0
        b"AMQP\x03\x01\x00\x00",  # AMQP 1.0 SASL
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS ClientHello on a plain port
    ],
)
def test_wrong_header(received: bytes) -> None:
    events, out, server = run_server([received[:3], received[3:], b"\x00" * 8])
    assert events == [BadProtocolHeader(received[:8])]
    assert out == HEADER
    assert server.state is ServerState.CLOSED
    assert server.receive_data(START_OK) == []
    assert server.data_to_send() == b""


def test_pipelined_frames_are_kept() -> None:
    events, _, server = run_server([CLIENT_STREAM + CHANNEL_OPEN_1[:5]])
    assert isinstance(events[-1], OpenReceived)
    assert server.receive_data(CHANNEL_OPEN_1[5:] + HEARTBEAT) == []
    assert server.pending_bytes() == CHANNEL_OPEN_1 + HEARTBEAT
    assert server.pending_bytes() == b""
    assert server.receive_data(b"more") == []
    assert server.pending_bytes() == b"more"


def test_pending_bytes_are_capped() -> None:
    server = ServerHandshake(max_pending_bytes=100)
    server.receive_data(CLIENT_STREAM + b"x" * 60)
    with pytest.raises(ProtocolError) as info:
        server.receive_data(b"y" * 41)
    assert info.value.reply_code == 506
    assert server.state is ServerState.ERROR


def test_heartbeats_before_open_ignored() -> None:
    stream = HEADER + HEARTBEAT + START_OK + HEARTBEAT + TUNE_OK + HEARTBEAT + OPEN
    events, _, server = run_server([stream])
    assert len(events) == 3
    assert server.state is ServerState.OPEN_RECEIVED


def test_heartbeat_on_a_channel_is_a_frame_error() -> None:
    server = ServerHandshake()
    server.receive_data(HEADER)
    with pytest.raises(ProtocolError) as info:
        server.receive_data(b"\x08\x00\x01\x00\x00\x00\x00\xce")
    assert info.value.reply_code == 501


@pytest.mark.parametrize("before", [b"", START_OK, START_OK + TUNE_OK])
def test_client_close_during_handshake(before: bytes) -> None:
    events, out, server = run_server([HEADER + before + CLIENT_CLOSE + b"ignored"])
    assert events[-1] == ClientClosed(ConnectionClose(200, "bye"))
    assert out.endswith(CLOSE_OK)
    assert server.state is ServerState.CLOSED
    assert server.receive_data(OPEN) == []


@pytest.mark.parametrize(
    ("stream", "code"),
    [
        (HEADER + TUNE_OK, 503),  # TuneOk where StartOk is due
        (HEADER + START_OK + OPEN, 503),  # Open before TuneOk
        (HEADER + START_OK + START_OK, 503),
        (HEADER + CLOSE_OK, 503),  # CloseOk for a Close nobody sent
        (HEADER + CHANNEL_OPEN_1, 503),  # channel traffic before Open
        (HEADER + b"\x01\x00\x00\x00\x00\x00\x04\x00\x14\x00\x0a\xce", 503),  # class 20
        (HEADER + b"\x02\x00\x01\x00\x00\x00\x00\xce", 505),  # content header frame
        (HEADER + b"\x03\x00\x01\x00\x00\x00\x00\xce", 505),  # body frame
        (HEADER + b"\x01\x00\x00\x00\x00\x00\x02\x00\x0a\xce", 502),  # short method
        (HEADER + START_OK[:-1] + b"\x00", 501),  # bad frame end
        (HEADER + b"\x01\x00\x00\x00\x98\x96\x80", 501),  # 10 MB frame announced
        (HEADER + b"\x09\x00\x00\x00\x00\x00\x00\xce", 501),  # unknown frame type
    ],
)
def test_server_protocol_errors(stream: bytes, code: int) -> None:
    server = ServerHandshake()
    with pytest.raises(ProtocolError) as info:
        server.receive_data(stream)
    assert info.value.reply_code == code
    assert server.state is ServerState.ERROR
    assert server.receive_data(b"anything") == []


def test_close_after_error_then_client_close_ok() -> None:
    server = ServerHandshake()
    server.receive_data(HEADER)
    with pytest.raises(ProtocolError) as info:
        server.receive_data(TUNE_OK)
    exc = info.value
    out = server.close(exc.reply_code, "COMMAND_INVALID - expected StartOk", 10, 31)
    # The undrained Connection.Start comes first, then our Close.
    close = (
        b"\x01\x00\x00\x00\x00\x00\x2d\x00\x0a\x00\x32\x01\xf7"
        b"\x22COMMAND_INVALID - expected StartOk\x00\x0a\x00\x1f\xce"
    )
    assert out.endswith(close)
    assert decode_method(out[7 : -len(close) - 1]).__class__ is ConnectionStart
    assert server.state is ServerState.CLOSING
    assert server.close(541, "again") == b""  # one Close only
    # Everything but Close/CloseOk is discarded while closing.
    assert server.receive_data(HEARTBEAT + CHANNEL_OPEN_1 + OPEN + CLOSE_OK) == [ClientCloseOk()]
    assert server.state is ServerState.CLOSED


def test_close_after_open_received_sees_pipelined_close() -> None:
    events, _, server = run_server([CLIENT_STREAM + CHANNEL_OPEN_1 + CLIENT_CLOSE])
    assert isinstance(events[-1], OpenReceived)
    close = server.close(506, "No known broker mapping for vhost /")
    assert close == (
        b"\x01\x00\x00\x00\x00\x00\x2e\x00\x0a\x00\x32\x01\xfa"
        b"\x23No known broker mapping for vhost /\x00\x00\x00\x00\xce"
    )
    assert server.receive_data(b"") == [ClientClosed(ConnectionClose(200, "bye"))]
    assert server.data_to_send() == CLOSE_OK
    assert server.state is ServerState.CLOSED


def test_close_after_open_received_then_close_ok() -> None:
    _, _, server = run_server([CLIENT_STREAM])
    server.close(506, "limited")
    assert server.receive_data(CLOSE_OK[:4]) == []
    assert server.receive_data(CLOSE_OK[4:]) == [ClientCloseOk()]


def test_close_after_pending_taken_discards_input() -> None:
    _, _, server = run_server([CLIENT_STREAM + CHANNEL_OPEN_1[:3]])
    assert server.pending_bytes() == CHANNEL_OPEN_1[:3]
    assert server.close(320, "shutdown")
    assert server.receive_data(CHANNEL_OPEN_1[3:] + CLOSE_OK) == []
    assert server.state is ServerState.CLOSING


def test_close_after_frame_error_discards_input() -> None:
    server = ServerHandshake()
    server.receive_data(HEADER)
    with pytest.raises(ProtocolError):
        server.receive_data(START_OK[:-1] + b"\x00" + CLOSE_OK)
    assert server.close(501, "FRAME_ERROR")
    assert server.receive_data(CLOSE_OK) == []


def test_close_before_header() -> None:
    server = ServerHandshake()
    assert server.close(320, "shutdown") == b""
    assert server.state is ServerState.CLOSED


def test_custom_server_settings() -> None:
    server = ServerHandshake(
        {"product": "x"}, channel_max=10, frame_max=4096, heartbeat=0, version="9"
    )
    server.receive_data(HEADER + START_OK)
    out = server.data_to_send()
    assert out.endswith(
        b"\x01\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x1e\x00\x0a\x00\x00\x10\x00\x00\x00\xce"
    )
    version = ServerHandshake(version="1.2.3")
    version.receive_data(HEADER)
    start = decode_method(version.data_to_send()[7:-1])
    assert isinstance(start, ConnectionStart)
    assert start.server_properties["version"] == "1.2.3"


def test_server_frame_cap() -> None:
    server = ServerHandshake(max_frame_size=32)
    with pytest.raises(ProtocolError) as info:
        server.receive_data(HEADER + START_OK[:7])  # 48-byte frame announced
    assert info.value.reply_code == 501


# ------------------------------------------------------------------- client side


def new_client() -> ClientHandshake:
    return ClientHandshake(START_OK_VALUE, TUNE_OK_VALUE, OPEN_VALUE)


def run_client(
    chunks: Iterable[bytes], client: ClientHandshake | None = None
) -> tuple[list[ClientEvent], bytes, ClientHandshake]:
    client = client or new_client()
    events: list[ClientEvent] = []
    out = b""
    for chunk in chunks:
        events += client.receive_data(chunk)
        out += client.data_to_send()
    return events, out, client


def test_client_full_handshake() -> None:
    client = new_client()
    assert client.initiate() == HEADER
    assert client.state is ClientState.AWAITING_START
    events = client.receive_data(BROKER_START)
    assert [type(e) for e in events] == [BrokerStart]
    assert events[0].start == ConnectionStart(0, 9, {"product": "x"}, "PLAIN", "en_US")
    assert client.broker_start == events[0].start
    assert client.state is ClientState.STARTOK_SENT
    assert client.data_to_send() == START_OK
    assert client.receive_data(BROKER_TUNE) == [BrokerTune(ConnectionTune(0, 131072, 60))]
    assert client.state is ClientState.OPEN_SENT
    assert client.data_to_send() == TUNE_OK + OPEN  # one chunk, client's values verbatim
    assert client.receive_data(OPEN_OK + CHANNEL_OPEN_1[:4]) == [
        BrokerOpenOk(OPEN_OK, CHANNEL_OPEN_1[:4])
    ]
    assert client.state is ClientState.OPEN
    assert client.data_to_send() == b""
    assert client.broker_tune == ConnectionTune(0, 131072, 60)
    with pytest.raises(RuntimeError):
        client.receive_data(b"late")


def test_client_every_split_point() -> None:
    reference = run_client([BROKER_STREAM])
    assert reference[0][-1] == BrokerOpenOk(OPEN_OK, b"")
    assert reference[1] == START_OK + TUNE_OK + OPEN
    for chunks in all_splits(BROKER_STREAM):
        events, out, client = run_client(chunks)
        assert (events, out) == reference[:2], chunks
        assert client.state is ClientState.OPEN


def test_client_replays_extra_properties() -> None:
    start_ok = START_OK_VALUE.with_extra_properties([("amqpprox_client", "1.2.3.4:5")])
    client = ClientHandshake(start_ok, TUNE_OK_VALUE, OPEN_VALUE)
    client.receive_data(BROKER_START)
    sent = client.data_to_send()
    table = sent[15 : 15 + int.from_bytes(sent[11:15])]
    assert table == b"\x01at\x01" + b"\x0famqpprox_clientS\x00\x00\x00\x091.2.3.4:5"
    assert decode_table(table) == {"a": True, "amqpprox_client": "1.2.3.4:5"}


@pytest.mark.parametrize(
    ("before", "close", "code", "text"),
    [
        (b"", CLOSE_320, 320, "CONNECTION_FORCED - shutdown"),
        (BROKER_START, CLOSE_403, 403, "ACCESS_REFUSED - Login was refused"),
        (BROKER_START + BROKER_TUNE, CLOSE_530, 530, "NOT_ALLOWED - vhost nope not found"),
    ],
    ids=["awaiting-start", "startok-sent", "open-sent"],
)
def test_broker_close_at_each_stage(before: bytes, close: bytes, code: int, text: str) -> None:
    for chunks in ([before + close], [before, close], [before + close[:9], close[9:]]):
        events, out, client = run_client(chunks)
        assert isinstance(events[-1], BrokerClosed)
        assert events[-1].close.reply_code == code
        assert events[-1].close.reply_text == text
        assert out.endswith(CLOSE_OK)
        assert client.state is ClientState.CLOSED
        assert client.receive_data(OPEN_OK) == []


def test_broker_answers_with_protocol_header() -> None:
    client = new_client()
    assert client.receive_data(b"AMQP") == []
    with pytest.raises(ProtocolError) as info:
        client.receive_data(b"\x00\x00\x09\x00")
    assert info.value.reply_code == 505
    assert "AMQP\\x00\\x00\\t\\x00" in info.value.reply_text
    assert client.state is ClientState.ERROR


@pytest.mark.parametrize(
    ("stream", "code"),
    [
        (b"\x01\x00\x00\x00\x00\x00\x08\x00\x0a\x00\x14\x00\x00\x00\x00\xce", 540),  # Secure
        (OPEN_OK, 503),  # OpenOk before Start
        (BROKER_START + BROKER_START, 503),
        (BROKER_START + OPEN_OK, 503),
        (BROKER_START + b"\x03\x00\x01\x00\x00\x00\x00\xce", 505),
        (BROKER_START[:-1] + b"\x00", 501),
        (b"\x07\x00\x00\x00\x00\x00\x00\xce", 501),
    ],
)
def test_client_protocol_errors(stream: bytes, code: int) -> None:
    client = new_client()
    with pytest.raises(ProtocolError) as info:
        client.receive_data(stream)
    assert info.value.reply_code == code
    assert client.state is ClientState.ERROR
    assert client.receive_data(OPEN_OK) == []


def test_client_ignores_heartbeats() -> None:
    events, _, client = run_client([HEARTBEAT + BROKER_START + HEARTBEAT + BROKER_TUNE + HEARTBEAT])
    assert [type(e) for e in events] == [BrokerStart, BrokerTune]
    assert client.state is ClientState.OPEN_SENT


def test_proxy_end_to_end_in_memory() -> None:
    """Client bytes -> ServerHandshake -> ClientHandshake -> broker bytes, no sockets."""
    server_events, _, server = run_server([CLIENT_STREAM + CHANNEL_OPEN_1])
    assert server.start_ok and server.tune_ok and server.open
    client = ClientHandshake(server.start_ok, server.tune_ok, server.open)
    events, out, _ = run_client([BROKER_STREAM], client)
    assert out == START_OK + TUNE_OK + OPEN  # the client's own bytes, replayed
    assert isinstance(events[-1], BrokerOpenOk)
    assert events[-1].frame_bytes + server.pending_bytes() == OPEN_OK + CHANNEL_OPEN_1
    assert len(server_events) == 3
