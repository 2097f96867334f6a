"""How long admin reads block the proxy's event loop with many sessions and vhosts.

``python -m bench.scrape`` starts a proxy in this process (``amqpprox.runtime.Runtime``,
no broker needed), configures ``--vhosts`` vhost mappings over ``--backends`` backends,
registers ``--sessions`` live sessions in its registry (the project's ``SessionBase``
objects with traffic counters set, not real connections: 5,000 real AMQP connections
are too heavy for a 2-core machine shared with the broker), then scrapes ``/metrics``
and other admin pages from a worker thread, one fresh HTTP connection per request, as a
scraper does. Meanwhile a task on the proxy's loop wakes every 1 ms and records how late
it woke: the longest such delay is the longest event-loop stall, i.e. how long a client
handshake or a relayed frame could have waited behind that page.

Printed per path: the body size, the median and worst request time seen by the client,
and the longest loop stall while that path was being fetched (plus, once, the same
with nothing fetched, the noise floor, and the cleanup job's statistics collection).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from amqpprox.core import operations as ops
from amqpprox.core.context import Settings
from amqpprox.core.sessions import CloseReason, SessionBase, SessionState
from amqpprox.runtime import Runtime

PATHS = (
    "/metrics",
    "/api/v1/stats",
    "/api/v1/sessions",
    "/api/v1/vhosts",
    "/api/v1/overview",
    "/",
    "/vhosts",
    "/sessions",
)
TICK = 0.001


@dataclass
class Figures:
    path: str
    size: int
    median_ms: float
    worst_ms: float
    stall_ms: float


class StallMeter:
    """Wakes every ``TICK`` seconds; ``worst`` is the latest wake-up since ``reset``."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(TICK)
            self.worst = max(self.worst, loop.time() - before - TICK)

    def reset(self) -> None:
        self.worst = 0.0

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class StandIn(SessionBase):
    """A registered session with no sockets: the proxy's shutdown just ends it."""

    def disconnect_graceful(self, reply_text: str = "OK", reply_code: int = 200) -> None:
        self.force_disconnect()

    def force_disconnect(self) -> None:
        self.close_reason = self.close_reason or CloseReason.PROXY_FORCED
        self.state = SessionState.CLOSED


def fetch(port: int, path: str) -> tuple[int, float]:
    """One GET on a fresh connection: (body size, seconds)."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status} {body[:200]!r}")
    finally:
        conn.close()
    return len(body), time.perf_counter() - start


async def populate(runtime: Runtime, sessions: int, vhosts: int, backends: int) -> None:
    """Backends, one mapping per vhost, and live sessions spread over them."""
    ctx = runtime.ctx
    rng = random.Random(1)
    for b in range(backends):
        await ops.add_backend(ctx, f"backend-{b}", "dc", "127.0.0.1", 20000 + b)
    for v in range(vhosts):
        ops.map_vhost_to_backend(ctx, f"vhost-{v}", f"backend-{v % backends}")
    now = time.monotonic()
    for i in range(sessions):
        session = StandIn(
            ctx.sessions.next_id(),
            (f"10.0.{i // 250 % 250}.{i % 250}", 30000 + i % 30000),
            ("127.0.0.1", 5673),
        )
        v = i % vhosts
        session.vhost = f"vhost-{v}"
        session.backend_name = f"backend-{v % backends}"
        session.egress_remote = ("127.0.0.1", 20000 + v % backends)
        session.state = SessionState.ACTIVE
        session.opened_at = time.time()
        session.open_received_mono = now
        session.connect_started_mono = now
        session.broker_connected_mono = now + 0.001
        session.open_ok_mono = now + 0.002
        session.in_bytes = rng.randrange(1 << 30)
        session.out_bytes = rng.randrange(1 << 30)
        session.in_frames = session.out_frames = rng.randrange(1 << 20)
        session.in_packets = session.out_packets = rng.randrange(1 << 20)
        ctx.sessions.add(session)


async def measure(args: argparse.Namespace) -> list[Figures]:
    with tempfile.TemporaryDirectory(prefix="apxscrape") as tmp:
        settings = Settings(
            control_socket=str(Path(tmp) / "ctl"),
            log_directory=str(Path(tmp) / "logs"),
            admin_port=0,
            cleanup_interval_ms=args.cleanup_ms,
        )
        runtime = Runtime(settings)
        await runtime.start()
        meter = StallMeter()
        try:
            await populate(runtime, args.sessions, args.vhosts, args.backends)
            port = runtime.admin_port
            assert port is not None
            meter.start()
            out: list[Figures] = []
            # The noise floor: the loop with nothing fetched (the cleanup job still runs).
            meter.reset()
            await asyncio.sleep(max(1.0, 2 * args.cleanup_ms / 1000))
            out.append(Figures("(nothing fetched)", 0, 0.0, 0.0, meter.worst * 1000))
            start = time.perf_counter()
            runtime.cleanup_once()
            took = (time.perf_counter() - start) * 1000
            out.append(Figures("(cleanup job: STAT collect)", 0, took, took, took))
            for path in args.paths:
                await asyncio.to_thread(fetch, port, path)  # warm up
                meter.reset()
                times, size = [], 0
                for _ in range(args.rounds):
                    size, seconds = await asyncio.to_thread(fetch, port, path)
                    times.append(seconds * 1000)
                out.append(
                    Figures(path, size, statistics.median(times), max(times), meter.worst * 1000)
                )
            return out
        finally:
            meter.stop()
            await runtime.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scrape", description=__doc__)
    ap.add_argument("--sessions", type=int, default=5000)
    ap.add_argument("--vhosts", type=int, default=1000)
    ap.add_argument("--backends", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=10, help="requests per path")
    ap.add_argument("--cleanup-ms", type=int, default=1000, help="--cleanupIntervalMs")
    ap.add_argument("--path", dest="paths", action="append", help="only these paths")
    args = ap.parse_args(argv)
    args.paths = args.paths or list(PATHS)
    figures = asyncio.run(measure(args))
    print(
        f"admin reads with {args.sessions} sessions, {args.vhosts} vhosts, "
        f"{args.backends} backends ({args.rounds} requests per path)"
    )
    print(f"{'path':30} {'body':>10} {'median ms':>10} {'worst ms':>10} {'loop stall ms':>14}")
    for f in figures:
        print(
            f"{f.path:30} {f.size:>10,} {f.median_ms:>10.1f} {f.worst_ms:>10.1f} "
            f"{f.stall_ms:>14.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
