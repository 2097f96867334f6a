"""The RabbitMQ Streams scenario: ``python -m bench.streams`` (run by ``make bench``).

Direct (the broker's 5552) against the same traffic through amqpprox (a child in simple
mode with ``LISTEN START_STREAM``): one rstream producer publishes ``--messages``
messages of ``--size`` bytes in batches and waits for every confirm, then one consumer
reads them all back from offset ``first``. rstream batches (``send_batch``), so the
client is not the first limit; both run in a process of their own, one phase at a time.
Each round runs every column once, the order rotating; the table shows medians, the
proxy's CPU (``utime+stime``) per million messages, and ratios to direct.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from rstream import Consumer, ConsumerOffsetSpecification, OffsetType, Producer

from bench.procs import free_port
from bench.procstat import cpu_seconds
from bench.rawamqp import Target
from bench.targets import LOOPBACK, Column, control_line, start_proxy

STREAM_PORT = 5552


async def _publish(port: int, stream: str, count: int, size: int, batch: int) -> float:
    producer = Producer(LOOPBACK, port, username="guest", password="guest")
    await producer.start()
    confirmed = 0
    done = asyncio.Event()

    def on_confirm(_status: object) -> None:
        nonlocal confirmed
        confirmed += 1
        if confirmed >= count:
            done.set()

    body = b"x" * size
    try:
        await producer.create_stream(stream, exists_ok=True)
        started = time.perf_counter()
        for _ in range(count // batch):
            await producer.send_batch(stream, [body] * batch, on_publish_confirm=on_confirm)
        await asyncio.wait_for(done.wait(), 300)
        return time.perf_counter() - started
    finally:
        await producer.close()


async def _consume(port: int, stream: str, count: int) -> float:
    consumer = Consumer(LOOPBACK, port, username="guest", password="guest")
    await consumer.start()
    received = 0
    done = asyncio.Event()

    def on_message(_message: object, _context: object) -> None:
        nonlocal received
        received += 1
        if received >= count:
            done.set()

    try:
        started = time.perf_counter()
        await consumer.subscribe(
            stream,
            on_message,
            offset_specification=ConsumerOffsetSpecification(OffsetType.FIRST, None),
            initial_credit=50,
        )
        await asyncio.wait_for(done.wait(), 300)
        return time.perf_counter() - started
    finally:
        await consumer.close()


async def _delete(port: int, stream: str) -> None:
    producer = Producer(LOOPBACK, port, username="guest", password="guest")
    await producer.start()
    try:
        await producer.delete_stream(stream, missing_ok=True)
    finally:
        await producer.close()


@dataclass(frozen=True)
class Job:
    """One client phase: ``publish``, ``consume`` or ``delete`` the stream."""

    kind: str
    port: int
    stream: str
    count: int = 0
    size: int = 0
    batch: int = 1


def _phase(job: Job) -> float:
    """One client phase in a child process (the bench process stays out of the way)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return float(pool.apply(_phase_main, (job,)))


def _phase_main(job: Job) -> float:
    if job.kind == "publish":
        return asyncio.run(_publish(job.port, job.stream, job.count, job.size, job.batch))
    if job.kind == "consume":
        return asyncio.run(_consume(job.port, job.stream, job.count))
    asyncio.run(_delete(job.port, job.stream))
    return 0.0


def run_once(column: Column, port: int, args: argparse.Namespace) -> dict[str, float]:
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    cpu_before = cpu_seconds(column.pid)
    try:
        published = _phase(Job("publish", port, stream, args.messages, args.size, args.batch))
        consumed = _phase(Job("consume", port, stream, args.messages))
    finally:
        _phase(Job("delete", STREAM_PORT, stream))
    out = {
        "publish_msgs_per_s": args.messages / published,
        "consume_msgs_per_s": args.messages / consumed,
    }
    cpu_after = cpu_seconds(column.pid)
    if cpu_before is not None and cpu_after is not None:
        out["cpu_s_per_million_msgs"] = (cpu_after - cpu_before) / (2 * args.messages) * 1e6
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20,000 messages, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.repeat = 20_000, 1
    args.messages -= args.messages % args.batch
    with tempfile.TemporaryDirectory(prefix="amqpprox-bench-streams") as directory:
        workdir = Path(directory)
        ctl = workdir / "ctl"
        server, proxy = start_proxy("proxy", Target(LOOPBACK, 5672), workdir, ctl)
        try:
            port = free_port()
            reply = control_line(ctl, f"LISTEN START_STREAM {port} ADDRESS {LOOPBACK}")
            if reply:
                raise SystemExit(f"LISTEN START_STREAM failed: {reply}")
            columns = [
                (Column("direct", Target(LOOPBACK, STREAM_PORT)), STREAM_PORT),
                (proxy, port),
            ]
            results: dict[str, list[dict[str, float]]] = {c.name: [] for c, _p in columns}
            for r in range(args.repeat):
                order = columns[r % len(columns) :] + columns[: r % len(columns)]
                for column, each_port in order:
                    figures = run_once(column, each_port, args)
                    results[column.name].append(figures)
                    print(f"round {r + 1} {column.name}: {figures}", file=sys.stderr, flush=True)
        finally:
            server.stop()
    _print(results, args)
    return 0


def _median(runs: list[dict[str, float]], key: str) -> float | None:
    values = [run[key] for run in runs if key in run]
    return statistics.median(values) if values else None


def _print(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    print(
        f"\nstreams: {args.messages:,} messages of {args.size} B, batches of {args.batch}, "
        f"median of {args.repeat} round(s)"
    )
    print("| metric | direct | proxy | proxy / direct |")
    print("|---|---|---|---|")
    for key in ("publish_msgs_per_s", "consume_msgs_per_s"):
        direct, proxied = _median(results["direct"], key), _median(results["proxy"], key)
        assert direct is not None and proxied is not None
        print(f"| {key} | {direct:,.0f} | {proxied:,.0f} | {proxied / direct:.2f} |")
    cpu = _median(results["proxy"], "cpu_s_per_million_msgs")
    if cpu is not None:
        print(f"| proxy CPU s per million messages (published + consumed) | | {cpu:.2f} | |")


if __name__ == "__main__":
    sys.exit(main())
