"""The broker-to-client chain of a stream session: ``Metadata`` responses rewritten.

``MetadataRewriter`` sits in front of the relay's broker entry point. It walks frame
headers with offsets and passes every frame through untouched (no copy), except a
``Metadata`` response, which it holds until whole and hands on with each broker
endpoint replaced by the proxy's (``stream_nodes.NodeBook``). ``MetadataUpdate`` and
every other command pass unchanged.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

from amqpprox.stream import codec

log = logging.getLogger("amqpprox.stream")

__all__ = ["MetadataRewriter"]

_SIZE_KEY = struct.Struct(">IH")
_HEADER = 6
_METADATA_RESPONSE = codec.METADATA | codec.RESPONSE


class MetadataRewriter:
    """Forwards broker bytes to ``sink``, Metadata responses rewritten by ``where``."""

    __slots__ = ("_head", "_hold", "_hold_need", "_need", "max_frame", "sink", "where")

    def __init__(
        self,
        sink: Callable[[bytes], None],
        where: Callable[[str, int], tuple[str, int]],
        max_frame: int,
    ) -> None:
        self.sink = sink
        self.where = where
        self.max_frame = max_frame
        self._need = 0  # bytes of a passed-through frame still to come
        self._head = b""  # a header split across reads, not yet forwarded
        self._hold: bytearray | None = None  # a Metadata response being gathered
        self._hold_need = 0

    def __call__(self, data: bytes) -> None:
        pos, n, start = 0, len(data), 0
        sink = self.sink
        while pos < n:
            if self._hold is not None:
                take = min(self._hold_need, n - pos)
                self._hold += data[pos : pos + take]
                pos += take
                self._hold_need -= take
                if not self._hold_need:
                    sink(self._rewritten(bytes(self._hold)))
                    self._hold = None
                start = pos
                continue
            need = self._need
            if need:
                take = n - pos if n - pos < need else need
                self._need = need - take
                pos += take
                continue
            if self._head or n - pos < _HEADER:
                if pos > start:
                    sink(data[start:pos])
                wanted = _HEADER - len(self._head)
                self._head += data[pos : pos + wanted]
                pos += min(wanted, n - pos)
                start = pos
                if len(self._head) < _HEADER:
                    return
                head, self._head = self._head, b""
                size, key = _SIZE_KEY.unpack(head)
                if key == _METADATA_RESPONSE and size <= self.max_frame:
                    self._hold, self._hold_need = bytearray(head), size - 2
                    continue
                sink(head)
                self._need = max(0, size - 2)
                continue
            size, key = _SIZE_KEY.unpack_from(data, pos)
            if key == _METADATA_RESPONSE and size <= self.max_frame:
                if pos > start:
                    sink(data[start:pos])
                self._hold, self._hold_need = bytearray(), size + 4
                start = pos
                continue
            pos += _HEADER
            self._need = max(0, size - 2)  # a bad size is the relay scanner's to report
        if pos > start:
            sink(data[start:pos] if start else data)

    def _rewritten(self, whole: bytes) -> bytes:
        """A whole Metadata response frame (size prefix included), endpoints replaced."""
        try:
            body = codec.rewrite_metadata_response(whole[8:], self.where)
        except codec.StreamProtocolError as error:
            log.warning("stream: unreadable Metadata response passed as is: %s", error)
            return whole
        return codec.frame(whole[4:8] + body)
