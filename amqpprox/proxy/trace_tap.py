"""The frame tap of a traced session: every frame both ways, into its traces' buffers.

Only traced sessions have one. ``TraceTap.wrap`` puts a reader in front of the relay's
two entry points (through ``Session.rewire``, as shaping and coalescing do), so the
relay of every other session is untouched. Each read is relayed first, then walked for
frame boundaries here; a completed frame becomes one ``core.traces.RawEvent`` per trace
following the session (method and header payloads whole, a body's first bytes only when
a trace asked for bodies). Decoding waits until a reader reads. A tap attached to a
session already live starts at the next frame boundary the relay's scanner knows of.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from amqpprox.core.traces import BROKER_TO_CLIENT, CLIENT_TO_BROKER

if TYPE_CHECKING:
    from amqpprox.core.traces import RawEvent, Trace
    from amqpprox.proxy.relay import FrameCounter

__all__ = ["TraceTap"]

_HEAD = struct.Struct(">BHI")
_BODY = 3
# A frame larger than this is not followed (the relay refuses it anyway): the tap stops.
_MAX_FRAME = 1 << 28
# A method or content header payload longer than this is not kept (its event says so):
# the traces' memory stays bounded whatever the peers send.
KEEP_LIMIT = 64 << 10
_time = time.time
Entry = Callable[[bytes], None]


class _Walk:
    """One direction's frame walk: the header being read, the payload kept, what is left."""

    __slots__ = (
        "broken",
        "channel",
        "direction",
        "ftype",
        "head",
        "keep",
        "left",
        "payload",
        "size",
        "synced",
        "tap",
    )

    def __init__(self, tap: TraceTap, direction: int) -> None:
        self.tap = tap
        self.direction = direction
        self.synced = False  # at a frame boundary once; until then nothing is walked
        self.broken = False
        self.head = b""
        self.ftype = self.channel = self.size = self.keep = self.left = 0
        self.payload = bytearray()

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        now = _time()  # every frame of one read arrived at the same moment
        tap = self.tap
        session_id, direction = tap.session_id, self.direction
        events: list[RawEvent] = []
        while pos < end:
            if not self.left:  # a frame header
                head = self.head
                if not head and end - pos >= 7:
                    ftype, channel, size = _HEAD.unpack_from(data, pos)
                    if pos + 8 + size <= end and size <= _MAX_FRAME:
                        # The common case: the whole frame is in this read.
                        keep = min(size, KEEP_LIMIT if ftype != _BODY else tap.body_keep)
                        start = pos + 7
                        events.append(
                            (now, session_id, direction, ftype, channel,
                             data[start : start + keep], size)
                        )  # fmt: skip
                        pos = start + size + 1
                        continue
                    self.ftype, self.channel = ftype, channel
                    pos += 7
                else:
                    taken = data[pos : pos + 7 - len(head)]
                    head += taken
                    pos += len(taken)
                    if len(head) < 7:
                        self.head = head
                        break
                    self.head = b""
                    self.ftype, self.channel, size = _HEAD.unpack(head)
                if size > _MAX_FRAME:
                    self.broken = True
                    break
                self.size = size
                self.left = size + 1  # the payload and the frame-end octet
                self.keep = min(size, KEEP_LIMIT if self.ftype != _BODY else tap.body_keep)
                self.payload = bytearray()
            take = min(self.left, end - pos)
            done = self.size + 1 - self.left  # payload octets already passed
            if done < self.keep:
                self.payload += data[pos : pos + min(take, self.keep - done)]
            pos += take
            self.left -= take
            if not self.left:
                payload = bytes(self.payload)
                events.append(
                    (now, session_id, direction, self.ftype, self.channel, payload, self.size)
                )
        if events:
            tap.emit(events)


class TraceTap:
    """The traces following one session, and its two frame walks."""

    def __init__(self, session_id: int) -> None:
        self.session_id = session_id
        self.traces: list[Trace] = []
        self.body_keep = 0
        self._walks = (_Walk(self, CLIENT_TO_BROKER), _Walk(self, BROKER_TO_CLIENT))

    def add(self, trace: Trace) -> None:
        if trace not in self.traces:
            self.traces.append(trace)
            trace.sessions.add(self.session_id)
            self.body_keep = max(t.options.body_keep for t in self.traces)

    def remove(self, trace: Trace) -> None:
        if trace in self.traces:
            self.traces.remove(trace)
        self.body_keep = max((t.options.body_keep for t in self.traces), default=0)

    def emit(self, events: list[RawEvent]) -> None:
        """The frames of one read, to every trace following the session."""
        for trace in list(self.traces):
            trace.record_many(events)

    def wrap(
        self, entries: tuple[Entry, Entry], scanners: tuple[FrameCounter, FrameCounter]
    ) -> tuple[Entry, Entry]:
        """The relay's client and broker entry points, each with its frame walk after it."""
        return (
            _tapped(self._walks[0], entries[0], scanners[0]),
            _tapped(self._walks[1], entries[1], scanners[1]),
        )


def _tapped(walk: _Walk, entry: Entry, scanner: FrameCounter) -> Entry:
    def read(data: bytes) -> None:
        if walk.synced:
            entry(data)
            if not walk.broken:
                walk.feed(data)
            return
        cut = scanner.boundary_offset(data)  # before the relay moves the scanner on
        entry(data)
        if cut >= 0:
            walk.synced = True
            walk.feed(data[cut:])

    return read
