"""Frame boundaries of one direction of a relayed stream connection.

``StreamScanner`` has the interface the relay uses (``proxy.relay.FrameCounter``): it
walks size prefixes with offsets, counts whole frames, refuses a frame larger than the
cap before buffering anything, and notes Close requests and responses so the session
can tell a clean close from a cut. Only a frame's first six bytes (size and key) are ever
kept between reads.
"""

from __future__ import annotations

import struct

__all__ = ["StreamScanner"]

_SIZE_KEY = struct.Struct(">IH")
_HEADER = 6
_CLOSE = 0x0016
_CLOSE_RESPONSE = 0x8016


class StreamScanner:
    """Counts frames; ``feed`` returns -1, or the offset of the first bad frame."""

    __slots__ = (
        "_head",
        "_need",
        "close_ok_seen",
        "close_seen",
        "error",
        "frames",
        "max_frame",
    )

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self.frames = 0
        self.error = ""
        self._need = 0  # bytes of the current frame's body still to come
        self._head = b""  # the start of a header split across reads
        self.close_seen = False  # a Close request passed
        self.close_ok_seen = False  # a Close response passed

    @property
    def at_boundary(self) -> bool:
        return self._need == 0 and not self._head

    def feed(self, data: bytes) -> int:
        pos, n = 0, len(data)
        while pos < n:
            need = self._need
            if need:
                take = n - pos if n - pos < need else need
                self._need = need - take
                pos += take
                if not self._need:
                    self.frames += 1
                continue
            start = pos
            if self._head or n - pos < _HEADER:
                wanted = _HEADER - len(self._head)
                self._head += data[pos : pos + wanted]
                pos += min(wanted, n - pos)
                if len(self._head) < _HEADER:
                    return -1
                size, key = _SIZE_KEY.unpack(self._head)
                self._head = b""
                start = 0
            else:
                size, key = _SIZE_KEY.unpack_from(data, pos)
                pos += _HEADER
            if size > self.max_frame or size < 4:
                self.error = (
                    f"frame of {size} bytes exceeds the maximum of {self.max_frame}"
                    if size > self.max_frame
                    else f"frame of {size} bytes is shorter than its header"
                )
                return start
            if key == _CLOSE:
                self.close_seen = True
            elif key == _CLOSE_RESPONSE:
                self.close_ok_seen = True
            self._need = size - 2
        return -1

    def boundary_offset(self, data: bytes) -> int:
        """Where in ``data`` the frame under way ends (0 at a boundary), or -1 if beyond."""
        if self.at_boundary:
            return 0
        if self._head:
            missing = _HEADER - len(self._head)
            if len(data) < missing:
                return -1
            size = _SIZE_KEY.unpack(self._head + data[:missing])[0]
            end = missing + size - 2
        else:
            end = self._need
        return end if end <= len(data) else -1
