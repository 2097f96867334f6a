"""The PROXY protocol (HAProxy, versions 1 and 2): a sans-IO parser and encoders.

No asyncio, no sockets: bytes in, a ``ProxyHeader`` (and how many bytes it took) or
``NEED_DATA`` out; encoders are pure functions. Malformed input raises
``ProxyProtocolError`` and nothing else, whatever the bytes.

Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt

* v1 is one text line, at most 107 bytes with its CRLF:
  ``PROXY TCP4|TCP6 <src> <dst> <srcport> <dstport>\\r\\n`` or ``PROXY UNKNOWN...\\r\\n``.
* v2 is a 16-byte binary preamble (12-byte signature, version/command, family/transport,
  length) and ``length`` bytes of addresses then TLVs.

The parser never reads past the end of the header, so whatever follows (an AMQP protocol
header, a TLS ClientHello) is left for the caller.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final, Literal

from amqpprox.core.digits import ascii_digits

V1_PREFIX: Final = b"PROXY "
V1_MAX_LENGTH: Final = 107  # the spec's bound, CRLF included
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V2_PREAMBLE: Final = 16

# v2 byte 13: version (high nibble, always 2) and command (low nibble).
V2_LOCAL: Final = 0x20
V2_PROXY: Final = 0x21
# v2 byte 14: address family (high nibble) and transport (low nibble).
AF_UNSPEC: Final = 0x0
AF_INET: Final = 0x1
AF_INET6: Final = 0x2
AF_UNIX: Final = 0x3
TRANSPORT_UNSPEC: Final = 0x0
TRANSPORT_STREAM: Final = 0x1
TRANSPORT_DGRAM: Final = 0x2
_ADDRESS_LENGTH: Final = {AF_UNSPEC: 0, AF_INET: 12, AF_INET6: 36, AF_UNIX: 216}

Family = Literal["TCP4", "TCP6", "UDP4", "UDP6", "UNIX", "UNIX_DGRAM", "UNKNOWN"]
Address = tuple[str, int]


class ProxyProtocolError(ValueError):
    """The bytes are not a valid PROXY protocol header."""


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What a header says: the original connection's endpoints, when it names them.

    ``source``/``destination`` are ``None`` for v1 ``UNKNOWN``, v2 ``LOCAL`` and
    unspecified or unix families: the receiver then uses the real socket's addresses.
    ``length`` is the number of bytes the header occupied on the wire.
    """

    version: int
    family: Family
    source: Address | None
    destination: Address | None
    length: int
    local: bool = False  # v2 LOCAL: a health check by the proxy itself
    tlvs: tuple[tuple[int, bytes], ...] = ()


ParseResult = ProxyHeader | _NeedData


def parse(data: bytes) -> ParseResult:
    """Read one header from the start of ``data``.

    Returns ``NEED_DATA`` while ``data`` is a valid but incomplete prefix, so a reader may
    consume every byte it has seen so far without reading past the header.
    """
    if not data:
        return NEED_DATA
    if data[0] == V1_PREFIX[0]:
        return _parse_v1(data)
    if data[0] == V2_SIGNATURE[0]:
        return _parse_v2(data)
    raise ProxyProtocolError("not a PROXY protocol header")


def _parse_v1(data: bytes) -> ParseResult:
    head = data[: len(V1_PREFIX)]
    if head != V1_PREFIX[: len(head)]:
        raise ProxyProtocolError("not a PROXY protocol v1 header")
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(data) >= V1_MAX_LENGTH or b"\n" in data[:V1_MAX_LENGTH]:
            raise ProxyProtocolError("PROXY v1 line too long or not ended by CRLF")
        return NEED_DATA
    line = data[:end]
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError as error:
        raise ProxyProtocolError("PROXY v1 line is not ASCII") from error
    parts = text.split(" ")
    length = end + 2
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        # "the receiver must ignore anything presented before the CRLF is found"
        return ProxyHeader(1, "UNKNOWN", None, None, length)
    if len(parts) != 6 or parts[0] != "PROXY":
        raise ProxyProtocolError(f"malformed PROXY v1 line: {text!r}")
    _, family, src, dst, sport, dport = parts
    if family not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"unknown PROXY v1 protocol: {family!r}")
    version = 4 if family == "TCP4" else 6
    return ProxyHeader(
        1,
        "TCP4" if version == 4 else "TCP6",
        (_v1_address(src, version), _v1_port(sport)),
        (_v1_address(dst, version), _v1_port(dport)),
        length,
    )


def _v1_address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError as error:
        raise ProxyProtocolError(f"bad address in PROXY v1 line: {text!r}") from error
    if address.version != version or (version == 4 and str(address) != text):
        # The spec wants dotted-quad for TCP4 (no leading zeros, no shorthand).
        raise ProxyProtocolError(f"address {text!r} does not match TCP{version}")
    return str(address)


def _v1_port(text: str) -> int:
    # Decimal without leading zeros (except "0" itself), 0..65535.
    if not ascii_digits(text) or (len(text) > 1 and text[0] == "0"):
        raise ProxyProtocolError(f"bad port in PROXY v1 line: {text!r}")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"port out of range in PROXY v1 line: {text!r}")
    return port


def _parse_v2(data: bytes) -> ParseResult:
    head = data[: len(V2_SIGNATURE)]
    if head != V2_SIGNATURE[: len(head)]:
        raise ProxyProtocolError("not a PROXY protocol v2 header")
    if len(data) < V2_PREAMBLE:
        return NEED_DATA
    version_command, family_transport, length = struct.unpack_from("!BBH", data, 12)
    if version_command >> 4 != 2:
        raise ProxyProtocolError(f"unsupported PROXY v2 version {version_command >> 4}")
    command = version_command & 0x0F
    if command not in (0, 1):
        raise ProxyProtocolError(f"unknown PROXY v2 command {command}")
    family, transport = family_transport >> 4, family_transport & 0x0F
    if family not in _ADDRESS_LENGTH or transport > TRANSPORT_DGRAM:
        raise ProxyProtocolError(f"unknown PROXY v2 family/transport 0x{family_transport:02x}")
    total = V2_PREAMBLE + length
    if len(data) < total:
        return NEED_DATA
    body = data[V2_PREAMBLE:total]
    address_length = _ADDRESS_LENGTH[family]
    if len(body) < address_length:
        raise ProxyProtocolError("PROXY v2 header too short for its address family")
    tlvs = _parse_tlvs(body[address_length:])
    if command == 0:  # LOCAL: addresses (if any) are to be ignored
        return ProxyHeader(2, "UNKNOWN", None, None, total, local=True, tlvs=tlvs)
    stream = transport != TRANSPORT_DGRAM
    if family == AF_INET:
        src, dst, sport, dport = struct.unpack_from("!4s4sHH", body)
        return ProxyHeader(
            2,
            "TCP4" if stream else "UDP4",
            (str(ipaddress.IPv4Address(src)), sport),
            (str(ipaddress.IPv4Address(dst)), dport),
            total,
            tlvs=tlvs,
        )
    if family == AF_INET6:
        src, dst, sport, dport = struct.unpack_from("!16s16sHH", body)
        return ProxyHeader(
            2,
            "TCP6" if stream else "UDP6",
            (str(ipaddress.IPv6Address(src)), sport),
            (str(ipaddress.IPv6Address(dst)), dport),
            total,
            tlvs=tlvs,
        )
    if family == AF_UNIX:
        return ProxyHeader(2, "UNIX" if stream else "UNIX_DGRAM", None, None, total, tlvs=tlvs)
    return ProxyHeader(2, "UNKNOWN", None, None, total, tlvs=tlvs)


def _parse_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    tlvs: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 3:
            raise ProxyProtocolError("truncated PROXY v2 TLV")
        kind, size = struct.unpack_from("!BH", data, offset)
        offset += 3
        if len(data) - offset < size:
            raise ProxyProtocolError("truncated PROXY v2 TLV value")
        tlvs.append((kind, data[offset : offset + size]))
        offset += size
    return tuple(tlvs)


# -- encoders --------------------------------------------------------------------------------
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _pair(
    source: Address, destination: Address
) -> (
    tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]
    | tuple[ipaddress.IPv6Address, ipaddress.IPv6Address]
):
    """Both addresses in one family: IPv4 when both are (or map to) IPv4, else IPv6."""
    src, dst = _ip(source[0]), _ip(destination[0])
    if isinstance(src, ipaddress.IPv4Address) and isinstance(dst, ipaddress.IPv4Address):
        return src, dst
    return _as_v6(src), _as_v6(dst)


def _as_v6(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address):
        return address
    return ipaddress.IPv6Address(f"::ffff:{address}")


def encode_v1(source: Address, destination: Address) -> bytes:
    """``PROXY TCP4|TCP6 src dst sport dport\\r\\n``; the family follows the addresses."""
    src, dst = _pair(source, destination)
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {int(source[1])} {int(destination[1])}\r\n".encode("ascii")


def encode_v1_unknown() -> bytes:
    return b"PROXY UNKNOWN\r\n"


def encode_v2(
    source: Address, destination: Address, tlvs: tuple[tuple[int, bytes], ...] = ()
) -> bytes:
    """The binary header, command PROXY over a stream transport."""
    src, dst = _pair(source, destination)
    if src.version == 4:
        family = AF_INET << 4 | TRANSPORT_STREAM
        addresses = struct.pack("!4s4sHH", src.packed, dst.packed, source[1], destination[1])
    else:
        family = AF_INET6 << 4 | TRANSPORT_STREAM
        addresses = struct.pack("!16s16sHH", src.packed, dst.packed, source[1], destination[1])
    return _v2(V2_PROXY, family, addresses + _encode_tlvs(tlvs))


def encode_v2_local() -> bytes:
    """A LOCAL header: the connection is the proxy's own (no addresses)."""
    return _v2(V2_LOCAL, AF_UNSPEC << 4 | TRANSPORT_UNSPEC, b"")


def _v2(command: int, family: int, body: bytes) -> bytes:
    if len(body) > 0xFFFF:
        raise ProxyProtocolError("PROXY v2 header too long")
    return V2_SIGNATURE + struct.pack("!BBH", command, family, len(body)) + body


def _encode_tlvs(tlvs: tuple[tuple[int, bytes], ...]) -> bytes:
    out = bytearray()
    for kind, value in tlvs:
        if not 0 <= kind <= 0xFF or len(value) > 0xFFFF:
            raise ProxyProtocolError("bad PROXY v2 TLV")
        out += struct.pack("!BH", kind, len(value)) + value
    return bytes(out)


def encode(version: int, source: Address, destination: Address) -> bytes:
    """The header a backend flagged SEND-PROXY (1) or SEND-PROXY-V2 (2) gets."""
    if version == 1:
        return encode_v1(source, destination)
    if version == 2:
        return encode_v2(source, destination)
    raise ValueError(f"no PROXY protocol version {version}")
