"""Field tables: every type tag, RabbitMQ errata, real client samples, malformed input."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from amqpprox.amqp.errors import ProtocolError
from amqpprox.amqp.fields import (
    MAX_NESTING,
    FieldValue,
    Timestamp,
    decode_table,
    encode_long_string_entry,
    encode_table,
)
from amqpprox.amqp.methods import ConnectionStartOk

# One entry named "k" per tag: (wire bytes of the entry, decoded value).
ENTRIES: list[tuple[bytes, FieldValue]] = [
    (b"\x01kt\x01", True),
    (b"\x01kt\x00", False),
    (b"\x01kt\x02", True),  # any non-zero octet is true
    (b"\x01kb\xff", -1),
    (b"\x01kB\xff", 255),
    (b"\x01ks\xff\xfe", -2),  # errata: 's' is a signed 16-bit short
    (b"\x01ku\xff\xfe", 65534),
    (b"\x01kU\xff\xfe", -2),  # the spec's short-int, signed
    (b"\x01kI\xff\xff\xff\xfd", -3),
    (b"\x01ki\xff\xff\xff\xfd", 4294967293),
    (b"\x01kl\xff\xff\xff\xff\xff\xff\xff\xfc", -4),  # errata: 'l' is signed 64-bit
    (b"\x01kL\x00\x00\x00\x01\x00\x00\x00\x00", 4294967296),
    (b"\x01kL\xff\xff\xff\xff\xff\xff\xff\xfb", -5),
    (b"\x01kf\x3f\xc0\x00\x00", 1.5),
    (b"\x01kd\xbf\xf8\x00\x00\x00\x00\x00\x00", -1.5),
    (b"\x01kD\x02\x00\x00\x00\x96", Decimal("1.50")),
    (b"\x01kD\x03\xff\xff\xff\xfe", Decimal("-0.002")),
    (b"\x01kS\x00\x00\x00\x05hello", "hello"),
    (b"\x01kS\x00\x00\x00\x02\xc3\xa9", "\u00e9"),
    (b"\x01kS\x00\x00\x00\x00", ""),
    (b"\x01kx\x00\x00\x00\x03\x00\xff\x01", b"\x00\xff\x01"),
    (b"\x01kA\x00\x00\x00\x08I\x00\x00\x00\x01Vt\x00", [1, None, False]),
    (b"\x01kA\x00\x00\x00\x00", []),
    (b"\x01kT\x00\x00\x00\x00\x5f\x5e\x10\x00", Timestamp(1600000000)),
    (b"\x01kF\x00\x00\x00\x04\x01at\x01", {"a": True}),
    (b"\x01kF\x00\x00\x00\x00", {}),
    (b"\x01kV", None),
]


@pytest.mark.parametrize(("wire", "value"), ENTRIES)
def test_decode_each_type(wire: bytes, value: FieldValue) -> None:
    decoded = decode_table(wire)
    assert decoded == {"k": value}
    assert type(decoded["k"]) is type(value)


@pytest.mark.parametrize(("wire", "value"), ENTRIES)
def test_each_decoded_value_round_trips(wire: bytes, value: FieldValue) -> None:
    decoded = decode_table(wire)
    again = decode_table(encode_table(decoded))
    assert again == decoded
    assert type(again["k"]) is type(decoded["k"])


# What the encoder chooses for each Python type, written out by hand.
ENCODINGS: list[tuple[FieldValue, bytes]] = [
    (None, b"V"),
    (True, b"t\x01"),
    (False, b"t\x00"),
    (7, b"I\x00\x00\x00\x07"),
    (-(2**31), b"I\x80\x00\x00\x00"),
    (2**31, b"l\x00\x00\x00\x00\x80\x00\x00\x00"),
    (-(2**63), b"l\x80\x00\x00\x00\x00\x00\x00\x00"),
    (0.5, b"d\x3f\xe0\x00\x00\x00\x00\x00\x00"),
    (Decimal("12.345"), b"D\x03\x00\x00\x30\x39"),
    (Decimal("-7"), b"D\x00\xff\xff\xff\xf9"),
    (Decimal("5E+2"), b"D\x00\x00\x00\x01\xf4"),
    ("h\u00e9", b"S\x00\x00\x00\x03h\xc3\xa9"),
    (b"\x01\x02", b"x\x00\x00\x00\x02\x01\x02"),
    (Timestamp(1), b"T\x00\x00\x00\x00\x00\x00\x00\x01"),
    (dt.datetime(1970, 1, 1, 0, 0, 2, tzinfo=dt.UTC), b"T\x00\x00\x00\x00\x00\x00\x00\x02"),
    ([True, "a"], b"A\x00\x00\x00\x08t\x01S\x00\x00\x00\x01a"),
    ({"x": None}, b"F\x00\x00\x00\x03\x01xV"),
]


@pytest.mark.parametrize(("value", "wire"), ENCODINGS)
def test_encode_each_python_type(value: FieldValue, wire: bytes) -> None:
    assert encode_table({"k": value}) == b"\x01k" + wire


def test_encode_tuple_and_mapping_inputs() -> None:
    assert encode_table({"k": (1,)}) == encode_table({"k": [1]})  # type: ignore[dict-item]


def test_encode_errors() -> None:
    with pytest.raises(ValueError):
        encode_table({"k": 2**63})
    with pytest.raises(ValueError):
        encode_table({"x" * 256: 1})
    with pytest.raises(ValueError):
        encode_table({"k": Decimal("NaN")})
    with pytest.raises(ValueError):
        encode_table({"k": Decimal("1E-300")})
    with pytest.raises(ValueError):
        encode_table({"k": Decimal(2**31)})
    with pytest.raises(TypeError):
        encode_table({"k": object()})  # type: ignore[dict-item]


def test_timestamp_helpers() -> None:
    stamp = Timestamp.from_datetime(dt.datetime(2020, 9, 13, 12, 26, 40, tzinfo=dt.UTC))
    assert stamp == 1600000000
    assert repr(stamp) == "Timestamp(1600000000)"
    assert stamp.to_datetime() == dt.datetime(2020, 9, 13, 12, 26, 40, tzinfo=dt.UTC)
    assert Timestamp.from_datetime(dt.datetime(1970, 1, 1, 0, 1)) == 60  # naive = UTC
    # A u64 beyond datetime's range still decodes.
    assert decode_table(b"\x01kT\xff\xff\xff\xff\xff\xff\xff\xff") == {"k": 2**64 - 1}


# pika 1.3's client_properties, byte for byte as it sends them in StartOk.
PIKA_CLIENT_PROPERTIES = (
    b"\x07product"
    b"S\x00\x00\x00\x1a"
    b"Pika Python Client Library"
    b"\x08platform"
    b"S\x00\x00\x00\x0c"
    b"Python 3.8.1"
    b"\x0ccapabilities"
    b"F\x00\x00\x00\x6f"
    b"\x1cauthentication_failure_close"
    b"t\x01"
    b"\x0abasic.nack"
    b"t\x01"
    b"\x12connection.blocked"
    b"t\x01"
    b"\x16consumer_cancel_notify"
    b"t\x01"
    b"\x12publisher_confirms"
    b"t\x01"
    b"\x0binformation"
    b"S\x00\x00\x00\x18"
    b"See http://pika.rtfd.org"
    b"\x07version"
    b"S\x00\x00\x00\x051.3.2"
)


def test_pika_client_properties() -> None:
    assert decode_table(PIKA_CLIENT_PROPERTIES) == {
        "product": "Pika Python Client Library",
        "platform": "Python 3.8.1",
        "capabilities": {
            "authentication_failure_close": True,
            "basic.nack": True,
            "connection.blocked": True,
            "consumer_cancel_notify": True,
            "publisher_confirms": True,
        },
        "information": "See http://pika.rtfd.org",
        "version": "1.3.2",
    }
    # Our encoder picks the same tags for these types, so this one re-encodes exactly.
    assert encode_table(decode_table(PIKA_CLIENT_PROPERTIES)) == PIKA_CLIENT_PROPERTIES


# A Java-client style table: 'l' and 'x' values, a 'T' timestamp, an array of tables.
JAVA_STYLE = (
    b"\x0fconnection_name"
    b"S\x00\x00\x00\x04app1"
    b"\x05limit"
    b"l\x00\x00\x00\x00\x00\x00\x01\x00"
    b"\x04blob"
    b"x\x00\x00\x00\x02\xde\xad"
    b"\x07created"
    b"T\x00\x00\x00\x00\x00\x00\x00\x3c"
    b"\x05hosts"
    b"A\x00\x00\x00\x10"
    b"F\x00\x00\x00\x0b\x04host"
    b"S\x00\x00\x00\x01a"
)


def test_java_style_table() -> None:
    assert decode_table(JAVA_STYLE) == {
        "connection_name": "app1",
        "limit": 256,
        "blob": b"\xde\xad",
        "created": Timestamp(60),
        "hosts": [{"host": "a"}],
    }


def test_invalid_utf8_long_string_is_replaced() -> None:
    assert decode_table(b"\x01kS\x00\x00\x00\x02\xff\x61") == {"k": "\ufffda"}


def test_long_string_entry() -> None:
    assert encode_long_string_entry("amqpprox_client", "10.0.0.1:5000 TLS") == (
        b"\x0famqpprox_clientS\x00\x00\x00\x1110.0.0.1:5000 TLS"
    )
    with pytest.raises(ValueError):
        encode_long_string_entry("n" * 256, "v")


def test_with_extra_properties_keeps_original_bytes() -> None:
    start_ok = ConnectionStartOk(PIKA_CLIENT_PROPERTIES, "PLAIN", b"\x00u\x00p", "en_US")
    extended = start_ok.with_extra_properties(
        [("amqpprox_client", "127.0.0.1:40000"), ("amqpprox_host", "(:5672) proxy:37812")]
    )
    raw = extended.client_properties_raw
    assert raw.startswith(PIKA_CLIENT_PROPERTIES)
    assert raw[len(PIKA_CLIENT_PROPERTIES) :] == (
        b"\x0famqpprox_client"
        b"S\x00\x00\x00\x0f127.0.0.1:40000"
        b"\x0damqpprox_host"
        b"S\x00\x00\x00\x13(:5672) proxy:37812"
    )
    props = extended.client_properties
    assert props["amqpprox_client"] == "127.0.0.1:40000"
    assert props["amqpprox_host"] == "(:5672) proxy:37812"
    assert props["product"] == "Pika Python Client Library"
    assert start_ok.client_properties_raw == PIKA_CLIENT_PROPERTIES  # original untouched


def test_every_truncation_decodes_or_is_a_syntax_error() -> None:
    for sample in (PIKA_CLIENT_PROPERTIES, JAVA_STYLE):
        for cut in range(len(sample)):
            try:
                decode_table(sample[:cut])
            except ProtocolError as exc:
                assert exc.reply_code == 502
                continue


@pytest.mark.parametrize(
    "wire",
    [
        b"\x01kZ\x00",  # unknown tag
        b"\x01k",  # missing tag
        b"\x05ab",  # name runs past the end
        b"\x01kI\x00\x00",  # truncated int
        b"\x01kS\x00\x00\x00\x09abc",  # string longer than the table
        b"\x01kF\x00\x00\x00\x05\x01at\x01",  # nested table longer than its data
        b"\x01kF\x00\x00\x00\x02\x01at\x01",  # nested entry runs past the nested table
        b"\x01kA\x00\x00\x00\x02I\x00",  # array item runs past the array
        b"\x01kD\x01\x00",  # truncated decimal
        b"\x01kT\x00",  # truncated timestamp
        b"\x01kt",  # truncated boolean
    ],
)
def test_malformed_tables(wire: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_table(wire)
    assert info.value.reply_code == 502


def test_nesting_is_capped() -> None:
    def nested(depth: int) -> bytes:
        inner = b""
        for _ in range(depth):
            inner = b"\x01kF" + len(inner).to_bytes(4, "big") + inner
        return inner

    assert decode_table(nested(MAX_NESTING))  # deep but allowed
    with pytest.raises(ProtocolError) as info:
        decode_table(nested(MAX_NESTING + 2))
    assert info.value.reply_code == 502
    with pytest.raises(ProtocolError):
        decode_table(nested(5000))  # never a RecursionError


def test_decode_accepts_bytearray_and_memoryview() -> None:
    assert decode_table(bytearray(b"\x01kV")) == {"k": None}  # type: ignore[arg-type]
    assert decode_table(memoryview(b"\x01kV")) == {"k": None}  # type: ignore[arg-type]
