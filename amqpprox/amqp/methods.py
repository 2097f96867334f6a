"""The connection-class (class 10) methods the proxy reads and writes.

Owns: one frozen dataclass per ``Connection.*`` method of AMQP 0-9-1 §1.4.2
(Start .. UpdateSecret aside), :class:`UnknownMethod` for everything else, and
:func:`decode_method` / :func:`encode_method` / :func:`method_ids`. Argument layouts
follow the spec's XML (amqp0-9-1.xml): octets, shorts and longs are big-endian,
``shortstr`` is a length octet + UTF-8, ``longstr`` and tables are a 32-bit length +
bytes, consecutive bits share an octet.

Sans-IO: imports no asyncio, socket or ssl and nothing of ours outside
``amqpprox.amqp``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from struct import Struct
from typing import Final, TypeAlias, Union

from amqpprox.amqp.errors import SYNTAX_ERROR, ProtocolError
from amqpprox.amqp.fields import (
    FieldValue,
    decode_table,
    encode_long_string_entry,
    encode_table,
)
from amqpprox.amqp.frames import FRAME_METHOD, encode_frame

__all__ = [
    "CONNECTION_CLASS",
    "ConnectionBlocked",
    "ConnectionClose",
    "ConnectionCloseOk",
    "ConnectionOpen",
    "ConnectionOpenOk",
    "ConnectionSecure",
    "ConnectionSecureOk",
    "ConnectionStart",
    "ConnectionStartOk",
    "ConnectionTune",
    "ConnectionTuneOk",
    "ConnectionUnblocked",
    "Method",
    "UnknownMethod",
    "decode_method",
    "encode_method",
    "encode_method_payload",
    "ids_of",
    "method_ids",
    "method_name",
]

CONNECTION_CLASS: Final = 10

_U8: Final = Struct(">B")
_U16: Final = Struct(">H")
_U32: Final = Struct(">I")
_IDS: Final = Struct(">HH")
_TUNE: Final = Struct(">HIH")
_CLOSE_IDS: Final = Struct(">HH")


# ----------------------------------------------------------------- argument encoding


def _shortstr(value: str, what: str) -> bytes:
    encoded = value.encode("utf-8")
    if len(encoded) > 255:
        raise ValueError(f"{what} longer than 255 bytes")
    return _U8.pack(len(encoded)) + encoded


def _truncated_shortstr(value: str) -> bytes:
    """A shortstr cut to 255 bytes without splitting a UTF-8 sequence."""
    encoded = value.encode("utf-8")
    if len(encoded) > 255:
        encoded = encoded[:255].decode("utf-8", "ignore").encode("utf-8")
    return _U8.pack(len(encoded)) + encoded


def _longstr(value: bytes) -> bytes:
    return _U32.pack(len(value)) + value


class _Args:
    """Cursor over a method's argument bytes; every short read is a 502."""

    __slots__ = ("_buf", "_end", "_pos", "_what")

    def __init__(self, buf: bytes, pos: int, what: str) -> None:
        self._buf = buf
        self._end = len(buf)
        self._pos = pos
        self._what = what

    def _take(self, n: int) -> int:
        start = self._pos
        if start + n > self._end:
            raise ProtocolError(SYNTAX_ERROR, f"{self._what}: arguments truncated")
        self._pos = start + n
        return start

    def fixed(self, layout: Struct) -> tuple[int, ...]:
        """Consecutive fixed-size integer arguments in one read (Tune's short, long, short)."""
        return layout.unpack_from(self._buf, self._take(layout.size))

    def octet(self) -> int:
        return self._buf[self._take(1)]

    def short(self) -> int:
        return int(_U16.unpack_from(self._buf, self._take(2))[0])

    def long(self) -> int:
        return int(_U32.unpack_from(self._buf, self._take(4))[0])

    def shortstr_bytes(self) -> bytes:
        n = self.octet()
        start = self._take(n)
        return self._buf[start : start + n]

    def shortstr(self) -> str:
        raw = self.shortstr_bytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(SYNTAX_ERROR, f"{self._what}: short string is not UTF-8") from None

    def text_shortstr(self) -> str:
        """A shortstr shown to humans only (reply text): bad UTF-8 is replaced."""
        return self.shortstr_bytes().decode("utf-8", "replace")

    def longstr(self) -> bytes:
        n = self.long()
        start = self._take(n)
        return self._buf[start : start + n]

    def done(self) -> None:
        if self._pos != self._end:
            raise ProtocolError(
                SYNTAX_ERROR,
                f"{self._what}: {self._end - self._pos} unexpected bytes after arguments",
            )


# ------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class ConnectionStart:
    """Connection.Start (10, 10): the broker's greeting."""

    version_major: int = 0
    version_minor: int = 9
    server_properties: dict[str, FieldValue] = field(default_factory=dict)
    mechanisms: str = "PLAIN AMQPLAIN"
    locales: str = "en_US"

    def encode_arguments(self) -> bytes:
        table = encode_table(self.server_properties)
        return (
            bytes((self.version_major, self.version_minor))
            + _longstr(table)
            + _longstr(self.mechanisms.encode("utf-8"))
            + _longstr(self.locales.encode("utf-8"))
        )


@dataclass(frozen=True)
class ConnectionStartOk:
    """Connection.StartOk (10, 11).

    ``client_properties_raw`` is the client's table content exactly as received (no
    length prefix) so it can be relayed byte for byte; ``client_properties`` is its
    decoded view.
    """

    client_properties_raw: bytes
    mechanism: str
    response: bytes
    locale: str
    # One slot: the decoded table once read, so the frozen class can cache it.
    _decoded: list[dict[str, FieldValue]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    @property
    def client_properties(self) -> dict[str, FieldValue]:
        """The decoded table (decoded once); raises ProtocolError 502 if it is malformed."""
        decoded = self._decoded
        if not decoded:
            decoded.append(decode_table(self.client_properties_raw))
        return decoded[0]

    def with_extra_properties(self, entries: list[tuple[str, str]]) -> ConnectionStartOk:
        """A copy with long-string entries appended after the original table bytes."""
        return self.with_extra_table_bytes(
            b"".join([encode_long_string_entry(name, value) for name, value in entries])
        )

    def with_extra_table_bytes(self, extra: bytes) -> ConnectionStartOk:
        """A copy with encoded table entries appended after the original table bytes."""
        return ConnectionStartOk(
            self.client_properties_raw + extra, self.mechanism, self.response, self.locale
        )

    def with_credentials(self, mechanism: str, response: bytes) -> ConnectionStartOk:
        """A copy with the SASL mechanism and response replaced."""
        return dataclasses.replace(self, mechanism=mechanism, response=response)

    def encode_arguments(self) -> bytes:
        return (
            _longstr(self.client_properties_raw)
            + _shortstr(self.mechanism, "mechanism")
            + _longstr(self.response)
            + _shortstr(self.locale, "locale")
        )

    def __repr__(self) -> str:
        # The response carries credentials: never print it.
        return (
            f"ConnectionStartOk(client_properties_raw=<{len(self.client_properties_raw)} "
            f"bytes>, mechanism={self.mechanism!r}, response=<{len(self.response)} bytes>, "
            f"locale={self.locale!r})"
        )


@dataclass(frozen=True)
class ConnectionSecure:
    """Connection.Secure (10, 20): a SASL challenge (not supported by the proxy)."""

    challenge: bytes

    def encode_arguments(self) -> bytes:
        return _longstr(self.challenge)


@dataclass(frozen=True)
class ConnectionSecureOk:
    """Connection.SecureOk (10, 21)."""

    response: bytes

    def encode_arguments(self) -> bytes:
        return _longstr(self.response)

    def __repr__(self) -> str:
        return f"ConnectionSecureOk(response=<{len(self.response)} bytes>)"


@dataclass(frozen=True)
class ConnectionTune:
    """Connection.Tune (10, 30)."""

    channel_max: int
    frame_max: int
    heartbeat: int

    def encode_arguments(self) -> bytes:
        return _TUNE.pack(self.channel_max, self.frame_max, self.heartbeat)


@dataclass(frozen=True)
class ConnectionTuneOk:
    """Connection.TuneOk (10, 31)."""

    channel_max: int
    frame_max: int
    heartbeat: int

    def encode_arguments(self) -> bytes:
        return _TUNE.pack(self.channel_max, self.frame_max, self.heartbeat)


@dataclass(frozen=True)
class ConnectionOpen:
    """Connection.Open (10, 40); ``capabilities`` and ``insist`` are reserved in 0-9-1."""

    virtual_host: str
    capabilities: str = ""
    insist: bool = False

    def encode_arguments(self) -> bytes:
        return (
            _shortstr(self.virtual_host, "virtual host")
            + _shortstr(self.capabilities, "capabilities")
            + (b"\x01" if self.insist else b"\x00")
        )


@dataclass(frozen=True)
class ConnectionOpenOk:
    """Connection.OpenOk (10, 41); ``known_hosts`` is reserved in 0-9-1."""

    known_hosts: str = ""

    def encode_arguments(self) -> bytes:
        return _shortstr(self.known_hosts, "known hosts")


@dataclass(frozen=True)
class ConnectionClose:
    """Connection.Close (10, 50). ``reply_text`` is cut to 255 bytes when encoded."""

    reply_code: int
    reply_text: str
    class_id: int = 0
    method_id: int = 0

    def encode_arguments(self) -> bytes:
        return (
            _U16.pack(self.reply_code)
            + _truncated_shortstr(self.reply_text)
            + _CLOSE_IDS.pack(self.class_id, self.method_id)
        )


@dataclass(frozen=True)
class ConnectionCloseOk:
    """Connection.CloseOk (10, 51)."""

    def encode_arguments(self) -> bytes:
        return b""


@dataclass(frozen=True)
class ConnectionBlocked:
    """Connection.Blocked (10, 60), a RabbitMQ extension."""

    reason: str = ""

    def encode_arguments(self) -> bytes:
        return _truncated_shortstr(self.reason)


@dataclass(frozen=True)
class ConnectionUnblocked:
    """Connection.Unblocked (10, 61), a RabbitMQ extension."""

    def encode_arguments(self) -> bytes:
        return b""


@dataclass(frozen=True)
class UnknownMethod:
    """Any method this module does not model; ``arguments`` are kept raw."""

    class_id: int
    method_id: int
    arguments: bytes = b""

    def encode_arguments(self) -> bytes:
        return self.arguments

    def __repr__(self) -> str:
        return (
            f"UnknownMethod(class_id={self.class_id}, method_id={self.method_id}, "
            f"arguments=<{len(self.arguments)} bytes>)"
        )


Method: TypeAlias = Union[  # noqa: UP007 -- reads better as a list
    ConnectionStart,
    ConnectionStartOk,
    ConnectionSecure,
    ConnectionSecureOk,
    ConnectionTune,
    ConnectionTuneOk,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionBlocked,
    ConnectionUnblocked,
    UnknownMethod,
]


def method_name(method: Method) -> str:
    """``Connection.Open`` style name, or ``class 20 method 10`` for unknown ones."""
    if isinstance(method, UnknownMethod):
        return f"class {method.class_id} method {method.method_id}"
    return _NAMES[_METHOD_ID_OF[type(method)]]


# ------------------------------------------------------------------------ decoding


def _decode_start(a: _Args) -> ConnectionStart:
    major = a.octet()
    minor = a.octet()
    properties = decode_table(a.longstr())
    mechanisms = a.longstr().decode("utf-8", "replace")
    locales = a.longstr().decode("utf-8", "replace")
    return ConnectionStart(major, minor, properties, mechanisms, locales)


def _decode_start_ok(a: _Args) -> ConnectionStartOk:
    raw = a.longstr()
    start_ok = ConnectionStartOk(raw, a.shortstr(), a.longstr(), a.shortstr())
    _ = start_ok.client_properties  # validate now (502 here, not later) and cache
    return start_ok


def _decode_tune(a: _Args) -> ConnectionTune:
    channel_max, frame_max, heartbeat = a.fixed(_TUNE)
    return ConnectionTune(channel_max, frame_max, heartbeat)


def _decode_tune_ok(a: _Args) -> ConnectionTuneOk:
    channel_max, frame_max, heartbeat = a.fixed(_TUNE)
    return ConnectionTuneOk(channel_max, frame_max, heartbeat)


def _decode_open(a: _Args) -> ConnectionOpen:
    vhost = a.shortstr()
    capabilities = a.shortstr()
    insist = bool(a.octet() & 1)
    return ConnectionOpen(vhost, capabilities, insist)


def _decode_close(a: _Args) -> ConnectionClose:
    return ConnectionClose(a.short(), a.text_shortstr(), a.short(), a.short())


_DECODERS: Final[dict[int, Callable[[_Args], Method]]] = {
    10: _decode_start,
    11: _decode_start_ok,
    20: lambda a: ConnectionSecure(a.longstr()),
    21: lambda a: ConnectionSecureOk(a.longstr()),
    30: _decode_tune,
    31: _decode_tune_ok,
    40: _decode_open,
    41: lambda a: ConnectionOpenOk(a.shortstr()),
    50: _decode_close,
    51: lambda _: ConnectionCloseOk(),
    60: lambda a: ConnectionBlocked(a.text_shortstr()),
    61: lambda _: ConnectionUnblocked(),
}

# Each modelled method's id within class 10, by its dataclass (the dataclasses hold only
# their fields).
_METHOD_ID_OF: Final[dict[type, int]] = {
    ConnectionStart: 10,
    ConnectionStartOk: 11,
    ConnectionSecure: 20,
    ConnectionSecureOk: 21,
    ConnectionTune: 30,
    ConnectionTuneOk: 31,
    ConnectionOpen: 40,
    ConnectionOpenOk: 41,
    ConnectionClose: 50,
    ConnectionCloseOk: 51,
    ConnectionBlocked: 60,
    ConnectionUnblocked: 61,
}

# "Connection.StartOk" for 11, and so on: the class name after its prefix.
_NAMES: Final[dict[int, str]] = {
    method_id: "Connection." + kind.__name__.removeprefix("Connection")
    for kind, method_id in _METHOD_ID_OF.items()
}


def ids_of(kind: type) -> tuple[int, int]:
    """(class-id, method-id) of a modelled method's dataclass, e.g. ``(10, 40)``."""
    return CONNECTION_CLASS, _METHOD_ID_OF[kind]


def method_ids(payload: bytes) -> tuple[int, int] | None:
    """(class-id, method-id) of a method frame payload, or None if it is too short."""
    if len(payload) < 4:
        return None
    class_id, method_id = _IDS.unpack_from(payload)
    return int(class_id), int(method_id)


# -------------------------------------------------------------- the handshake's fast path
#
# Every connection carries one StartOk, TuneOk and Open (and its broker's Tune and
# OpenOk); these read a well-formed one with slices and one struct call each instead of a
# cursor object, and answer None for anything else (a short, long or non-UTF-8 payload),
# which ``decode_method`` then reads the careful way, with its precise 502. Slicing past
# the end only shortens a slice, so one check of the final offset catches every
# truncation.


def _quick_start_ok(p: bytes) -> ConnectionStartOk | None:
    end = len(p)
    if end < 8:
        return None
    pos = 8 + _U32.unpack_from(p, 4)[0]
    raw = p[8:pos]
    if pos >= end:
        return None
    mechanism = p[pos + 1 : pos + 1 + p[pos]]
    pos += 1 + p[pos]
    if pos + 4 > end:
        return None
    size = _U32.unpack_from(p, pos)[0]
    response = p[pos + 4 : pos + 4 + size]
    pos += 4 + size
    if pos >= end:
        return None
    locale = p[pos + 1 : pos + 1 + p[pos]]
    if pos + 1 + p[pos] != end:
        return None
    try:
        start_ok = ConnectionStartOk(raw, mechanism.decode(), response, locale.decode())
    except UnicodeDecodeError:
        return None
    _ = start_ok.client_properties  # validate now (502 here, not later) and cache
    return start_ok


def _quick_tuning(
    kind: type[ConnectionTune | ConnectionTuneOk],
) -> Callable[[bytes], Method | None]:
    """The fast path of Tune or TuneOk: the same three numbers, read in one unpack."""

    def quick(p: bytes) -> Method | None:
        if len(p) != 4 + _TUNE.size:
            return None
        return kind(*_TUNE.unpack_from(p, 4))

    return quick


def _quick_open_ok(p: bytes) -> ConnectionOpenOk | None:
    # RabbitMQ's is always empty known-hosts (reserved in 0-9-1).
    return ConnectionOpenOk() if p == b"\x00\x0a\x00\x29\x00" else None


def _quick_open(p: bytes) -> ConnectionOpen | None:
    end = len(p)
    if end < 5:
        return None
    pos = 5 + p[4]
    vhost = p[5:pos]
    if pos >= end:
        return None
    capabilities = p[pos + 1 : pos + 1 + p[pos]]
    pos += 1 + p[pos]
    if pos + 1 != end:
        return None
    try:
        return ConnectionOpen(vhost.decode(), capabilities.decode(), bool(p[pos] & 1))
    except UnicodeDecodeError:
        return None


_QUICK: Final[dict[bytes, Callable[[bytes], Method | None]]] = {
    b"\x00\x0a\x00\x0b": _quick_start_ok,
    b"\x00\x0a\x00\x1f": _quick_tuning(ConnectionTuneOk),
    b"\x00\x0a\x00\x28": _quick_open,
    b"\x00\x0a\x00\x1e": _quick_tuning(ConnectionTune),
    b"\x00\x0a\x00\x29": _quick_open_ok,
}


def decode_method(payload: bytes) -> Method:
    """Decode a method frame's payload.

    Connection-class methods become their dataclass; any other class or method becomes
    :class:`UnknownMethod` (the caller decides whether that is an error). A truncated
    payload, trailing bytes or a malformed table raise ProtocolError 502.
    """
    quick = _QUICK.get(payload[:4]) if type(payload) is bytes else None
    if quick is not None:
        method = quick(payload)
        if method is not None:
            return method
    return _decode_careful(payload)


def _decode_careful(payload: bytes) -> Method:
    """``decode_method`` without the fast path: every argument through ``_Args``."""
    ids = method_ids(payload)
    if ids is None:
        raise ProtocolError(SYNTAX_ERROR, "method frame shorter than its class and method ids")
    class_id, method_id = ids
    decoder = _DECODERS.get(method_id) if class_id == CONNECTION_CLASS else None
    if decoder is None:
        return UnknownMethod(class_id, method_id, bytes(payload[4:]))
    args = _Args(bytes(payload), 4, _NAMES[method_id])
    method: Method = decoder(args)
    args.done()
    return method


def encode_method_payload(method: Method) -> bytes:
    """The method frame payload: class-id, method-id, arguments."""
    if isinstance(method, UnknownMethod):
        head = _IDS.pack(method.class_id, method.method_id)
    else:
        head = _IDS.pack(CONNECTION_CLASS, _METHOD_ID_OF[type(method)])
    return head + method.encode_arguments()


def encode_method(method: Method, channel: int = 0) -> bytes:
    """A complete method frame carrying ``method`` on ``channel``."""
    return encode_frame(FRAME_METHOD, channel, encode_method_payload(method))
