"""The ``idle`` scenario: hold N fully handshaked, silent AMQP connections.

One process, one asyncio event loop (uvloop when importable), pre-encoded handshake
frames from :mod:`bench.rawamqp`, at most ``concurrency`` handshakes in flight.
Heartbeats are negotiated off (TuneOk heartbeat=0), so nothing is sent while held.

Measured against one target:

* the intermediary's RSS (``VmRSS``) after a warm-up (``warmup`` connections opened
  and closed, then the proxy's session list back to its baseline and a pause), and
  again while all N are held: ``kib_per_session = (rss_held - rss_before) / N``;
* for a proxy with an admin API: that it lists N more active sessions, and the wall
  time of ``admin_requests`` sequential ``GET /api/v1/sessions`` and ``GET /readyz``
  while the N are held;
* that every held connection survives the hold: each is closed with
  Connection.Close and must answer CloseOk.

Afterwards the proxy's session list must drain back to its baseline before the next
target runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.adminapi import READY_PATH, SESSIONS_PATH, AdminApi
from bench.procstat import nofile_limit, rss_kib
from bench.rawamqp import (
    CONNECTION_CLOSE,
    FRAME_END,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    M_CLOSE,
    M_CLOSE_OK,
    M_OPEN_OK,
    M_START,
    M_TUNE,
    PROTOCOL_HEADER,
    AmqpError,
    Target,
    client_tls_context,
    close_reason,
    method_id,
    negotiate_tune,
    parse_frame_header,
    start_ok_frame,
    tune_ok_open_frames,
)

FRAME_MAX = 131072
SETTLE_S = 1.5  # after the warm-up: let the proxy's cleanup job (1 s) and gc run
DRAIN_TIMEOUT = 120.0  # closing thousands of sessions through a busy 2-core machine
COUNT_TIMEOUT = 60.0
FD_MARGIN = 128
BROKER_FD_HINT = (
    "if the broker refused or closed connections it may be out of file descriptors "
    "(RabbitMQ's default limit is often 1024): put `ulimit -n 65536` in "
    "/etc/rabbitmq/rabbitmq-env.conf and restart RabbitMQ"
)


@dataclass(frozen=True)
class IdleJob:
    """How many connections to hold, and how."""

    count: int
    concurrency: int = 200
    warmup: int = 50
    hold_s: float = 5.0
    admin_requests: int = 50
    handshake_timeout: float = 30.0


@dataclass(frozen=True)
class Probe:
    """What the bench knows about the process behind a target (if anything)."""

    pid: int | None = None
    admin: AdminApi | None = None


# --------------------------------------------------------------------------
# One connection on asyncio streams
# --------------------------------------------------------------------------


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    heartbeats: int = 0

    async def expect(self, method: int) -> bytes:
        """Read frames until ``method``; count heartbeats; raise on Close or other frames."""
        while True:
            ftype, _channel, size = parse_frame_header(await self.reader.readexactly(7))
            payload = await self.reader.readexactly(size + 1)
            if payload[-1] != FRAME_END:
                raise AmqpError("bad frame-end octet")
            if ftype == FRAME_HEARTBEAT:
                self.heartbeats += 1
                continue
            got = method_id(payload) if ftype == FRAME_METHOD and size >= 4 else -1
            if got == method:
                return payload[:-1]
            if got == M_CLOSE:
                raise AmqpError(f"server closed: {close_reason(payload)}")
            raise AmqpError(f"unexpected frame type={ftype} method={got:#x}")

    async def close(self) -> None:
        """Connection.Close, wait for CloseOk, close the socket."""
        try:
            self.writer.write(CONNECTION_CLOSE)
            await self.expect(M_CLOSE_OK)
        finally:
            self.abort()

    def abort(self) -> None:
        """Close the socket without the AMQP close handshake."""
        self.writer.close()


async def _open(target: Target) -> _Conn:
    """Protocol header, StartOk, TuneOk (heartbeat 0) + Open, up to OpenOk."""
    ssl_ctx = client_tls_context(target.tls_ca) if target.tls_ca else None
    reader, writer = await asyncio.open_connection(
        target.host,
        target.port,
        ssl=ssl_ctx,
        server_hostname=target.tls_server_name if ssl_ctx else None,
    )
    conn = _Conn(reader, writer)
    try:
        writer.write(PROTOCOL_HEADER)
        await conn.expect(M_START)
        writer.write(start_ok_frame("guest", "guest"))
        channel_max, fmax = negotiate_tune(await conn.expect(M_TUNE), FRAME_MAX)
        writer.write(tune_ok_open_frames(channel_max, fmax, "/"))
        await conn.expect(M_OPEN_OK)
    except BaseException:
        conn.abort()
        raise
    return conn


# --------------------------------------------------------------------------
# Many connections, bounded concurrency
# --------------------------------------------------------------------------

_NET_ERRORS = (OSError, AmqpError, asyncio.IncompleteReadError, TimeoutError)


@dataclass
class _Pool:
    """Shared state of the opener / closer tasks."""

    conns: list[_Conn] = field(default_factory=list)
    next_index: int = 0
    failures: int = 0
    first_error: str = ""

    def fail(self, exc: BaseException) -> None:
        self.failures += 1
        if not self.first_error:
            self.first_error = _describe(exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "connection closed by peer"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


async def open_many(target: Target, count: int, job: IdleJob) -> list[_Conn]:
    """Open ``count`` connections, ``job.concurrency`` at a time; all or an error.

    On the first failure no new handshakes start; those already open are closed
    and the error names how far it got, with the broker file-descriptor hint.
    """
    pool = _Pool()

    async def opener() -> None:
        while pool.next_index < count and not pool.failures:
            pool.next_index += 1
            try:
                conn = await asyncio.wait_for(_open(target), job.handshake_timeout)
            except _NET_ERRORS as exc:
                pool.fail(exc)
                return
            pool.conns.append(conn)

    await asyncio.gather(*(opener() for _ in range(min(job.concurrency, count))))
    if pool.failures:
        opened = len(pool.conns)
        await close_many(pool.conns, job)
        raise AmqpError(
            f"opened {opened} of {count} connections, then: {pool.first_error}; " + BROKER_FD_HINT
        )
    return pool.conns


@dataclass(frozen=True)
class CloseResult:
    """How the held connections ended."""

    lost: int  # no CloseOk: closed (or broken) while held
    first_error: str
    heartbeats: int


async def close_many(conns: list[_Conn], job: IdleJob) -> CloseResult:
    """Close every connection with Connection.Close / CloseOk, ``concurrency`` at a time."""
    pool = _Pool()

    async def closer() -> None:
        while pool.next_index < len(conns):
            conn = conns[pool.next_index]
            pool.next_index += 1
            try:
                await asyncio.wait_for(conn.close(), job.handshake_timeout)
            except _NET_ERRORS as exc:
                pool.fail(exc)

    await asyncio.gather(*(closer() for _ in range(min(job.concurrency, len(conns) or 1))))
    heartbeats = sum(c.heartbeats for c in conns)
    return CloseResult(pool.failures, pool.first_error, heartbeats)


# --------------------------------------------------------------------------
# The scenario
# --------------------------------------------------------------------------


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        module = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = module.new_event_loop
    return factory


def check_fd_budget(count: int, pid: int | None) -> None:
    """Fail early when our own or the intermediary's fd limit cannot hold ``count``."""
    own = nofile_limit(os.getpid())
    if own is not None and count + FD_MARGIN > own:
        raise AmqpError(
            f"the bench's own open-files limit is {own}, too low for {count} connections; "
            "raise it (`ulimit -n`) before running the bench"
        )
    if pid is None:
        return
    theirs = nofile_limit(pid)
    if theirs is not None and 2 * count + FD_MARGIN > theirs:
        raise AmqpError(
            f"the intermediary (pid {pid}) may open {theirs} files, too few for "
            f"{count} relayed connections (2 sockets each); raise `ulimit -n`"
        )


def _settle(probe: Probe, baseline_total: int | None) -> None:
    """Wait until the proxy lists its baseline sessions again, then pause."""
    if probe.admin is not None and baseline_total is not None:
        probe.admin.wait_sessions(baseline_total, None, DRAIN_TIMEOUT)
    time.sleep(SETTLE_S)


def _summary_ms(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), max(times)


def _while_held(probe: Probe, job: IdleJob, base_active: int | None) -> dict[str, float]:
    """Everything measured while the N connections are held (runs in a thread)."""
    out: dict[str, float] = {}
    if probe.admin is not None and base_active is not None:
        active = probe.admin.wait_sessions(None, base_active + job.count, COUNT_TIMEOUT)
        out["rest_active_sessions"] = float(active - base_active)
    rss = rss_kib(probe.pid)
    if rss is not None:
        out["rss_held_kib"] = float(rss)
    if probe.admin is not None and job.admin_requests > 0:
        out["admin_requests"] = float(job.admin_requests)
        for key, path in (("sessions", SESSIONS_PATH), ("readyz", READY_PATH)):
            p50, worst = _summary_ms(probe.admin.time_gets(path, job.admin_requests))
            out[f"admin_{key}_p50_ms"] = p50
            out[f"admin_{key}_max_ms"] = worst
    return out


async def _measure(target: Target, probe: Probe, job: IdleJob) -> dict[str, float]:
    """Warm up, open N, measure while held, close N (the event-loop part)."""
    baseline: tuple[int, int] | None = None
    if probe.admin is not None:
        baseline = await asyncio.to_thread(probe.admin.session_counts)
    if job.warmup:
        await close_many(await open_many(target, job.warmup, job), job)
    await asyncio.to_thread(_settle, probe, baseline[0] if baseline else None)
    rss_before = await asyncio.to_thread(rss_kib, probe.pid)
    t0 = time.monotonic()
    conns = await open_many(target, job.count, job)
    opened = time.monotonic()
    out: dict[str, float] = {"connections": float(job.count), "open_s": opened - t0}
    try:
        out |= await asyncio.to_thread(_while_held, probe, job, baseline[1] if baseline else None)
        await asyncio.sleep(max(0.0, job.hold_s - (time.monotonic() - opened)))
    finally:
        out["held_s"] = time.monotonic() - opened
        t1 = time.monotonic()
        closed = await close_many(conns, job)
        out["close_s"] = time.monotonic() - t1
    if closed.lost:
        raise AmqpError(
            f"{closed.lost} of {job.count} held connections did not survive the "
            f"{out['held_s']:.1f} s hold (no CloseOk): {closed.first_error}"
        )
    out["heartbeats_seen"] = float(closed.heartbeats)
    if rss_before is not None and "rss_held_kib" in out:
        out["rss_before_kib"] = float(rss_before)
        out["kib_per_session"] = (out["rss_held_kib"] - rss_before) / job.count
    return out


def run_idle(target: Target, probe: Probe, job: IdleJob) -> dict[str, float]:
    """The idle scenario against one target; afterwards the proxy is back at baseline."""
    check_fd_budget(job.count, probe.pid)
    baseline_total: int | None = None
    if probe.admin is not None:
        baseline_total = probe.admin.session_counts()[0]
    try:
        with asyncio.Runner(loop_factory=_uvloop_factory()) as runner:
            return runner.run(_measure(target, probe, job))
    finally:
        with contextlib.suppress(AmqpError, OSError):
            _settle(probe, baseline_total)
