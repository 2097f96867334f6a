"""AMQP 0-9-1 general frame format: constants, encoder and an incremental reader.

Owns: the frame layout of AMQP 0-9-1 §2.3.5 / §4.2.3 (type octet, channel short,
size long, payload, 0xCE end octet), the protocol headers (§4.2.2), the
:class:`Frame` value, the :data:`NEED_DATA` sentinel and :class:`FrameReader`.
It knows nothing about what a payload means. Sans-IO: imports no asyncio, socket or
ssl and nothing of ours outside ``amqpprox.amqp``.
"""

from __future__ import annotations

import enum
from struct import Struct
from typing import Final, NamedTuple

from amqpprox.amqp.errors import FRAME_ERROR, ProtocolError

__all__ = [
    "FRAME_BODY",
    "FRAME_END",
    "FRAME_HEADER",
    "FRAME_HEARTBEAT",
    "FRAME_METHOD",
    "FRAME_OVERHEAD",
    "FRAME_TYPES",
    "HEARTBEAT_FRAME",
    "LEGACY_PROTOCOL_HEADER",
    "NEED_DATA",
    "PROTOCOL_HEADER",
    "Frame",
    "FrameReader",
    "NeedData",
    "encode_frame",
]

FRAME_METHOD: Final = 1
FRAME_HEADER: Final = 2
FRAME_BODY: Final = 3
FRAME_HEARTBEAT: Final = 8
FRAME_TYPES: Final = frozenset({FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT})
FRAME_END: Final = 0xCE
# 7-byte header (type, channel, size) plus the end octet.
FRAME_OVERHEAD: Final = 8
_HEADER_SIZE: Final = 7

PROTOCOL_HEADER: Final = b"AMQP\x00\x00\x09\x01"
# The 0-9 style header (class 1, instance 1, version 0-9) that some old clients send.
LEGACY_PROTOCOL_HEADER: Final = b"AMQP\x01\x01\x00\x09"

_FRAME_HEAD: Final = Struct(">BHI")
_END_BYTE: Final = bytes([FRAME_END])

# Compact the read buffer only once this many consumed bytes sit in front of it, so a
# stream of small frames costs one memmove per feed at most, not one per frame.
_COMPACT_AT: Final = 65536


class NeedData(enum.Enum):
    """Type of :data:`NEED_DATA`: the single value "not enough bytes yet"."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA


class Frame(NamedTuple):
    """One complete frame; ``payload`` excludes the header and the end octet."""

    type: int
    channel: int
    payload: bytes


def encode_frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    """Return the wire bytes of one frame."""
    return _FRAME_HEAD.pack(frame_type, channel, len(payload)) + payload + _END_BYTE


HEARTBEAT_FRAME: Final = encode_frame(FRAME_HEARTBEAT, 0, b"")


# Builds a Frame without NamedTuple's __new__, a Python-level call per frame.
_new_frame = tuple.__new__


class FrameReader:
    """Incremental frame parser over a byte stream.

    ``feed`` appends bytes; ``next_frame`` returns the next complete :class:`Frame`
    or :data:`NEED_DATA`. Call ``next_frame`` until it returns ``NEED_DATA`` after
    every ``feed``: then at most one partial frame (never more than
    ``max_frame_size`` bytes) plus the last chunk is ever held. A frame whose declared
    size exceeds the cap is rejected as soon as its 7-byte header is visible, before
    any of its body is waited for.

    Raises :class:`ProtocolError` 501 (FRAME_ERROR) for an unknown frame type, an
    oversize frame or an end octet other than 0xCE. After an error the stream cannot
    be re-synchronised; the reader should be discarded.
    """

    __slots__ = ("_buf", "_pos", "max_frame_size")

    def __init__(self, max_frame_size: int = 131072) -> None:
        if max_frame_size < FRAME_OVERHEAD:
            raise ValueError(f"max_frame_size must be at least {FRAME_OVERHEAD}")
        # Largest whole frame accepted, the 8 bytes of overhead included.
        self.max_frame_size = max_frame_size
        # A read fed while nothing is held is kept as it came (bytes, no copy): a
        # handshake's reads are mostly whole frames. Only a remainder that more bytes
        # must join becomes a bytearray.
        self._buf: bytes | bytearray = b""
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Number of bytes fed but not yet returned as frames."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        buf, pos = self._buf, self._pos
        if pos == len(buf):  # nothing held
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
            return
        if isinstance(buf, bytes):  # a kept read's remainder, joined by more
            self._buf = bytearray(buf[pos:])
            self._pos = 0
        elif pos >= _COMPACT_AT:
            del buf[:pos]
            self._pos = 0
        self._buf += data

    def next_frame(self) -> Frame | NeedData:
        buf = self._buf
        pos = self._pos
        available = len(buf)
        if available - pos < _HEADER_SIZE:
            return NEED_DATA
        frame_type, channel, size = _FRAME_HEAD.unpack_from(buf, pos)
        if frame_type not in FRAME_TYPES:
            raise ProtocolError(FRAME_ERROR, f"unknown frame type {frame_type}")
        if size > self.max_frame_size - FRAME_OVERHEAD:
            raise ProtocolError(
                FRAME_ERROR,
                f"frame of {size + FRAME_OVERHEAD} bytes exceeds the maximum of "
                f"{self.max_frame_size}",
            )
        end = pos + _HEADER_SIZE + size  # index of the end octet
        if available <= end:
            return NEED_DATA
        if buf[end] != FRAME_END:
            raise ProtocolError(FRAME_ERROR, f"frame end octet is 0x{buf[end]:02X}, not 0xCE")
        payload = bytes(buf[pos + _HEADER_SIZE : end])
        self._pos = end + 1
        return _new_frame(Frame, (frame_type, channel, payload))

    def take_buffered(self) -> bytes:
        """Return and forget every byte fed but not yet parsed into a frame."""
        rest = bytes(self._buf[self._pos :])
        self._buf = b""
        self._pos = 0
        return rest
