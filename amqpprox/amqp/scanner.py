"""Frame-boundary scanner for the relay's hot path (sans-IO).

After the handshake the proxy forwards bytes as they arrive; this scanner walks the
same bytes with offsets to count complete frames, enforce the frame-size bound and the
0xCE end octet (AMQP 0-9-1 §4.2.3), and spot channel-0 ``Connection.Close`` and
``Connection.CloseOk``, without allocating an object per frame. It never buffers more
than the few header bytes of a frame split across two reads.

Two implementations of the same walk: the C extension ``_framescan`` (built by
``pip install`` when a compiler is there) and the Python one here, its reference and
fallback. ``AMQPPROX_NO_EXTENSIONS`` (set, and neither empty nor ``0``; read at import)
makes this module ignore the extension even when it was built; :data:`IMPLEMENTATION`
says which one the relay runs, ``"c"`` or ``"python"``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from struct import Struct
from typing import Protocol

_IDS = Struct(">HH")  # class-id, method-id: the first bytes of a method frame's payload
_FRAME_HEAD = Struct(">BHI")
_CHANNEL_SIZE = Struct(">xHI")  # a frame header without its type octet
_END = 0xCE
_METHOD = 1
_CONNECTION_CLASS = 10
CLOSE_METHOD = 50
CLOSE_OK_METHOD = 51


DONE, PARTIAL, TOO_BIG, BAD_END = 0, 1, 2, 3
ScanResult = tuple[int, int, int, int, int, int]


def scan_py(data: bytes, pos: int, max_size: int) -> ScanResult:
    """Walk whole frames of ``data`` from ``pos``; see ``_framescan.c`` for the contract.

    Returns (status, pos, frames, need, close_flags, close_offset). The C extension does
    the same walk without an interpreter step per frame; this is its reference and the
    fallback when it is not built.
    """
    n = len(data)
    frames = need = close_flags = 0
    close_offset = -1
    status = DONE
    unpack = _CHANNEL_SIZE.unpack_from
    end_octet = _END
    last_header = n - 7  # the last offset at which a whole 7-byte header fits
    while pos <= last_header:
        channel, size = unpack(data, pos)
        if size > max_size:
            status = TOO_BIG
            break
        # A payload under 4 bytes has no class and method ids: it cannot be a Close.
        if channel == 0 and data[pos] == _METHOD and size >= 4:
            if n - pos < 11:
                break  # DONE: keep the header until its method ids arrive
            class_id, method_id = _IDS.unpack_from(data, pos + 7)
            if class_id == _CONNECTION_CLASS and method_id in (CLOSE_METHOD, CLOSE_OK_METHOD):
                close_flags |= 1 if method_id == CLOSE_METHOD else 2
                close_offset = pos
        end = pos + 7 + size  # the end octet's offset
        if end >= n:
            status = PARTIAL
            need = end + 1 - n
            break
        if data[end] != end_octet:
            status = BAD_END
            break
        frames += 1
        pos = end + 1
    return status, pos, frames, need, close_flags, close_offset


class Scanner(Protocol):
    """What the relay uses of a frame scanner: :class:`PyFrameScanner` or the C type."""

    close_seen: bool  # the session clears both when it starts a close of its own
    close_ok_seen: bool

    @property
    def max_frame(self) -> int: ...
    @property
    def frames(self) -> int: ...
    @property
    def close_offset(self) -> int: ...
    @property
    def error(self) -> str: ...
    @property
    def at_boundary(self) -> bool: ...

    def feed(self, data: bytes, /) -> int: ...

    def boundary_offset(self, data: bytes, /) -> int: ...


class PyFrameScanner:
    """Counts frames in one direction of a relayed connection.

    ``feed`` returns -1 when every byte was valid, otherwise the offset in ``data`` at
    which the offending frame starts (the caller forwards ``data[:offset]`` and ends the
    session); ``error`` then says what was wrong.

    The reference for ``_framescan.FrameScanner`` (the same state and ``feed`` in C, one
    call per read) and the fallback when the extension is not built.
    """

    __slots__ = (
        "_head",
        "_need",
        "_walk",
        "close_offset",
        "close_ok_seen",
        "close_seen",
        "error",
        "frames",
        "max_frame",
    )

    def __init__(
        self, max_frame: int, walk: Callable[[bytes, int, int], ScanResult] | None = None
    ) -> None:
        self.max_frame = max_frame  # largest whole frame, overhead included
        self._walk = walk or scan  # tests pass scan_py to check it against the C walk
        self.frames = 0
        self.close_seen = False
        self.close_ok_seen = False
        self.error = ""
        # Offset, in the bytes last fed, of the latest channel-0 Close/CloseOk frame
        # (negative when its first bytes came in the previous read).
        self.close_offset = 0
        self._need = 0  # bytes still to come of the current frame, end octet included
        self._head = b""  # leading bytes of a frame whose header was split across reads

    @property
    def at_boundary(self) -> bool:
        return self._need == 0 and not self._head

    def feed(self, data: bytes) -> int:
        head = self._head
        base = 0
        if head:
            # Rare: a header split across reads. Scan the joined bytes, report offsets in ``data``.
            base = len(head)
            data = head + data
            self._head = b""
        pos = 0
        frames = 0
        need = self._need
        if need:  # the rest of a frame whose header came in an earlier read
            if need > len(data):
                self._need = need - len(data)
                return -1
            self._need = 0
            if data[need - 1] != _END:
                self.error = "frame end octet is not 0xCE"
                return 0
            pos = need
            frames = 1
        status, pos, walked, need, close_flags, close_at = self._walk(data, pos, self.max_frame - 8)
        self.frames += frames + walked
        if close_flags:
            if close_flags & 1:
                self.close_seen = True
            if close_flags & 2:
                self.close_ok_seen = True
            self.close_offset = close_at - base
        if status == DONE:
            if pos < len(data):
                self._head = data[pos:]
            return -1
        if status == PARTIAL:
            self._need = need
            return -1
        if status == TOO_BIG:
            size = _FRAME_HEAD.unpack_from(data, pos)[2]
            self.error = f"frame of {size + 8} bytes exceeds frame-max {self.max_frame}"
        else:
            self.error = "frame end octet is not 0xCE"
        return max(0, pos - base)

    def boundary_offset(self, data: bytes) -> int:
        """Offset in ``data`` where the frame in progress ends (0 at a boundary), or -1.

        Used before injecting a frame of our own or switching to a full parser: the bytes
        before the offset still belong to a frame the peer has partly received.
        """
        if self.at_boundary:
            return 0
        if self._head:
            joined = self._head + data[:16]
            if len(joined) < 7:
                return -1
            size = _FRAME_HEAD.unpack_from(joined)[2]
            end = size + 8 - len(self._head)
            return end if end <= len(data) else -1
        return self._need if self._need <= len(data) else -1


NO_EXTENSIONS_ENV = "AMQPPROX_NO_EXTENSIONS"


def extensions_disabled() -> bool:
    """True when ``AMQPPROX_NO_EXTENSIONS`` is set to anything but ``""`` or ``"0"``."""
    return os.environ.get(NO_EXTENSIONS_ENV, "") not in ("", "0")


# What sessions construct and the walk PyFrameScanner uses by default: the C ones when
# the extension is built and not switched off.
FrameScanner: Callable[[int], Scanner] = PyFrameScanner
scan: Callable[[bytes, int, int], ScanResult] = scan_py
IMPLEMENTATION = "python"
if not extensions_disabled():
    try:
        from amqpprox.amqp import _framescan
    except ImportError:  # not built (no compiler at install time): the walk in Python
        pass
    else:
        FrameScanner, scan, IMPLEMENTATION = _framescan.FrameScanner, _framescan.scan, "c"
