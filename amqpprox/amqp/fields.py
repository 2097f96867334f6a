"""AMQP 0-9-1 field tables and field values, with RabbitMQ's errata applied.

Owns: decoding and encoding of field tables (AMQP 0-9-1 §4.2.5.5) and field arrays,
and :func:`encode_long_string_entry` used to append properties to a client's table
without re-encoding it. Sans-IO: imports no asyncio, socket or ssl and nothing of ours
outside ``amqpprox.amqp``.

Type tags (https://www.rabbitmq.com/amqp-0-9-1-errata.html, section "Field types";
the spec's own list disagrees with what every broker and client does):

=====  ===============================  =======================================
tag    wire                             Python value (decode)
=====  ===============================  =======================================
``t``  octet, 0 = false                 ``bool``
``b``  signed 8-bit                     ``int``
``B``  unsigned 8-bit                   ``int``
``s``  signed 16-bit (errata)           ``int``
``u``  unsigned 16-bit                  ``int``
``U``  signed 16-bit (the spec's        ``int`` (accepted from old clients,
       short-int; RabbitMQ lacks it)    never emitted)
``I``  signed 32-bit                    ``int``
``i``  unsigned 32-bit                  ``int``
``l``  signed 64-bit (errata)           ``int``
``L``  signed 64-bit (the spec's        ``int`` (accepted, never emitted)
       long-long-int)
``f``  IEEE-754 single                  ``float``
``d``  IEEE-754 double                  ``float``
``D``  scale octet + signed 32-bit      ``decimal.Decimal`` (signed, as the Java,
                                        .NET and pika clients write it)
``S``  long string                      ``str`` (UTF-8; invalid sequences become
                                        U+FFFD -- the proxy keeps the client's
                                        raw table bytes, so nothing is lost)
``x``  long byte array                  ``bytes``
``A``  field array                      ``list``
``T``  unsigned 64-bit seconds          :class:`Timestamp` (an ``int`` subclass,
                                        so any u64 decodes; ``to_datetime()``)
``F``  nested table                     ``dict``
``V``  nothing                          ``None``
=====  ===============================  =======================================

Encoding picks the tag from the Python type: ``None``->V, ``bool``->t,
:class:`Timestamp` or ``datetime``->T, other ``int``->I (or l if it needs 64 bits),
``float``->d, ``Decimal``->D, ``str``->S, ``bytes``->x, ``list``/``tuple``->A,
mappings->F. So ``decode(encode(x)) == x`` for every value, while ``encode(decode(b))``
may differ from ``b`` in the integer and float widths chosen.

Malformed input raises :class:`ProtocolError` 502 (SYNTAX_ERROR), never
``IndexError``/``struct.error``. Nesting deeper than :data:`MAX_NESTING` is refused so
hostile input cannot exhaust the Python stack.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from decimal import Decimal
from struct import Struct
from typing import Final, TypeAlias, Union

from amqpprox.amqp.errors import SYNTAX_ERROR, ProtocolError
from amqpprox.amqp.timestamp import Timestamp

__all__ = [
    "MAX_NESTING",
    "FieldTable",
    "FieldValue",
    "Timestamp",
    "decode_table",
    "encode_long_string_entry",
    "encode_table",
]

FieldValue: TypeAlias = Union[
    bool,
    int,
    float,
    Decimal,
    str,
    bytes,
    _dt.datetime,
    "list[FieldValue]",
    "dict[str, FieldValue]",
    None,
]
FieldTable: TypeAlias = "dict[str, FieldValue]"

MAX_NESTING: Final = 64

_U8: Final = Struct(">B")
_I8: Final = Struct(">b")
_U16: Final = Struct(">H")
_I16: Final = Struct(">h")
_U32: Final = Struct(">I")
_I32: Final = Struct(">i")
_I64: Final = Struct(">q")
_U64: Final = Struct(">Q")
_F32: Final = Struct(">f")
_F64: Final = Struct(">d")
_DECIMAL: Final = Struct(">Bi")

# tag -> (struct, width) for the fixed-size numeric tags.
_FIXED: Final[dict[int, Struct]] = {
    ord("b"): _I8,
    ord("B"): _U8,
    ord("s"): _I16,
    ord("u"): _U16,
    ord("U"): _I16,
    ord("I"): _I32,
    ord("i"): _U32,
    ord("l"): _I64,
    ord("L"): _I64,
    ord("f"): _F32,
    ord("d"): _F64,
}


def _error(text: str) -> ProtocolError:
    return ProtocolError(SYNTAX_ERROR, f"malformed field table: {text}")


# ---------------------------------------------------------------------------- decode


def decode_table(data: bytes | bytearray | memoryview) -> dict[str, FieldValue]:
    """Decode a field table's content (the bytes after its 4-byte length prefix)."""
    buf = bytes(data)
    try:
        return _decode_table(buf, 0, len(buf), 0)
    except ProtocolError:
        raise
    except (ValueError, IndexError, OverflowError) as exc:  # belt and braces
        raise _error(str(exc)) from exc


def _decode_table(buf: bytes, pos: int, end: int, depth: int) -> dict[str, FieldValue]:
    if depth > MAX_NESTING:
        raise _error(f"nested deeper than {MAX_NESTING} levels")
    table: dict[str, FieldValue] = {}
    while pos < end:
        key_len = buf[pos]
        pos += 1
        if pos + key_len >= end:  # the key and at least a type tag must fit
            raise _error("field name or type runs past the end of the table")
        key = buf[pos : pos + key_len].decode("utf-8", "replace")
        pos += key_len
        # Long strings and booleans, most of a client's properties, read in line (one
        # call less each); everything else, and any entry that runs short, the careful way.
        tag = buf[pos]
        if tag == 0x53 and pos + 5 <= end:  # 'S'
            stop = pos + 5 + _U32.unpack_from(buf, pos + 1)[0]
            if stop <= end:
                table[key] = buf[pos + 5 : stop].decode("utf-8", "replace")
                pos = stop
                continue
        elif tag == 0x74 and pos + 2 <= end:  # 't'
            table[key] = buf[pos + 1] != 0
            pos += 2
            continue
        table[key], pos = _decode_value(buf, pos, end, depth)
    return table


def _decode_array(buf: bytes, pos: int, end: int, depth: int) -> list[FieldValue]:
    if depth > MAX_NESTING:
        raise _error(f"nested deeper than {MAX_NESTING} levels")
    items: list[FieldValue] = []
    while pos < end:
        value, pos = _decode_value(buf, pos, end, depth)
        items.append(value)
    return items


def _length_prefixed(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """Return (start, stop) of a u32-length-prefixed item starting at ``pos``."""
    if pos + 4 > end:
        raise _error(f"{what} length runs past the end of its container")
    (length,) = _U32.unpack_from(buf, pos)
    start = pos + 4
    stop = start + length
    if stop > end:
        raise _error(f"{what} of {length} bytes runs past the end of its container")
    return start, stop


def _decode_value(buf: bytes, pos: int, end: int, depth: int) -> tuple[FieldValue, int]:
    """Decode the tagged value at ``pos``; return it and the offset after it."""
    if pos >= end:
        raise _error("missing field type")
    tag = buf[pos]
    pos += 1
    fixed = _FIXED.get(tag)
    if fixed is not None:
        stop = pos + fixed.size
        if stop > end:
            raise _error(f"value of type {chr(tag)!r} runs past the end of its container")
        return fixed.unpack_from(buf, pos)[0], stop
    if tag == 0x53:  # 'S'
        start, stop = _length_prefixed(buf, pos, end, "long string")
        return buf[start:stop].decode("utf-8", "replace"), stop
    if tag == 0x74:  # 't'
        if pos >= end:
            raise _error("boolean runs past the end of its container")
        return buf[pos] != 0, pos + 1
    if tag == 0x46:  # 'F'
        start, stop = _length_prefixed(buf, pos, end, "table")
        return _decode_table(buf, start, stop, depth + 1), stop
    if tag == 0x41:  # 'A'
        start, stop = _length_prefixed(buf, pos, end, "array")
        return _decode_array(buf, start, stop, depth + 1), stop
    if tag == 0x78:  # 'x'
        start, stop = _length_prefixed(buf, pos, end, "byte array")
        return buf[start:stop], stop
    if tag == 0x56:  # 'V'
        return None, pos
    if tag == 0x54:  # 'T'
        if pos + 8 > end:
            raise _error("timestamp runs past the end of its container")
        return Timestamp(_U64.unpack_from(buf, pos)[0]), pos + 8
    if tag == 0x44:  # 'D'
        if pos + 5 > end:
            raise _error("decimal runs past the end of its container")
        scale, unscaled = _DECIMAL.unpack_from(buf, pos)
        return Decimal(unscaled).scaleb(-scale), pos + 5
    raise _error(f"unknown field type 0x{tag:02X}")


# ---------------------------------------------------------------------------- encode


def encode_table(values: Mapping[str, FieldValue]) -> bytes:
    """Encode a field table's content (without the 4-byte length prefix).

    Raises ``ValueError``/``TypeError`` for a value that has no AMQP encoding (an
    integer outside signed 64 bits, a name longer than 255 bytes, ...): that is a bug
    in the caller, not a peer's fault.
    """
    out = bytearray()
    _encode_table_into(out, values, 0)
    return bytes(out)


def encode_long_string_entry(name: str, value: str) -> bytes:
    """One table entry ``name`` = long string ``value`` (type ``S``).

    Appending these to a table's content bytes adds entries without touching the bytes
    already there.
    """
    out = bytearray()
    _encode_name(out, name)
    encoded = value.encode("utf-8")
    out += b"S"
    out += _U32.pack(len(encoded))
    out += encoded
    return bytes(out)


def _encode_name(out: bytearray, name: str) -> None:
    encoded = name.encode("utf-8")
    if len(encoded) > 255:
        raise ValueError(f"field name longer than 255 bytes: {name[:40]!r}...")
    out += _U8.pack(len(encoded))
    out += encoded


def _encode_table_into(out: bytearray, values: Mapping[str, FieldValue], depth: int) -> None:
    if depth > MAX_NESTING:
        raise ValueError(f"field table nested deeper than {MAX_NESTING} levels")
    for name, value in values.items():
        _encode_name(out, name)
        _encode_value_into(out, value, depth)


def _encode_nested(out: bytearray, tag: bytes, body: bytearray) -> None:
    out += tag
    out += _U32.pack(len(body))
    out += body


def _encode_value_into(out: bytearray, value: object, depth: int) -> None:
    if value is None:
        out += b"V"
    elif isinstance(value, bool):
        out += b"t\x01" if value else b"t\x00"
    elif isinstance(value, Timestamp):
        out += b"T"
        out += _U64.pack(value)
    elif isinstance(value, int):
        if -(2**31) <= value < 2**31:
            out += b"I"
            out += _I32.pack(value)
        elif -(2**63) <= value < 2**63:
            out += b"l"
            out += _I64.pack(value)
        else:
            raise ValueError(f"integer {value} does not fit a signed 64-bit field")
    elif isinstance(value, float):
        out += b"d"
        out += _F64.pack(value)
    elif isinstance(value, Decimal):
        out += b"D"
        out += _encode_decimal(value)
    elif isinstance(value, str):
        encoded = value.encode("utf-8")
        out += b"S"
        out += _U32.pack(len(encoded))
        out += encoded
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        out += b"x"
        out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, _dt.datetime):
        out += b"T"
        out += _U64.pack(Timestamp.from_datetime(value))
    elif isinstance(value, list | tuple):
        if depth >= MAX_NESTING:
            raise ValueError(f"field array nested deeper than {MAX_NESTING} levels")
        body = bytearray()
        for item in value:
            _encode_value_into(body, item, depth + 1)
        _encode_nested(out, b"A", body)
    elif isinstance(value, Mapping):
        body = bytearray()
        _encode_table_into(body, value, depth + 1)
        _encode_nested(out, b"F", body)
    else:
        raise TypeError(f"no AMQP field type for {type(value).__name__}")


def _encode_decimal(value: Decimal) -> bytes:
    if not value.is_finite():
        raise ValueError(f"decimal {value} is not finite")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    unscaled = int("".join(map(str, digits)) or "0")
    if sign:
        unscaled = -unscaled
    if exponent > 0:
        unscaled *= 10**exponent
        exponent = 0
    scale = -exponent
    if scale > 255 or not -(2**31) <= unscaled < 2**31:
        raise ValueError(f"decimal {value} does not fit scale octet + signed 32-bit value")
    return _DECIMAL.pack(scale, unscaled)
