"""On-demand AMQP traces: what is traced, the events kept, who reads them, when it stops.

A ``Trace`` selects sessions by one ``TraceFilter`` (a session id, a vhost, or a client
address) and keeps the frames of those sessions as raw events in a bounded ring
(``BUFFER_EVENTS``, the latest ones, within ``BUFFER_BYTES`` of payloads;
``?format=jsonl`` reads it). Live readers (an SSE
stream, the trace file) each get a ``TraceReader``: a bounded queue of their own; a
reader that falls behind loses events, counted in its and the trace's ``dropped``, and
the session's bytes are never held up. Events are decoded (``amqp.trace_decode``) only
when a reader takes them, so recording one costs the relay a tuple and a few appends.

A trace stops by itself after ``max_frames`` events or ``max_seconds``, when its one
session ends, or when asked; ``stop_reason`` says which. The data plane learns of starts
and stops through ``TraceRegistry.on_start``/``on_stop`` (it attaches and removes its
frame taps, ``proxy.trace_tap``), and asks ``matching`` once per session, at
Connection.Open, and only while a trace runs. No I/O here but the owned writer tasks of
trace files (``core.trace_file``).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amqpprox.amqp.trace_decode import decode_frame
from amqpprox.core.sessions import SessionBase

__all__ = [
    "BUFFER_EVENTS",
    "CLIENT_TO_BROKER",
    "DIRECTIONS",
    "READER_EVENTS",
    "RawEvent",
    "StopReason",
    "Trace",
    "TraceFilter",
    "TraceOptions",
    "TraceReader",
    "TraceRegistry",
    "TraceState",
]

CLIENT_TO_BROKER = 0
BROKER_TO_CLIENT = 1
DIRECTIONS = ("client_to_broker", "broker_to_client")
BUFFER_EVENTS = 10_000  # the latest events of a trace, kept for ?format=jsonl ...
BUFFER_BYTES = 16 << 20  # ... as long as their payloads fit in this
READER_EVENTS = 2_000  # events one live reader may be behind before it loses some ...
READER_BYTES = 8 << 20  # ... or payload bytes
STOPPED_KEPT = 32  # stopped traces kept listed (and readable), the oldest forgotten first

# (unix time, session id, direction, frame type, channel, payload kept, payload size)
RawEvent = tuple[float, int, int, int, int, bytes, int]


class TraceState(enum.Enum):
    RUNNING = "running"
    STOPPED = "stopped"


class StopReason(enum.Enum):
    REQUESTED = "requested"  # TRACE STOP, DELETE, the dashboard's stop button
    MAX_FRAMES = "max_frames"
    MAX_SECONDS = "max_seconds"
    SESSION_ENDED = "session_ended"  # the one session a session trace follows ended
    FILE_ERROR = "file_error"  # its file could not be written
    SHUTDOWN = "shutdown"


@dataclass(frozen=True, slots=True)
class TraceFilter:
    """Which sessions a trace follows: exactly one of a session id, a vhost, a client IP."""

    session: int | None = None
    vhost: str | None = None
    source: str | None = None

    def matches(self, session: SessionBase) -> bool:
        """Whether ``session`` is followed: AMQP 0-9-1 sessions only (streams are not decoded)."""
        if session.protocol != "amqp":
            return False
        if self.session is not None:
            return session.id == self.session
        if self.vhost is not None:
            return session.vhost == self.vhost
        return session.client[0] == self.source

    def json(self) -> dict[str, Any]:
        if self.session is not None:
            return {"session": self.session}
        if self.vhost is not None:
            return {"vhost": self.vhost}
        return {"source": self.source}

    def text(self) -> str:
        """As TRACE PRINT shows it (the caller escapes the vhost)."""
        if self.session is not None:
            return f"SESSION {self.session}"
        if self.vhost is not None:
            return f"VHOST {self.vhost}"
        return f"SOURCE {self.source}"


@dataclass(frozen=True, slots=True)
class TraceOptions:
    bodies: bool = False
    body_bytes: int = 256
    max_frames: int = 10_000
    max_seconds: float = 300.0
    file: str | None = None

    @property
    def body_keep(self) -> int:
        """How many bytes of each body frame to keep."""
        return self.body_bytes if self.bodies else 0


class TraceReader:
    """One live reader's queue of a trace's events (an SSE stream, a trace file)."""

    def __init__(self, trace: Trace, limit: int = READER_EVENTS) -> None:
        self.trace = trace
        self.queue: deque[RawEvent] = deque()
        self.limit = limit
        self.queued_bytes = 0
        self.dropped = 0
        self.closed = False  # the trace stopped: what is queued is the last of it
        self._wake = asyncio.Event()

    def push_many(self, events: list[RawEvent]) -> None:
        """Queue what fits of ``events``; count the rest as dropped."""
        room = self.limit - len(self.queue) if self.queued_bytes <= READER_BYTES else 0
        kept = events if len(events) <= room else events[: max(0, room)]
        lost = len(events) - len(kept)
        if lost:
            self.dropped += lost
            self.trace.dropped += lost
            self.trace.registry.dropped_total += lost
        if kept:
            self.queue.extend(kept)
            self.queued_bytes += sum([len(e[5]) for e in kept])
            if not self._wake.is_set():
                self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def wait(self, timeout: float | None = None) -> None:
        """Until there is something to read, the trace stopped, or ``timeout`` passed."""
        if self.queue or self.closed:
            return
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            return

    def take(self, most: int = 500) -> list[dict[str, Any]]:
        """Up to ``most`` queued events, decoded."""
        out: list[dict[str, Any]] = []
        trace = self.trace
        while self.queue and len(out) < most:
            event = self.queue.popleft()
            self.queued_bytes -= len(event[5])
            out.append(trace.decode(event))
        return out

    def detach(self) -> None:
        self.trace.readers.discard(self)


class Trace:
    """One trace: its filter, options, counters and events."""

    def __init__(
        self, registry: TraceRegistry, trace_id: int, flt: TraceFilter, options: TraceOptions
    ) -> None:
        self.registry = registry
        self.id = trace_id
        self.filter = flt
        self.options = options
        self.state = TraceState.RUNNING
        self.started_at = time.time()
        self.stopped_at: float | None = None
        self.stop_reason: StopReason | None = None
        self.stop_detail = ""
        self.frames = 0
        self.dropped = 0
        self.sessions: set[int] = set()  # ids of the sessions it has traced
        self.buffer: deque[RawEvent] = deque()
        self.buffered_bytes = 0
        self.readers: set[TraceReader] = set()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self.state is TraceState.RUNNING

    def record(self, event: RawEvent) -> None:
        """One frame of a traced session."""
        self.record_many([event])

    def record_many(self, events: list[RawEvent]) -> None:
        """The frames of one read of a traced session (the frame tap calls this per read)."""
        if self.state is not TraceState.RUNNING:
            return
        room = self.options.max_frames - self.frames
        if len(events) > room:
            events = events[:room]
        count = len(events)
        self.frames += count
        self.registry.events_total += count
        buffer = self.buffer
        buffer.extend(events)
        self.buffered_bytes += sum([len(e[5]) for e in events])
        while len(buffer) > BUFFER_EVENTS or self.buffered_bytes > BUFFER_BYTES:
            self.buffered_bytes -= len(buffer.popleft()[5])
        for reader in self.readers:
            reader.push_many(events)
        if self.frames >= self.options.max_frames:
            self.registry.stop(self.id, StopReason.MAX_FRAMES)

    def decode(self, event: RawEvent) -> dict[str, Any]:
        at, session_id, direction, frame_type, channel, payload, size = event
        decoded = decode_frame(frame_type, channel, payload, size)
        return {
            "trace": self.id,
            "time": at,
            "session": session_id,
            "direction": DIRECTIONS[direction],
            **decoded,
        }

    def buffered(self) -> list[dict[str, Any]]:
        return [self.decode(event) for event in list(self.buffer)]

    def reader(self, limit: int = READER_EVENTS) -> TraceReader:
        reader = TraceReader(self, limit)
        if self.state is TraceState.RUNNING:
            self.readers.add(reader)
        else:
            reader.close()
        return reader

    def json(self) -> dict[str, Any]:
        options = self.options
        return {
            "id": self.id,
            "filter": self.filter.json(),
            "state": self.state.value,
            "bodies": options.bodies,
            "body_bytes": options.body_bytes,
            "max_frames": options.max_frames,
            "max_seconds": options.max_seconds,
            "file": options.file,
            "frames": self.frames,
            "dropped": self.dropped,
            "buffered": len(self.buffer),
            "sessions": sorted(self.sessions),
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "stop_reason": self.stop_reason.value if self.stop_reason else None,
            "stop_detail": self.stop_detail or None,
        }


class TraceRegistry:
    """Every trace of the process: running ones and the latest stopped ones."""

    def __init__(self) -> None:
        self._traces: dict[int, Trace] = {}
        self._next_id = 1
        self.events_total = 0
        self.dropped_total = 0
        # The data plane's hooks: attach taps to matching sessions; remove them.
        self.on_start: list[Callable[[Trace], None]] = []
        self.on_stop: list[Callable[[Trace], None]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        # Traces running now: a plain int the data plane reads twice per connection.
        self.running_count = 0

    def all(self) -> list[Trace]:
        return sorted(self._traces.values(), key=lambda t: t.id)

    def get(self, trace_id: int) -> Trace | None:
        return self._traces.get(trace_id)

    @property
    def running(self) -> list[Trace]:
        return [t for t in self._traces.values() if t.state is TraceState.RUNNING]

    @property
    def active(self) -> int:
        return sum(1 for t in self._traces.values() if t.state is TraceState.RUNNING)

    def start(self, flt: TraceFilter, options: TraceOptions) -> Trace:
        trace = Trace(self, self._next_id, flt, options)
        self._next_id += 1
        self._traces[trace.id] = trace
        self.running_count += 1
        self._forget_old()
        loop = asyncio.get_running_loop()
        trace._timer = loop.call_later(
            options.max_seconds, self.stop, trace.id, StopReason.MAX_SECONDS
        )
        for hook in self.on_start:
            hook(trace)
        return trace

    def stop(self, trace_id: int, reason: StopReason, detail: str = "") -> Trace | None:
        trace = self._traces.get(trace_id)
        if trace is None or trace.state is not TraceState.RUNNING:
            return trace
        trace.state = TraceState.STOPPED
        self.running_count -= 1
        trace.stopped_at = time.time()
        trace.stop_reason = reason
        trace.stop_detail = detail
        if trace._timer is not None:
            trace._timer.cancel()
            trace._timer = None
        for reader in list(trace.readers):
            reader.close()
        trace.readers.clear()
        for hook in self.on_stop:
            hook(trace)
        return trace

    def matching(self, session: SessionBase) -> list[Trace]:
        """The running traces that follow ``session`` (asked at its Connection.Open)."""
        return [t for t in self._traces.values() if t.running and t.filter.matches(session)]

    def session_ended(self, session_id: int) -> None:
        """A session trace whose session ended stops with it."""
        for trace in self.running:
            if trace.filter.session == session_id:
                self.stop(trace.id, StopReason.SESSION_ENDED)

    def own(self, task: asyncio.Task[None]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def shutdown(self) -> None:
        for trace in self.running:
            self.stop(trace.id, StopReason.SHUTDOWN)
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    def _forget_old(self) -> None:
        stopped = [t for t in self._traces.values() if t.state is TraceState.STOPPED]
        for trace in sorted(stopped, key=lambda t: t.id)[: max(0, len(stopped) - STOPPED_KEPT)]:
            del self._traces[trace.id]
