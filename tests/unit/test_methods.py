"""Connection-class methods: hand-written byte tables for encode and decode (§1.4.2)."""

from __future__ import annotations

import pytest
from pamqp import commands as pamqp_commands
from pamqp import frame as pamqp_frame

from amqpprox.amqp.errors import ProtocolError
from amqpprox.amqp.methods import (
    ConnectionBlocked,
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionSecure,
    ConnectionSecureOk,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    ConnectionUnblocked,
    Method,
    UnknownMethod,
    decode_method,
    encode_method,
    encode_method_payload,
    method_ids,
    method_name,
)

# (method, channel, complete frame bytes). Every byte string is written from the spec.
TABLE: list[tuple[Method, int, bytes]] = [
    (
        ConnectionStart(0, 9, {"product": "x"}, "PLAIN", "en_US"),
        0,
        b"\x01\x00\x00\x00\x00\x00\x2a"
        b"\x00\x0a\x00\x0a"  # Connection.Start
        b"\x00\x09"  # version 0-9
        b"\x00\x00\x00\x0e"
        b"\x07productS\x00\x00\x00\x01x"  # server-properties
        b"\x00\x00\x00\x05PLAIN"  # mechanisms
        b"\x00\x00\x00\x05en_US"  # locales
        b"\xce",
    ),
    (
        ConnectionStartOk(b"\x01at\x01", "PLAIN", b"\x00guest\x00guest", "en_US"),
        0,
        b"\x01\x00\x00\x00\x00\x00\x28"
        b"\x00\x0a\x00\x0b"  # Connection.StartOk
        b"\x00\x00\x00\x04"
        b"\x01at\x01"  # client-properties {"a": true}
        b"\x05PLAIN"  # mechanism
        b"\x00\x00\x00\x0c"
        b"\x00guest\x00guest"  # response
        b"\x05en_US"  # locale
        b"\xce",
    ),
    (
        ConnectionSecure(b"chal"),
        0,
        b"\x01\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x14\x00\x00\x00\x04chal\xce",
    ),
    (
        ConnectionSecureOk(b"resp"),
        0,
        b"\x01\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x15\x00\x00\x00\x04resp\xce",
    ),
    (
        ConnectionTune(2047, 131072, 60),
        0,
        b"\x01\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x1e\x07\xff\x00\x02\x00\x00\x00\x3c\xce",
    ),
    (
        ConnectionTuneOk(0, 4096, 0),
        0,
        b"\x01\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x1f\x00\x00\x00\x00\x10\x00\x00\x00\xce",
    ),
    (
        ConnectionOpen("/"),
        0,
        b"\x01\x00\x00\x00\x00\x00\x08\x00\x0a\x00\x28\x01/\x00\x00\xce",
    ),
    (
        ConnectionOpen("my-vhost", "", True),
        0,
        b"\x01\x00\x00\x00\x00\x00\x0f\x00\x0a\x00\x28\x08my-vhost\x00\x01\xce",
    ),
    (
        ConnectionOpenOk(),
        0,
        b"\x01\x00\x00\x00\x00\x00\x05\x00\x0a\x00\x29\x00\xce",
    ),
    (
        ConnectionClose(320, "CONNECTION_FORCED - shutdown"),
        0,
        b"\x01\x00\x00\x00\x00\x00\x27"
        b"\x00\x0a\x00\x32"  # Connection.Close
        b"\x01\x40"  # 320
        b"\x1cCONNECTION_FORCED - shutdown"
        b"\x00\x00\x00\x00"  # class 0, method 0
        b"\xce",
    ),
    (
        ConnectionClose(504, "x", 20, 10),
        0,
        b"\x01\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x32\x01\xf8\x01x\x00\x14\x00\x0a\xce",
    ),
    (
        ConnectionCloseOk(),
        0,
        b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x33\xce",
    ),
    (
        ConnectionBlocked("low on memory"),
        0,
        b"\x01\x00\x00\x00\x00\x00\x12\x00\x0a\x00\x3c\x0dlow on memory\xce",
    ),
    (
        ConnectionUnblocked(),
        0,
        b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x3d\xce",
    ),
    (
        UnknownMethod(20, 10, b"\x00"),  # Channel.Open on channel 1
        1,
        b"\x01\x00\x01\x00\x00\x00\x05\x00\x14\x00\x0a\x00\xce",
    ),
    (
        UnknownMethod(10, 70, b"\x00\x00\x00\x00\x00"),  # Connection.UpdateSecret: not ours
        0,
        b"\x01\x00\x00\x00\x00\x00\x09\x00\x0a\x00\x46\x00\x00\x00\x00\x00\xce",
    ),
]

IDS = [method_name(m) + (f" ch{ch}" if ch else "") for m, ch, _ in TABLE]


@pytest.mark.parametrize(("method", "channel", "wire"), TABLE, ids=IDS)
def test_encode(method: Method, channel: int, wire: bytes) -> None:
    assert encode_method(method, channel) == wire
    assert encode_method_payload(method) == wire[7:-1]


@pytest.mark.parametrize(("method", "channel", "wire"), TABLE, ids=IDS)
def test_decode(method: Method, channel: int, wire: bytes) -> None:
    payload = wire[7:-1]
    decoded = decode_method(payload)
    assert decoded == method
    assert type(decoded) is type(method)
    assert method_ids(payload) == (int.from_bytes(wire[7:9]), int.from_bytes(wire[9:11]))


@pytest.mark.parametrize(("method", "channel", "wire"), TABLE, ids=IDS)
def test_truncated_payload_is_a_syntax_error(method: Method, channel: int, wire: bytes) -> None:
    payload = wire[7:-1]
    minimum = 4 if isinstance(method, UnknownMethod) else len(payload)
    for cut in range(minimum):
        with pytest.raises(ProtocolError) as info:
            decode_method(payload[:cut])
        assert info.value.reply_code == 502


@pytest.mark.parametrize(("method", "channel", "wire"), TABLE[:-2], ids=IDS[:-2])
def test_trailing_bytes_are_a_syntax_error(method: Method, channel: int, wire: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_method(wire[7:-1] + b"\x00")
    assert info.value.reply_code == 502


def test_method_ids_peek() -> None:
    assert method_ids(b"\x00\x0a") is None
    assert method_ids(b"") is None
    assert method_ids(b"\x00\x3c\x00\x28\xff") == (60, 40)


def test_start_ok_table_is_validated_at_decode() -> None:
    payload = (
        b"\x00\x0a\x00\x0b"
        b"\x00\x00\x00\x03\x01aZ"  # table with an unknown field type
        b"\x05PLAIN\x00\x00\x00\x00\x05en_US"
    )
    with pytest.raises(ProtocolError) as info:
        decode_method(payload)
    assert info.value.reply_code == 502


def test_start_ok_helpers() -> None:
    start_ok = ConnectionStartOk(b"\x01at\x01", "PLAIN", b"\x00u\x00p", "en_US")
    assert start_ok.client_properties == {"a": True}
    replaced = start_ok.with_credentials("AMQPLAIN", b"token")
    assert (replaced.mechanism, replaced.response) == ("AMQPLAIN", b"token")
    assert replaced.client_properties_raw == start_ok.client_properties_raw
    assert start_ok.with_extra_properties([]) == start_ok
    # Credentials never show up in a repr (log lines).
    assert "\\x00u\\x00p" not in repr(start_ok)
    assert "<4 bytes>" in repr(start_ok)


def test_vhost_must_be_utf8() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_method(b"\x00\x0a\x00\x28\x01\xff\x00\x00")
    assert info.value.reply_code == 502


def test_close_reply_text_with_bad_utf8_is_replaced() -> None:
    decoded = decode_method(b"\x00\x0a\x00\x32\x01\x93\x02\xffa\x00\x00\x00\x00")
    assert decoded == ConnectionClose(403, "\ufffda")


def test_close_reply_text_truncated_utf8_safe() -> None:
    close = ConnectionClose(506, "\u00e9" * 200)  # 400 bytes of UTF-8
    payload = encode_method_payload(close)
    assert payload[6] == 254  # 127 whole two-byte characters fit in 255 bytes
    decoded = decode_method(payload)
    assert isinstance(decoded, ConnectionClose)
    assert decoded.reply_text == "\u00e9" * 127
    assert decoded.class_id == decoded.method_id == 0


def test_overlong_shortstr_is_refused_where_truncation_would_lie() -> None:
    with pytest.raises(ValueError):
        encode_method(ConnectionOpen("v" * 256))


def test_open_insist_reads_the_low_bit() -> None:
    assert decode_method(b"\x00\x0a\x00\x28\x01/\x00\x01") == ConnectionOpen("/", "", True)


def test_method_names() -> None:
    assert method_name(ConnectionOpen("/")) == "Connection.Open"
    assert method_name(UnknownMethod(60, 40)) == "class 60 method 40"


PAMQP_CASES: list[tuple[Method, object]] = [
    (ConnectionTune(2047, 131072, 60), pamqp_commands.Connection.Tune(2047, 131072, 60)),
    (ConnectionTuneOk(100, 8192, 30), pamqp_commands.Connection.TuneOk(100, 8192, 30)),
    (ConnectionOpen("/vh"), pamqp_commands.Connection.Open("/vh")),
    (ConnectionOpenOk(), pamqp_commands.Connection.OpenOk()),
    (
        ConnectionClose(530, "NOT_ALLOWED - vhost x", 10, 40),
        pamqp_commands.Connection.Close(530, "NOT_ALLOWED - vhost x", 10, 40),
    ),
    (ConnectionCloseOk(), pamqp_commands.Connection.CloseOk()),
    (ConnectionBlocked("disk"), pamqp_commands.Connection.Blocked("disk")),
    (ConnectionUnblocked(), pamqp_commands.Connection.Unblocked()),
    (
        ConnectionStartOk(b"\x01pS\x00\x00\x00\x01x", "PLAIN", b"\x00a\x00b", "en_US"),
        pamqp_commands.Connection.StartOk({"p": "x"}, "PLAIN", "\x00a\x00b", "en_US"),
    ),
]


@pytest.mark.parametrize(("ours", "theirs"), PAMQP_CASES, ids=lambda v: type(v).__name__)
def test_agrees_with_pamqp(ours: Method, theirs: object) -> None:
    """A second opinion: pamqp marshals the same bytes."""
    assert encode_method(ours) == pamqp_frame.marshal(theirs, 0)  # type: ignore[arg-type]
