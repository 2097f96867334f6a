"""Helpers of the reliability tests: a healthy client, the wire outcome, leak baselines.

* ``HealthyClient``: an aio-pika connection through the proxy that publishes (with
  confirms) and consumes (manual acks) one message at a time for as long as a test
  runs, recording each round trip; it must see no error while hostile peers do their
  worst on other connections.
* ``outcome``: what a scripted client finally got: the proxy's protocol header, a
  ``Connection.Close`` (its code) or a bare close/reset.
* ``Baseline``/``back_to_baseline``: sessions (after ``cleanup_once``), the proxy's own
  asyncio tasks, the process's file descriptors and live ``Session`` objects all return
  to what they were before the test; and the close reasons counted meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aio_pika

from amqpprox.amqp.errors import ProtocolError
from amqpprox.amqp.frames import PROTOCOL_HEADER, FrameReader, NeedData
from amqpprox.amqp.methods import ConnectionClose, decode_method
from amqpprox.core.sessions import CloseReason
from amqpprox.proxy.session import Session
from amqpprox.runtime import Runtime
from tests.polling import until


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def raise_fd_limit(wanted: int) -> None:
    """Raise RLIMIT_NOFILE (soft) towards ``wanted`` as far as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def proxy_tasks() -> int:
    """The running tasks whose coroutine is amqpprox code (connect tasks, control clients)."""
    count = 0
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and "/amqpprox/" in code.co_filename:
            count += 1
    return count


def _flatten_captured_log_records() -> None:
    """pytest keeps each log record, and a record's args may hold an exception whose
    traceback holds a session's frame: render them to text so they pin nothing."""
    for handler in logging.getLogger().handlers:
        for record in getattr(handler, "records", ()):
            if record.args:
                record.msg, record.args = record.getMessage(), None
            record.exc_info = None


def live_session_objects() -> int:
    _flatten_captured_log_records()
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, Session))


@dataclass
class Baseline:
    sessions: int
    tasks: int
    fds: int
    objects: int
    reasons: Counter[CloseReason] = field(default_factory=Counter)


def baseline(runtime: Runtime) -> Baseline:
    runtime.cleanup_once()
    return Baseline(
        len(runtime.ctx.sessions),
        proxy_tasks(),
        fd_count(),
        live_session_objects(),
        Counter(runtime.ctx.sessions.removed.by_reason),
    )


async def back_to_baseline(
    runtime: Runtime, base: Baseline, timeout: float = 15.0
) -> Counter[CloseReason]:
    """Wait until nothing the test made is left; return the close reasons counted since."""

    def settled() -> bool:
        runtime.cleanup_once()
        return (
            len(runtime.ctx.sessions) <= base.sessions
            and proxy_tasks() <= base.tasks
            and fd_count() <= base.fds
        )

    try:
        await until(settled, "sessions, tasks and file descriptors back to baseline", timeout)
    except AssertionError as error:
        now = (len(runtime.ctx.sessions), proxy_tasks(), fd_count())
        then = (base.sessions, base.tasks, base.fds)
        raise AssertionError(f"{error}: (sessions, proxy tasks, fds) {now} vs {then}") from None
    objects = live_session_objects()
    if objects > base.objects:
        _explain_live_sessions(runtime)
    assert objects <= base.objects, f"{objects - base.objects} Session objects still alive"
    counted = Counter(runtime.ctx.sessions.removed.by_reason)
    counted.subtract(base.reasons)
    return +counted


def _explain_live_sessions(runtime: Runtime) -> None:
    import sys  # noqa: PLC0415

    registered = {id(s) for s in runtime.ctx.sessions}
    here = sys._getframe()
    for obj in gc.get_objects():
        if isinstance(obj, Session) and id(obj) not in registered:
            chain: list[object] = [obj]
            for _ in range(6):
                refs = [
                    r
                    for r in gc.get_referrers(chain[-1])
                    if r is not here and not isinstance(r, list) and r not in chain
                ]
                if not refs:
                    break
                print("  <-", type(refs[0]), repr(refs[0])[:300])
                chain.append(refs[0])
            break


# -- what a scripted client got back --------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    kind: str  # "header" (the proxy's protocol header, then close), "close", "eof"
    code: int | None = None
    text: str = ""


async def outcome(reader: asyncio.StreamReader, timeout: float = 10.0) -> Outcome:
    """Read until a Connection.Close arrives or the socket closes; never longer than ``timeout``."""
    frames = FrameReader(1 << 24)
    seen = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"no Close and no close within {timeout} s (got {seen[:64]!r})")
        try:
            chunk = await asyncio.wait_for(reader.read(65536), remaining)
        except (ConnectionError, OSError):
            chunk = b""
        if not seen and chunk.startswith(PROTOCOL_HEADER[:4]):
            seen = chunk
            continue
        if seen.startswith(PROTOCOL_HEADER[:4]):
            if not chunk:
                return Outcome("header")
            seen += chunk
            continue
        if not chunk:
            return Outcome("eof")
        seen += chunk
        frames.feed(chunk)
        while True:
            try:
                frame = frames.next_frame()
            except ProtocolError:
                break
            if isinstance(frame, NeedData):
                break
            if frame.type == 1 and frame.channel == 0 and frame.payload[:4] == b"\x00\x0a\x00\x32":
                close = decode_method(frame.payload)
                assert isinstance(close, ConnectionClose)
                return Outcome("close", close.reply_code, close.reply_text)


# -- a healthy client ----------------------------------------------------------------------
class HealthyClient:
    """Publishes with confirms and consumes with acks, one message at a time, until stopped."""

    def __init__(self, url: str, interval: float = 0.005) -> None:
        self.url = url
        self.interval = interval  # pacing between round trips, not synchronisation
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connection: Any = None

    @property
    def round_trips(self) -> int:
        return len(self.latencies)

    def percentile(self, fraction: float, since: int = 0) -> float:
        ordered = sorted(self.latencies[since:])
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]

    async def __aenter__(self) -> HealthyClient:
        self._connection = await aio_pika.connect(self.url, timeout=10)
        channel = await self._connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.consume(self._on_message)
        self._task = asyncio.create_task(self._run(channel, queue.name))
        await until(lambda: self.round_trips >= 3 or self.errors, "a healthy round trip")
        assert not self.errors, self.errors
        return self

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()
        waiter = self._waiting.pop(int(message.body), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _run(self, channel: Any, queue: str) -> None:
        loop = asyncio.get_running_loop()
        seq = 0
        try:
            while not self._stop.is_set():
                seq += 1
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiting[seq] = waiter
                started = loop.time()
                await asyncio.wait_for(
                    channel.default_exchange.publish(
                        aio_pika.Message(str(seq).encode()), routing_key=queue
                    ),
                    5,
                )
                await asyncio.wait_for(waiter, 5)
                self.latencies.append(loop.time() - started)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.interval)
        except Exception as error:  # any failure is what the test asserts against
            self.errors.append(repr(error))

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)
        await asyncio.wait_for(self._connection.close(), 10)

    def assert_healthy(
        self, p99_limit: float = 0.1, *, since: int = 0, max_limit: float | None = None
    ) -> None:
        """No error; the p99 (and optionally the worst) round trip from ``since`` on."""
        assert not self.errors, self.errors
        window = self.latencies[since:]
        assert window, "no round trips"
        p99 = self.percentile(0.99, since)
        assert p99 < p99_limit, f"healthy p99 {p99 * 1000:.1f} ms over {len(window)} round trips"
        if max_limit is not None:
            assert max(window) < max_limit, f"healthy worst {max(window) * 1000:.1f} ms"
