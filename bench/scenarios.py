"""The four benchmark scenarios; each runs against one :class:`Target`.

* ``msgs``    - 100-byte messages/s, one producer + one consumer process
* ``mib``     - 1 MiB messages (multi-frame bodies), MiB/s, same layout
* ``conn``    - full AMQP open/close cycles per second from N worker processes
* ``latency`` - publish one message, wait for its delivery, repeat
* ``idle``    - hold N handshaked, silent connections (see :mod:`bench.idle`)
* ``go-*``    - the same (but idle) driven by ``amqpperf``, a compiled client (see
  :mod:`bench.amqpperf`)

The throughput workers report their own CPU time (``getrusage``) and wall time, so
the run can show that the load generator is not the bottleneck.
"""

from __future__ import annotations

import multiprocessing.connection
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import amqpperf
from bench.idle import IdleJob, Probe, run_idle
from bench.procs import WorkerFn, workers
from bench.procstat import own_cpu_seconds
from bench.rawamqp import (
    AmqpError,
    Target,
    connect_cycle,
    declare_and_consume,
    open_channel,
    open_connection,
    publish_frames,
)

Pipe = multiprocessing.connection.Connection
SEND_BATCH_BYTES = 256 * 1024
IDLE_TIMEOUT = 10.0  # no bytes at all for this long -> the run failed


@dataclass(frozen=True)
class Params:
    """Sizes and durations of one benchmark run."""

    msg_count: int = 200_000
    msg_size: int = 100
    mib_count: int = 1000
    conn_seconds: float = 5.0
    conn_workers: int = 4
    latency_samples: int = 5000
    latency_warmup: int = 500
    frame_max: int = 131072
    timeout: float = 120.0
    idle_connections: int = 5000
    idle_hold_s: float = 5.0
    go_seconds: float = 8.0
    amqpperf: str | None = None  # the built binary (bench.amqpperf.build), for go-*

    @classmethod
    def quick(cls) -> Params:
        """Small sizes so every single scenario finishes well under 20 s."""
        return cls(
            msg_count=20_000,
            mib_count=100,
            conn_seconds=1.5,
            latency_samples=500,
            latency_warmup=100,
            timeout=15.0,
            idle_connections=1000,
            idle_hold_s=2.0,
            go_seconds=2.0,
        )


# --------------------------------------------------------------------------
# Throughput: producer and consumer worker processes
# --------------------------------------------------------------------------


def _own_usage(started: float) -> dict[str, float]:
    """This worker's CPU seconds (getrusage) and wall seconds since ``started``."""
    return {"cpu_s": own_cpu_seconds(), "wall_s": time.monotonic() - started}


def _wait_go(pipe: Pipe, timeout: float) -> None:
    if not pipe.poll(timeout):
        raise AmqpError("never got the go signal")
    pipe.recv()


@dataclass(frozen=True)
class ThroughputJob:
    """What one producer/consumer pair does."""

    target: Target
    queue: str
    count: int
    size: int
    frame_max: int
    timeout: float


def consumer_main(pipe: Pipe, job: ThroughputJob) -> None:
    """Worker: consume ``job.count`` messages; report first/last delivery times."""
    started = time.monotonic()
    count, timeout = job.count, job.timeout
    conn = open_connection(job.target, timeout=timeout, frame_max=job.frame_max)
    open_channel(conn)
    declare_and_consume(conn, job.queue)
    counter = conn.start_counting(1 << 20)
    sock = conn.sock
    sock.settimeout(IDLE_TIMEOUT)
    pipe.send(("ready", None))
    deadline = time.monotonic() + timeout
    done = first_batch = 0
    first = last = 0.0
    done += counter.scan()
    while done < count:
        if time.monotonic() > deadline:
            raise AmqpError(f"consumer deadline exceeded after {done}/{count} messages")
        counter.recv(sock)
        got = counter.scan()
        if got:
            now = time.perf_counter()
            if done == 0:
                first, first_batch = now, got
            done += got
            last = now
    conn.stop_counting(counter)
    conn.close()
    result = {"count": done, "first": first, "last": last, "first_batch": first_batch}
    pipe.send(("result", result | _own_usage(started)))


def producer_main(pipe: Pipe, job: ThroughputJob) -> None:
    """Worker: blast ``job.count`` pre-encoded publishes with large ``sendall`` calls."""
    started = time.monotonic()
    count, timeout = job.count, job.timeout
    conn = open_connection(job.target, timeout=timeout, frame_max=job.frame_max)
    open_channel(conn)
    msg = publish_frames(job.queue, job.size, conn.frame_max)
    per_batch = max(1, SEND_BATCH_BYTES // len(msg))
    batch = msg * per_batch
    full, rest = divmod(count, per_batch)
    sock = conn.sock
    pipe.send(("ready", None))
    _wait_go(pipe, timeout)
    sock.settimeout(timeout)  # a broker that blocks us longer than this is a failure
    t0 = time.perf_counter()
    for _ in range(full):
        sock.sendall(batch)
    if rest:
        sock.sendall(msg * rest)
    t1 = time.perf_counter()
    conn.close(timeout)  # CloseOk => the broker has processed every publish
    pipe.send(("result", {"send_s": t1 - t0} | _own_usage(started)))


def run_throughput(target: Target, count: int, size: int, p: Params) -> dict[str, float]:
    """One producer + one consumer process through ``target``; rate from deliveries."""
    queue = f"bench-{uuid.uuid4().hex[:16]}"
    deadline = time.monotonic() + p.timeout + 10
    job = ThroughputJob(target, queue, count, size, p.frame_max, p.timeout)
    specs: list[tuple[WorkerFn, tuple[Any, ...]]] = [
        (consumer_main, (job,)),
        (producer_main, (job,)),
    ]
    with workers(specs) as (cons, prod):
        cons.recv(deadline, "ready")
        prod.recv(deadline, "ready")
        prod.send(("go", None))
        res = cons.recv(deadline, "result")
        pres = prod.recv(deadline, "result")
    span = res["last"] - res["first"]
    measured = res["count"] - res["first_batch"]
    if span <= 0 or measured <= 0:
        raise AmqpError("run too short to measure; increase the message count")
    rate = measured / span
    return {
        "msgs_per_s": rate,
        "mib_per_s": rate * size / (1 << 20),
        "messages": float(res["count"]),
        "seconds": span,
        "producer_send_s": pres["send_s"],
        "gen_producer_cpu_s": pres["cpu_s"],
        "gen_producer_wall_s": pres["wall_s"],
        "gen_consumer_cpu_s": res["cpu_s"],
        "gen_consumer_wall_s": res["wall_s"],
    }


# --------------------------------------------------------------------------
# Connection rate
# --------------------------------------------------------------------------


def conn_worker_main(pipe: Pipe, target: Target, seconds: float, timeout: float) -> None:
    """Worker: loop full connection open/close cycles for ``seconds``."""
    pipe.send(("ready", None))
    _wait_go(pipe, timeout)
    ok = errors = 0
    last_error = ""
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        try:
            connect_cycle(target, timeout=5.0)
            ok += 1
        except (OSError, AmqpError) as exc:
            errors += 1
            last_error = f"{type(exc).__name__}: {exc}"
            if errors > 50:
                break
    elapsed = time.monotonic() - t0
    result = {"ok": ok, "errors": errors, "elapsed": elapsed, "last_error": last_error}
    pipe.send(("result", result))


def run_conn(target: Target, p: Params) -> dict[str, float]:
    """``conn_workers`` processes opening and closing connections concurrently."""
    deadline = time.monotonic() + p.conn_seconds + 30
    specs: list[tuple[WorkerFn, tuple[Any, ...]]] = [
        (conn_worker_main, (target, p.conn_seconds, 10.0))
    ] * p.conn_workers
    with workers(specs) as ws:
        for w in ws:
            w.recv(deadline, "ready")
        for w in ws:
            w.send(("go", None))
        results = [w.recv(deadline, "result") for w in ws]
    errors = sum(r["errors"] for r in results)
    if errors:
        msgs = {r["last_error"] for r in results if r["last_error"]}
        raise AmqpError(f"{errors} failed connection cycles: {'; '.join(sorted(msgs))}")
    rate = sum(r["ok"] / r["elapsed"] for r in results)
    return {"conn_per_s": rate, "connections": float(sum(r["ok"] for r in results))}


# --------------------------------------------------------------------------
# Round-trip latency (runs in the orchestrating process: one connection)
# --------------------------------------------------------------------------


def _percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile in microseconds."""
    idx = min(len(sorted_ns) - 1, max(0, round(q * len(sorted_ns)) - 1))
    return sorted_ns[idx] / 1000.0


def run_latency(target: Target, p: Params) -> dict[str, float]:
    """Publish one message, wait for its delivery, repeat; percentiles in µs."""
    queue = f"bench-lat-{uuid.uuid4().hex[:12]}"
    conn = open_connection(target, timeout=10.0, frame_max=p.frame_max)
    try:
        open_channel(conn)
        declare_and_consume(conn, queue)
        msg = publish_frames(queue, p.msg_size, conn.frame_max)
        counter = conn.start_counting(1 << 16)
        sock = conn.sock
        sock.settimeout(5.0)
        deadline = time.monotonic() + p.timeout
        samples: list[int] = []
        clock = time.perf_counter_ns
        for i in range(p.latency_warmup + p.latency_samples):
            if time.monotonic() > deadline:
                raise AmqpError(f"latency deadline exceeded after {i} round trips")
            t0 = clock()
            sock.sendall(msg)
            got = 0
            for _ in range(10_000):
                counter.recv(sock)
                got = counter.scan()
                if got:
                    break
            t1 = clock()
            if got != 1:
                raise AmqpError(f"expected exactly one delivery, got {got}")
            if i >= p.latency_warmup:
                samples.append(t1 - t0)
        conn.stop_counting(counter)
    finally:
        conn.close()
    samples.sort()
    return {
        "p50_us": _percentile(samples, 0.50),
        "p99_us": _percentile(samples, 0.99),
        "mean_us": sum(samples) / len(samples) / 1000.0,
        "max_us": samples[-1] / 1000.0,
        "samples": float(len(samples)),
    }


SCENARIOS = ("msgs", "mib", "conn", "latency", *amqpperf.SCENARIOS, "idle")
# The intermediary's CPU is read around these.
CPU_SCENARIOS = ("msgs", "mib", "conn", *amqpperf.CPU_SCENARIOS)


def cpu_metrics(scenario: str, metrics: dict[str, float], cpu_s: float) -> dict[str, float]:
    """The intermediary's CPU (``cpu_s`` over one run) per unit of work done in that run.

    ``msgs``: s per million messages; ``mib`` (1 MiB messages): s per GiB relayed;
    ``conn``: µs per connection opened and closed; ``go-*`` as the bench's own.
    """
    scenario = scenario.removeprefix("go-")
    out = {"proxy_cpu_s": cpu_s}
    messages = metrics.get("messages", 0.0)
    if scenario == "msgs" and messages > 0:
        out["cpu_s_per_million_msgs"] = cpu_s / messages * 1e6
    elif scenario == "mib" and messages > 0:
        out["cpu_s_per_gib"] = cpu_s / (messages * (1 << 20) / (1 << 30))
    elif scenario == "conn" and metrics.get("connections", 0.0) > 0:
        out["cpu_us_per_conn"] = cpu_s * 1e6 / metrics["connections"]
    return out


def run_scenario(
    name: str, target: Target, p: Params, probe: Probe | None = None
) -> dict[str, float]:
    """Dispatch by scenario name; ``probe`` (pid, admin API) is used by ``idle``."""
    if name == "msgs":
        return run_throughput(target, p.msg_count, p.msg_size, p)
    if name == "mib":
        return run_throughput(target, p.mib_count, 1 << 20, p)
    if name == "conn":
        return run_conn(target, p)
    if name == "latency":
        return run_latency(target, p)
    if name in amqpperf.SCENARIOS:
        if p.amqpperf is None:
            raise AmqpError(amqpperf.INSTALL_HINT)
        go = amqpperf.GoParams(seconds=p.go_seconds, msg_size=p.msg_size)
        return amqpperf.run(Path(p.amqpperf), name, target, go)
    if name == "idle":
        return run_idle(target, probe or Probe(), IdleJob(p.idle_connections, hold_s=p.idle_hold_s))
    raise ValueError(f"unknown scenario {name!r}")
