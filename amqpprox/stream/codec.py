"""Stream protocol frames: the primitive types, and the commands the proxy reads/writes.

A frame is ``size:uint32`` then ``size`` bytes: ``key:uint16`` (high bit set on a
response), ``version:uint16``, then the command's fields (most start with a
``correlation_id:uint32``). Strings are int16-length-prefixed UTF-8, byte blobs
int32-length-prefixed, arrays int32-count-prefixed, all big-endian. Everything else the
relay passes through untouched, so only the commands below are spelled out.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "CLOSE",
    "HEARTBEAT",
    "METADATA",
    "OPEN",
    "PEER_PROPERTIES",
    "RESPONSE",
    "SASL_AUTHENTICATE",
    "SASL_HANDSHAKE",
    "TUNE",
    "Frame",
    "StreamProtocolError",
]

RESPONSE = 0x8000  # the key's high bit: this frame answers a request
METADATA = 0x000F
PEER_PROPERTIES = 0x0011
SASL_HANDSHAKE = 0x0012
SASL_AUTHENTICATE = 0x0013
TUNE = 0x0014
OPEN = 0x0015
CLOSE = 0x0016
HEARTBEAT = 0x0017

# Response codes (the protocol reference's table).
OK = 1
STREAM_DOES_NOT_EXIST = 2
SASL_MECHANISM_NOT_SUPPORTED = 7
AUTHENTICATION_FAILURE = 8
SASL_ERROR = 9
VIRTUAL_HOST_ACCESS_FAILURE = 12
UNKNOWN_FRAME = 13
FRAME_TOO_LARGE = 14
INTERNAL_ERROR = 15
ACCESS_REFUSED = 16
PRECONDITION_FAILED = 17

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_HEAD = struct.Struct(">HH")  # key, version
_HEAD_CORR = struct.Struct(">HHI")  # key, version, correlation id
_RESPONSE_HEAD = struct.Struct(">HHIH")  # key, version, correlation id, response code


class StreamProtocolError(Exception):
    """Bytes that are not a well-formed stream frame; ``code`` is a response code."""

    def __init__(self, text: str, code: int = PRECONDITION_FAILED) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass(frozen=True, slots=True)
class Frame:
    """One whole frame: its key and version, and its body after them."""

    key: int
    version: int
    body: bytes

    @property
    def command(self) -> int:
        return self.key & ~RESPONSE & 0xFFFF


class Reader:
    """Reads the protocol's types from a body, raising ``StreamProtocolError`` past its end."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def _take(self, size: int) -> bytes:
        end = self.pos + size
        if size < 0 or end > len(self.data):
            raise StreamProtocolError("truncated frame")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u16(self) -> int:
        value: int = _U16.unpack(self._take(2))[0]
        return value

    def u32(self) -> int:
        value: int = _U32.unpack(self._take(4))[0]
        return value

    def i32(self) -> int:
        value: int = _I32.unpack(self._take(4))[0]
        return value

    def string(self) -> str:
        size: int = _I16.unpack(self._take(2))[0]
        if size < 0:
            return ""
        try:
            return self._take(size).decode("utf-8")
        except UnicodeDecodeError as error:
            raise StreamProtocolError("string is not UTF-8") from error

    def blob(self) -> bytes:
        size = self.i32()
        return b"" if size < 0 else self._take(size)

    def count(self) -> int:
        size = self.i32()
        # Each element takes at least two bytes: a count beyond that is a lie.
        if size < 0 or size > (len(self.data) - self.pos) // 2 + 1:
            raise StreamProtocolError("bad array length")
        return size

    def properties(self) -> list[tuple[str, str]]:
        return [(self.string(), self.string()) for _ in range(self.count())]

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out


def string(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) > 0x7FFF:
        raw = raw[:0x7FFF]
    return _I16.pack(len(raw)) + raw


def properties(items: Sequence[tuple[str, str]]) -> bytes:
    return _I32.pack(len(items)) + b"".join(string(k) + string(v) for k, v in items)


def frame(payload: bytes) -> bytes:
    """Prefix ``payload`` (key onwards) with its size."""
    return _U32.pack(len(payload)) + payload


def split(data: bytes) -> Frame:
    """A frame's payload (after the size) as key, version, body."""
    if len(data) < 4:
        raise StreamProtocolError("frame shorter than its header")
    key, version = _HEAD.unpack_from(data)
    return Frame(key, version, data[4:])


# -- requests and responses the proxy builds ----------------------------------------------
def response(command: int, correlation_id: int, code: int, tail: bytes = b"") -> bytes:
    return frame(_RESPONSE_HEAD.pack(command | RESPONSE, 1, correlation_id, code) + tail)


def peer_properties_response(correlation_id: int, props: Sequence[tuple[str, str]]) -> bytes:
    return response(PEER_PROPERTIES, correlation_id, OK, properties(props))


def sasl_handshake_response(correlation_id: int, mechanisms: Sequence[str]) -> bytes:
    body = _I32.pack(len(mechanisms)) + b"".join(string(m) for m in mechanisms)
    return response(SASL_HANDSHAKE, correlation_id, OK, body)


def sasl_authenticate_response(correlation_id: int, code: int = OK) -> bytes:
    return response(SASL_AUTHENTICATE, correlation_id, code)


def tune(frame_max: int, heartbeat: int) -> bytes:
    return frame(_HEAD.pack(TUNE, 1) + _U32.pack(frame_max) + _U32.pack(heartbeat))


def open_response(correlation_id: int, code: int, props: Sequence[tuple[str, str]]) -> bytes:
    return response(OPEN, correlation_id, code, properties(props) if code == OK else b"")


def close_request(correlation_id: int, code: int, reason: str) -> bytes:
    return frame(_HEAD_CORR.pack(CLOSE, 1, correlation_id) + _U16.pack(code) + string(reason))


def close_response(correlation_id: int, code: int = OK) -> bytes:
    return response(CLOSE, correlation_id, code)


def with_peer_properties(payload: bytes, extra: Sequence[tuple[str, str]]) -> bytes:
    """A client's PeerProperties request (payload, key onwards) with ``extra`` added."""
    reader = Reader(payload, 4)
    correlation_id = reader.u32()
    props = [(k, v) for k, v in reader.properties() if k not in dict(extra)]
    return frame(payload[:4] + _U32.pack(correlation_id) + properties([*props, *extra]))


# -- what the proxy reads ------------------------------------------------------------------
def correlation_of(body: bytes) -> int:
    return Reader(body).u32()


def response_code(body: bytes) -> tuple[int, int]:
    """A response's correlation id and response code."""
    reader = Reader(body)
    return reader.u32(), reader.u16()


def read_open(body: bytes) -> tuple[int, str]:
    reader = Reader(body)
    return reader.u32(), reader.string()


def read_tune(body: bytes) -> tuple[int, int]:
    reader = Reader(body)
    return reader.u32(), reader.u32()


def read_sasl_authenticate(body: bytes) -> tuple[int, str, bytes]:
    reader = Reader(body)
    return reader.u32(), reader.string(), reader.blob()


def read_open_response(body: bytes) -> tuple[int, int, list[tuple[str, str]]]:
    reader = Reader(body)
    correlation_id, code = reader.u32(), reader.u16()
    props = reader.properties() if code == OK and reader.pos < len(body) else []
    return correlation_id, code, props


Endpoint = tuple[str, int]


def rewrite_metadata_response(body: bytes, where: Callable[[str, int], Endpoint]) -> bytes:
    """A Metadata response body with each broker's host and port replaced by ``where``'s."""
    reader = Reader(body)
    correlation_id = reader.u32()
    out = [_U32.pack(correlation_id)]
    brokers = reader.count()
    out.append(_I32.pack(brokers))
    for _ in range(brokers):
        reference, host, port = reader.u16(), reader.string(), reader.u32()
        new_host, new_port = where(host, port)
        out.append(_U16.pack(reference) + string(new_host) + _U32.pack(new_port))
    out.append(reader.rest())  # the stream metadata refer to brokers by reference: unchanged
    return b"".join(out)


def read_metadata_brokers(body: bytes) -> list[tuple[int, str, int]]:
    reader = Reader(body)
    reader.u32()
    return [(reader.u16(), reader.string(), reader.u32()) for _ in range(reader.count())]


def sasl_authenticate_request(correlation_id: int, mechanism: str, data: bytes) -> bytes:
    return frame(
        _HEAD_CORR.pack(SASL_AUTHENTICATE, 1, correlation_id)
        + string(mechanism)
        + _I32.pack(len(data))
        + data
    )
