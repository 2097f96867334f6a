"""Figures ``make bench`` prints after its table: how fast the admin planes leave things.

The tests check that the data path is never stalled by control-plane abuse and that the
dashboard pages on the server; how fast both are is measured here and printed, never
asserted (timings on a shared machine are noise to a test):

* ``control abuse``: a healthy client's publish-to-delivery round trips (aio-pika,
  publisher confirms, one message at a time) while 200 control clients send CONN at
  once, 20 never read their reply, 3 send 4 MiB lines, 2 send 2 MiB without a newline
  and 20 send binary lines (the abuse of tests/integration/test_admin_hostile.py, run on
  an event loop of its own in another thread); p50, p99 and worst of the 300 round trips
  from the start of the burst;
* ``dashboard page``: ``GET /sessions?vhost=orders&sort=in&dir=desc&page=2`` with 5,000
  sessions in the registry (2,500 match): median and worst of 5 requests.

The proxy runs in this process, in simple mode in front of ``--broker``.
Run: ``python -m bench.figures [--broker HOST:PORT]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import tempfile
import time
from typing import Any

import aio_pika
import aiohttp

from amqpprox.core.context import Settings
from amqpprox.core.sessions import CloseReason, SessionBase, SessionState
from amqpprox.runtime import Runtime, SimpleMode
from bench.cli import parse_target
from bench.rawamqp import Target

CONTROL_CLIENTS = 200
ROUND_TRIPS = 300
DASHBOARD_SESSIONS = 5000
DASHBOARD_REQUESTS = 5


def _settings(directory: str) -> Settings:
    return Settings(
        control_socket=os.path.join(directory, "ctl"),
        log_directory=os.path.join(directory, "logs"),
        admin_port=0,
        cleanup_interval_ms=3_600_000,
    )


# -- control abuse --------------------------------------------------------------------------
class _RoundTrips:
    """Publish one message, wait for its delivery, again, until stopped; each one timed."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._stop = asyncio.Event()
        self._counted = asyncio.Event()  # set after each round trip

    async def run(self, url: str) -> None:
        loop = asyncio.get_running_loop()
        async with await aio_pika.connect(url, timeout=10) as connection:
            channel = await connection.channel(publisher_confirms=True)
            queue = await channel.declare_queue(exclusive=True)
            await queue.consume(self._delivered)
            seq = 0
            while not self._stop.is_set():
                seq += 1
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiting[seq] = waiter
                started = loop.time()
                await channel.default_exchange.publish(
                    aio_pika.Message(str(seq).encode()), routing_key=queue.name
                )
                await asyncio.wait_for(waiter, 30)
                self.latencies.append(loop.time() - started)
                self._counted.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.005)  # pacing

    async def _delivered(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()
        waiter = self._waiting.pop(int(message.body), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def until(self, count: int, task: asyncio.Task[None]) -> None:
        """Wait for ``count`` round trips in all (the task's failure ends the wait)."""
        while len(self.latencies) < count:
            self._counted.clear()
            counted = asyncio.ensure_future(self._counted.wait())
            await asyncio.wait([counted, task], return_when=asyncio.FIRST_COMPLETED)
            counted.cancel()
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError("the healthy client stopped")

    def stop(self) -> None:
        self._stop.set()


async def _control(path: str, data: bytes) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), 10)
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await asyncio.wait_for(writer.drain(), 10)
            await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.transport.abort()


async def _abuse(path: str, clients: int) -> None:
    rng = random.Random(7)
    idle = []
    for _ in range(20):  # never read their reply, stay connected while the rest runs
        _reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"HELP\n")
        idle.append(writer)
    await asyncio.gather(
        *(_control(path, b"CONN\n") for _ in range(clients)),
        *(_control(path, b"C" * (4 << 20) + b"\n") for _ in range(3)),
        *(_control(path, b"\xff" * (2 << 20)) for _ in range(2)),
        *(_control(path, rng.randbytes(200).replace(b"\n", b"") + b"\n") for _ in range(20)),
    )
    for writer in idle:
        writer.transport.abort()


async def control_abuse(broker: Target) -> str:
    with tempfile.TemporaryDirectory(prefix="apxfig") as directory:
        runtime = Runtime(_settings(directory))
        await runtime.start()
        try:
            port = await runtime.configure_simple(SimpleMode(0, broker.host, broker.port))
            healthy = _RoundTrips()
            task = asyncio.create_task(healthy.run(f"amqp://guest:guest@127.0.0.1:{port}/"))
            await healthy.until(20, task)  # warmed up
            first = len(healthy.latencies)
            path = runtime.settings.control_socket
            await asyncio.to_thread(asyncio.run, _abuse(path, CONTROL_CLIENTS))
            await healthy.until(first + ROUND_TRIPS, task)
            healthy.stop()
            await task
        finally:
            await runtime.stop()
    window = sorted(healthy.latencies[first : first + ROUND_TRIPS])
    p50, p99 = window[len(window) // 2], window[min(len(window) - 1, int(len(window) * 0.99))]
    return (
        f"control abuse x{CONTROL_CLIENTS}: healthy round trip p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, worst {window[-1] * 1000:.1f} ms ({len(window)} round trips)"
    )


# -- the dashboard's sessions page ----------------------------------------------------------
async def dashboard_page() -> str:
    with tempfile.TemporaryDirectory(prefix="apxfig") as directory:
        runtime = Runtime(_settings(directory))
        await runtime.start()
        try:
            sessions = runtime.ctx.sessions
            for _ in range(DASHBOARD_SESSIONS):
                sid = sessions.next_id()
                session = SessionBase(
                    sid, (f"10.1.{sid // 250}.{sid % 250}", 40000), ("0.0.0.0", 5672)
                )
                session.vhost = "orders" if sid % 2 else "billing"
                session.backend_name = f"rabbit{sid % 3}"
                session.state = SessionState.ACTIVE
                session.opened_at = time.time()
                session.connection_name = f"client-{sid}"
                session.in_bytes = sid * 100
                sessions.add(session)
            url = f"http://127.0.0.1:{runtime.admin_port}/sessions"
            query = {"vhost": "orders", "sort": "in", "dir": "desc", "page": "2"}
            took: list[float] = []
            async with aiohttp.ClientSession() as http:
                for _ in range(DASHBOARD_REQUESTS):
                    started = time.perf_counter()
                    async with http.get(url, params=query) as response:
                        await response.read()
                        if response.status != 200:
                            raise RuntimeError(f"GET /sessions answered {response.status}")
                    took.append(time.perf_counter() - started)
        finally:
            for session in runtime.ctx.sessions:  # none has sockets: end them for the drain
                session.close_reason = session.close_reason or CloseReason.PROXY_FORCED
            runtime.ctx.sessions.cleanup()
            await runtime.stop()
    return (
        f"dashboard /sessions at {DASHBOARD_SESSIONS:,} sessions: median "
        f"{statistics.median(took) * 1000:.0f} ms, worst {max(took) * 1000:.0f} ms "
        f"({DASHBOARD_REQUESTS} requests)"
    )


async def figures(broker: Target) -> list[str]:
    return [await control_abuse(broker), await dashboard_page()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.figures", description="admin-plane figures (not asserted)"
    )
    ap.add_argument("--broker", type=parse_target, default=Target("127.0.0.1", 5672))
    args: Any = ap.parse_args(argv)
    print("figures (measured, not asserted; BENCHMARKS.md, 'Admin planes under load'):")
    for line in asyncio.run(figures(args.broker)):
        print(f"  {line}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
