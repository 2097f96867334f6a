"""The PROXY protocol codec, byte for byte (HAProxy's proxy-protocol.txt, v1 and v2)."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amqpprox.proxy import proxy_protocol as pp
from amqpprox.proxy.proxy_protocol import NEED_DATA, ProxyHeader, ProxyProtocolError, parse

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
AMQP = b"AMQP\x00\x00\x09\x01"

# -- v1 -----------------------------------------------------------------------------------
V1_CASES = [
    (
        ("192.168.0.1", 56324),
        ("10.0.0.2", 5672),
        b"PROXY TCP4 192.168.0.1 10.0.0.2 56324 5672\r\n",
    ),
    (
        ("2001:db8::1", 443),
        ("2001:db8::2", 5671),
        b"PROXY TCP6 2001:db8::1 2001:db8::2 443 5671\r\n",
    ),
    # Mixed families: both as IPv6 (the IPv4 one mapped), never a TCP4 line with IPv6 in it.
    (("127.0.0.1", 1), ("::1", 2), b"PROXY TCP6 ::ffff:7f00:1 ::1 1 2\r\n"),
    # An IPv4-mapped IPv6 peer (a dual-stack socket) is IPv4.
    (("::ffff:10.1.2.3", 9), ("10.0.0.1", 5672), b"PROXY TCP4 10.1.2.3 10.0.0.1 9 5672\r\n"),
    (("255.255.255.255", 65535), ("0.0.0.0", 0), b"PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n"),
]


@pytest.mark.parametrize(("source", "destination", "wire"), V1_CASES)
def test_v1_encoding(source: pp.Address, destination: pp.Address, wire: bytes) -> None:
    assert pp.encode_v1(source, destination) == wire
    assert pp.encode(1, source, destination) == wire


@pytest.mark.parametrize(
    ("wire", "family", "source", "destination"),
    [
        (
            b"PROXY TCP4 192.168.0.1 10.0.0.2 56324 5672\r\n",
            "TCP4",
            ("192.168.0.1", 56324),
            ("10.0.0.2", 5672),
        ),
        (
            b"PROXY TCP6 2001:db8:0:0:0:0:0:1 ::2 443 5671\r\n",
            "TCP6",
            ("2001:db8::1", 443),
            ("::2", 5671),
        ),
        (b"PROXY UNKNOWN\r\n", "UNKNOWN", None, None),
        (b"PROXY UNKNOWN ffff:f...f:ffff 1 2 3\r\n", "UNKNOWN", None, None),
    ],
)
def test_v1_decoding(
    wire: bytes, family: str, source: pp.Address | None, destination: pp.Address | None
) -> None:
    header = parse(wire + AMQP)
    assert header == ProxyHeader(1, family, source, destination, len(wire))  # type: ignore[arg-type]


def test_v1_longest_line_is_accepted() -> None:
    ip = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    wire = f"PROXY UNKNOWN {ip} {ip} 65535 65535\r\n".encode()  # the spec's worst case
    assert len(wire) == pp.V1_MAX_LENGTH
    header = parse(wire)
    assert isinstance(header, ProxyHeader) and header.length == 107
    tcp6 = f"PROXY TCP6 {ip} {ip} 65535 65535\r\n".encode()
    assert parse(tcp6) == ProxyHeader(1, "TCP6", (ip, 65535), (ip, 65535), len(tcp6))


def test_v1_every_prefix_needs_data_and_the_whole_parses() -> None:
    wire = b"PROXY TCP4 192.168.0.1 10.0.0.2 56324 5672\r\n"
    for cut in range(len(wire)):
        assert parse(wire[:cut]) is NEED_DATA, cut
    assert isinstance(parse(wire), ProxyHeader)


@pytest.mark.parametrize(
    "wire",
    [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",  # LF only
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",  # a field missing
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",  # one too many
        b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",  # double space
        b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",  # not canonical dotted quad
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",  # IPv6 in a TCP4 line
        b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 \xd9\xa1 2\r\n",  # non-ASCII digit
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2" + b" " * 80 + b"\r\n",  # longer than 107
        b"PROXY " + b"A" * 200,  # no CRLF within 107 bytes
        b"PROXX TCP4",
        b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        AMQP,
        b"GET / HTTP/1.1\r\n",
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello
    ],
)
def test_v1_malformed_headers_are_refused(wire: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse(wire)


# -- v2 -----------------------------------------------------------------------------------
def test_v2_tcp4_encoding() -> None:
    wire = pp.encode_v2(("192.168.0.1", 56324), ("10.0.0.2", 5672))
    assert wire == (
        SIG
        + b"\x21\x11\x00\x0c"
        + bytes([192, 168, 0, 1, 10, 0, 0, 2])
        + struct.pack("!HH", 56324, 5672)
    )
    assert pp.encode(2, ("192.168.0.1", 56324), ("10.0.0.2", 5672)) == wire


def test_v2_tcp6_encoding() -> None:
    wire = pp.encode_v2(("2001:db8::1", 443), ("::1", 5671))
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("00000000000000000000000000000001")
    assert wire == SIG + b"\x21\x21\x00\x24" + src + dst + b"\x01\xbb\x16\x27"


def test_v2_mixed_families_are_ipv6() -> None:
    wire = pp.encode_v2(("127.0.0.1", 1), ("::1", 2))
    assert wire[13] == 0x21 and wire[14:16] == b"\x00\x24"
    assert wire[16:32] == bytes.fromhex("00000000000000000000ffff7f000001")


def test_v2_local_encoding() -> None:
    assert pp.encode_v2_local() == SIG + b"\x20\x00\x00\x00"


def test_v2_tlv_encoding_and_decoding() -> None:
    tlvs = ((0x02, b"rabbit.example"), (0x05, b"\x00\x01"))
    wire = pp.encode_v2(("1.2.3.4", 1), ("5.6.7.8", 2), tlvs)
    assert wire[14:16] == struct.pack("!H", 12 + 3 + 14 + 3 + 2)
    assert wire.endswith(b"\x02\x00\x0erabbit.example\x05\x00\x02\x00\x01")
    header = parse(wire)
    assert isinstance(header, ProxyHeader) and header.tlvs == tlvs


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (
            SIG + b"\x21\x11\x00\x0c" + bytes([10, 0, 0, 1, 10, 0, 0, 2]) + b"\x00\x01\x00\x02",
            ProxyHeader(2, "TCP4", ("10.0.0.1", 1), ("10.0.0.2", 2), 28),
        ),
        (
            SIG + b"\x21\x12\x00\x0c" + bytes([10, 0, 0, 1, 10, 0, 0, 2]) + b"\x00\x01\x00\x02",
            ProxyHeader(2, "UDP4", ("10.0.0.1", 1), ("10.0.0.2", 2), 28),
        ),
        (
            SIG
            + b"\x21\x21\x00\x24"
            + b"\x00" * 15
            + b"\x01"
            + b"\x00" * 15
            + b"\x02"
            + b"\x00\x03\x00\x04",
            ProxyHeader(2, "TCP6", ("::1", 3), ("::2", 4), 52),
        ),
        (
            SIG
            + b"\x21\x31\x00\xd8"
            + b"/tmp/a".ljust(108, b"\x00")
            + b"/tmp/b".ljust(108, b"\x00"),
            ProxyHeader(2, "UNIX", None, None, 232),
        ),
        (SIG + b"\x21\x00\x00\x00", ProxyHeader(2, "UNKNOWN", None, None, 16)),
        # LOCAL: whatever addresses follow are ignored.
        (SIG + b"\x20\x00\x00\x00", ProxyHeader(2, "UNKNOWN", None, None, 16, local=True)),
        (
            SIG + b"\x20\x11\x00\x0c" + b"\x01" * 12,
            ProxyHeader(2, "UNKNOWN", None, None, 28, local=True),
        ),
        # Extra bytes after the addresses are TLVs (here a NOOP).
        (
            SIG + b"\x21\x11\x00\x0f" + bytes(8) + b"\x00\x05\x00\x06" + b"\x04\x00\x00",
            ProxyHeader(2, "TCP4", ("0.0.0.0", 5), ("0.0.0.0", 6), 31, tlvs=((4, b""),)),
        ),
    ],
)
def test_v2_decoding(wire: bytes, expected: ProxyHeader) -> None:
    assert parse(wire + AMQP) == expected
    for cut in range(len(wire)):
        assert parse(wire[:cut]) is NEED_DATA, cut


@pytest.mark.parametrize(
    "wire",
    [
        SIG[:11] + b"X" + b"\x21\x11\x00\x0c" + bytes(12),  # signature
        SIG + b"\x11\x11\x00\x0c" + bytes(12),  # version 1 in the binary form
        SIG + b"\x31\x11\x00\x0c" + bytes(12),  # version 3
        SIG + b"\x22\x11\x00\x0c" + bytes(12),  # command 2
        SIG + b"\x21\x41\x00\x0c" + bytes(12),  # family 4
        SIG + b"\x21\x13\x00\x0c" + bytes(12),  # transport 3
        SIG + b"\x21\x11\x00\x08" + bytes(8),  # too short for AF_INET
        SIG + b"\x21\x21\x00\x0c" + bytes(12),  # too short for AF_INET6
        SIG + b"\x21\x11\x00\x0e" + bytes(12) + b"\x01\x00",  # truncated TLV header
        SIG + b"\x21\x11\x00\x10" + bytes(12) + b"\x01\x00\x05\x00",  # truncated TLV value
    ],
)
def test_v2_malformed_headers_are_refused(wire: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse(wire)


def test_v2_signature_prefix_needs_data_and_a_wrong_one_fails_early() -> None:
    for cut in range(1, 13):
        assert parse(SIG[:cut]) is NEED_DATA
    with pytest.raises(ProxyProtocolError):
        parse(b"\r\n\r\n\x00\r\nQUIX")
    with pytest.raises(ProxyProtocolError):
        parse(b"\r\nGET")


def test_encode_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        pp.encode(3, ("1.2.3.4", 1), ("1.2.3.4", 2))
    with pytest.raises(ProxyProtocolError):
        pp.encode_v2(("1.2.3.4", 1), ("1.2.3.4", 2), ((1, b"x" * 70000),))


# -- properties -----------------------------------------------------------------------------
_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str).filter(lambda a: "." not in a and not a.startswith("::ffff:"))
_port = st.integers(0, 65535)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_the_codec_error(data: bytes) -> None:
    try:
        result = parse(data)
    except ProxyProtocolError:
        return
    assert result is NEED_DATA or (isinstance(result, ProxyHeader) and result.length <= len(data))


@given(st.sampled_from([b"PROXY ", SIG]), st.binary(max_size=300))
def test_arbitrary_bytes_after_a_signature_raise_only_the_codec_error(
    prefix: bytes, data: bytes
) -> None:
    with contextlib.suppress(ProxyProtocolError):
        parse(prefix + data)


@given(
    st.one_of(st.tuples(_ipv4, _ipv4), st.tuples(_ipv6, _ipv6)),
    _port,
    _port,
    st.sampled_from([1, 2]),
    st.binary(max_size=40),
)
def test_roundtrip_and_trailing_bytes_are_left_alone(
    addresses: tuple[str, str], sport: int, dport: int, version: int, trailing: bytes
) -> None:
    src, dst = addresses
    wire = pp.encode(version, (src, sport), (dst, dport))
    header = parse(wire + trailing)
    assert isinstance(header, ProxyHeader)
    assert header.version == version and header.length == len(wire)
    assert header.source == (src, sport) and header.destination == (dst, dport)
    assert header.family == ("TCP4" if "." in src else "TCP6")
    for cut in range(len(wire)):
        assert parse(wire[:cut]) is NEED_DATA
