"""Command line: start the intermediaries (the proxy, HAProxy, optionally more), run
every scenario in alternating rounds against the direct broker and through each of
them, print a side-by-side table of medians."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import ipaddress
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench import amqpperf, haproxy, report
from bench.procs import Server, wait_amqp_ready
from bench.procstat import cpu_seconds, raise_nofile_limit
from bench.rawamqp import AmqpError, Target, open_connection
from bench.rounds import Metrics, Runs, medians, round_order
from bench.scenarios import CPU_SCENARIOS, SCENARIOS, Params, cpu_metrics, run_scenario
from bench.targets import (
    READY_TIMEOUT,
    Column,
    control_line,
    start_forwarder,
    start_haproxy,
    start_proxy,
    start_tls_listener,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def parse_target(text: str) -> Target:
    """HOST:PORT, where HOST must resolve to a loopback address."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    try:
        addr = socket.gethostbyname(host)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot resolve {host!r}: {exc}") from exc
    if not ipaddress.ip_address(addr).is_loopback:
        raise argparse.ArgumentTypeError(
            f"{host} is not a loopback address; this benchmark only talks to 127.0.0.1"
        )
    return Target(addr, int(port))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """All options; see module docstring of :mod:`bench`."""
    ap = argparse.ArgumentParser(
        prog="python -m bench", description="amqpprox benchmark: direct broker vs proxy"
    )
    ap.add_argument(
        "--broker",
        type=parse_target,
        default=Target("127.0.0.1", 5672),
        help="HOST:PORT of RabbitMQ",
    )
    ap.add_argument(
        "--proxy",
        type=parse_target,
        default=None,
        help="HOST:PORT of a running proxy (default: start `python -m amqpprox` on a free port)",
    )
    ap.add_argument(
        "--no-proxy", action="store_true", help="skip the proxy column (direct [+ others] only)"
    )
    ap.add_argument(
        "--also-haproxy-splice",
        action="store_true",
        help="add a column for HAProxy with `option splice-auto` (zero-copy relay)",
    )
    ap.add_argument(
        "--also-haproxy-one-thread",
        action="store_true",
        help="add a column for HAProxy held to one thread (nbthread 1), as the proxy's one"
        " event loop",
    )
    ap.add_argument(
        "--no-haproxy",
        action="store_true",
        help="skip the haproxy column (default: run it when haproxy is installed)",
    )
    ap.add_argument(
        "--also-forwarder", action="store_true", help="add a column for bench.tcpforward (plain L4)"
    )
    ap.add_argument(
        "--only", choices=SCENARIOS, action="append", help="run only this scenario (repeatable)"
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="short run: small sizes, one round, no idle scenario unless --only idle",
    )
    ap.add_argument(
        "--repeat",
        type=_positive_int,
        default=None,
        help="rounds per scenario, target order rotated each round; medians are shown "
        "(default 3, with --quick 1)",
    )
    ap.add_argument("--json", action="store_true", help="also print a JSON summary")
    ap.add_argument(
        "--also-no-per-source",
        action="store_true",
        help="add a column for a second proxy with per-source statistics disabled",
    )
    ap.add_argument(
        "--also-coalescing",
        type=_positive_int,
        nargs="?",
        const=1,
        default=None,
        metavar="MS",
        help="add a column for a second proxy with read coalescing on (--coalesceReadsMs MS, "
        "default 1)",
    )
    ap.add_argument(
        "--also-base",
        type=Path,
        default=None,
        metavar="DIR",
        help="add a column for the proxy of another source tree (say, main exported with git "
        "archive, its C extension built in place): the same traffic, before and after",
    )
    ap.add_argument(
        "--also-traced",
        action="store_true",
        help="add a column for a second proxy whose every session is traced (a vhost trace of "
        "/ with no reader and no frame limit): what a trace costs the relay",
    )
    ap.add_argument(
        "--tls",
        action="store_true",
        help="add a column for the same proxy behind a TLS listener (throwaway CA and "
        "certificate; set up with TLS INGRESS ... and LISTEN START_SECURE)",
    )
    ap.add_argument("--messages", type=int, help="override the 100-byte message count")
    ap.add_argument("--mib-messages", type=int, help="override the 1 MiB message count")
    ap.add_argument("--conn-seconds", type=float, help="override the connection-rate duration")
    ap.add_argument(
        "--conn-workers",
        type=_positive_int,
        help="processes opening and closing connections at once in the conn scenario "
        "(default 4, the issue's figure; more workers hide each connection's latency and "
        "leave only the CPU bound)",
    )
    ap.add_argument("--samples", type=int, help="override the latency sample count")
    ap.add_argument(
        "--go-seconds",
        type=float,
        help="how long each amqpperf run lasts (default 8, with --quick 2)",
    )
    ap.add_argument(
        "--no-amqpperf",
        action="store_true",
        help="skip the go-* scenarios (default: build amqpperf from ../shared/tools/amqpperf "
        "and run them when Go and amqp091-go are installed)",
    )
    ap.add_argument(
        "--background-idle",
        type=_positive_int,
        default=0,
        metavar="N",
        help="hold N idle handshaked connections through every target while the "
        "scenarios run (the load a real proxy carries beside the measured traffic)",
    )
    ap.add_argument(
        "--idle-connections",
        type=_positive_int,
        help="connections the idle scenario holds (default 5000, with --quick 1000)",
    )
    ap.add_argument(
        "--idle-hold",
        type=float,
        help="seconds the idle connections stay open at least (default 5, with --quick 2); "
        "more than RabbitMQ's 60 s heartbeat interval shows that nothing times them out",
    )
    return ap


def make_params(args: argparse.Namespace) -> Params:
    """Defaults or --quick, with explicit overrides applied."""
    p = Params.quick() if args.quick else Params()
    overrides = {
        "msg_count": args.messages,
        "mib_count": args.mib_messages,
        "conn_seconds": args.conn_seconds,
        "conn_workers": args.conn_workers,
        "latency_samples": args.samples,
        "idle_connections": args.idle_connections,
        "idle_hold_s": args.idle_hold,
        "go_seconds": args.go_seconds,
    }
    fields = {k: v for k, v in overrides.items() if v is not None}
    if fields:
        p = Params(**{**p.__dict__, **fields})
    return p


def selected_scenarios(only: list[str] | None, quick: bool, go: bool = True) -> list[str]:
    """``--only`` as given (in canonical order); else all, without ``idle`` when quick;
    without the ``go-*`` ones when amqpperf is not there (``go`` false)."""
    if only:
        chosen = [s for s in SCENARIOS if s in only]
    else:
        chosen = [s for s in SCENARIOS if not (quick and s == "idle")]
    return [s for s in chosen if go or s not in amqpperf.SCENARIOS]


def with_amqpperf(args: argparse.Namespace, params: Params) -> Params:
    """``params`` naming the built amqpperf, unless skipped or it cannot be built."""
    if args.no_amqpperf:
        return params
    binary = amqpperf.build()
    if binary is None:
        print(amqpperf.INSTALL_HINT, file=sys.stderr)
        return params
    print(f"amqpperf: {binary.relative_to(PROJECT_ROOT)}", file=sys.stderr)
    return dataclasses.replace(params, amqpperf=str(binary))


def hold_idle(columns: list[Column], count: int, stack: contextlib.ExitStack) -> None:
    """``count`` idle handshaked connections through every column, closed on exit."""
    for column in columns:
        for _ in range(count):
            conn = open_connection(column.target, timeout=READY_TIMEOUT)
            stack.callback(conn.sock.close)
    if count:
        print(f"holding {count} idle connections through each target", file=sys.stderr)


def repeat_count(repeat: int | None, quick: bool) -> int:
    """``--repeat``, else 3 (1 with ``--quick``)."""
    if repeat is not None:
        return repeat
    return 1 if quick else 3


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _stop_all(servers: list[Server]) -> None:
    for server in reversed(servers):
        server.stop()


# --------------------------------------------------------------------------
# Starting the columns
# --------------------------------------------------------------------------


def _external_proxy(target: Target) -> Column:
    """A proxy somebody else runs: traffic only, its PID and admin API are unknown."""
    try:
        wait_amqp_ready(target, None, READY_TIMEOUT)
    except AmqpError as exc:
        raise SystemExit(f"proxy at {target} is not usable: {exc}") from exc
    return Column("proxy", target)


def _proxy_columns(args: argparse.Namespace, workdir: Path, servers: list[Server]) -> list[Column]:
    """proxy [+ proxy-tls] [+ proxy-nosrc]."""
    if args.no_proxy:
        return []
    if args.proxy is not None:
        return [_external_proxy(args.proxy)]
    server, proxy = start_proxy("proxy", args.broker, workdir, workdir / "ctl")
    servers.append(server)
    columns = [proxy]
    if args.tls:
        columns.append(start_tls_listener(proxy, workdir / "ctl", workdir))
    if args.also_no_per_source:
        # A second proxy with per-source statistics off: the cost of statistics.
        ctl = workdir / "ctl-nosrc"
        server, nosrc = start_proxy("proxy-nosrc", args.broker, workdir, ctl)
        servers.append(server)
        reply = control_line(ctl, "STAT DISABLE per-source")
        print(f"proxy-nosrc: STAT DISABLE per-source -> {reply.strip()}", file=sys.stderr)
        columns.append(nosrc)
    if args.also_coalescing:
        # A third proxy with read coalescing on: streaming reads batched (--coalesceReadsMs).
        window = str(args.also_coalescing)
        server, coalescing = start_proxy(
            "proxy-coalesce",
            args.broker,
            workdir,
            workdir / "ctl-coalesce",
            extra=["--coalesceReadsMs", window],
        )
        servers.append(server)
        print(f"proxy-coalesce: --coalesceReadsMs {window}", file=sys.stderr)
        columns.append(coalescing)
    if args.also_base is not None:
        server, base = start_proxy(
            "proxy-base", args.broker, workdir, workdir / "ctl-base", source=args.also_base
        )
        servers.append(server)
        columns.append(base)
    if args.also_traced:
        server, traced = start_proxy("proxy-traced", args.broker, workdir, workdir / "ctl-traced")
        servers.append(server)
        assert traced.admin is not None
        body = {"vhost": "/", "max_frames": 1_000_000_000, "max_seconds": 86_400}
        status, trace = traced.admin.post_json("/api/v1/traces", body)
        if status != 201:
            raise SystemExit(f"proxy-traced: POST /api/v1/traces answered {status}: {trace}")
        print(f"proxy-traced: trace {trace['id']} of vhost / (every session)", file=sys.stderr)
        columns.append(traced)
    return columns


def start_columns(args: argparse.Namespace, workdir: Path, servers: list[Server]) -> list[Column]:
    """direct, then every intermediary asked for (each started server joins ``servers``)."""
    columns = [Column("direct", args.broker), *_proxy_columns(args, workdir, servers)]
    if not args.no_haproxy:
        binary = haproxy.find_haproxy()
        if binary is None:
            print(haproxy.INSTALL_HINT, file=sys.stderr)
        else:
            variants = [haproxy.DEFAULT]
            if args.also_haproxy_splice:
                variants.append(haproxy.SPLICE)
            if args.also_haproxy_one_thread:
                variants.append(haproxy.ONE_THREAD)
            for variant in variants:
                server, column = start_haproxy(binary, args.broker, workdir, variant)
                servers.append(server)
                columns.append(column)
    if args.also_forwarder:
        server, column = start_forwarder(args.broker, workdir)
        servers.append(server)
        columns.append(column)
    return columns


# --------------------------------------------------------------------------
# Running the rounds
# --------------------------------------------------------------------------


def _dead_server(servers: list[Server]) -> Server | None:
    return next((s for s in servers if s.proc.poll() is not None), None)


def run_rounds(
    scenario: str,
    columns: list[Column],
    params: Params,
    repeat: int,
    servers: list[Server],
) -> tuple[dict[str, list[Metrics]], list[list[str]]]:
    """``repeat`` rounds of every column, rotated; per-target runs and each round's order."""
    by_name = {c.name: c for c in columns}
    runs: dict[str, list[Metrics]] = {c.name: [] for c in columns}
    orders: list[list[str]] = []
    for r in range(repeat):
        order = round_order(list(by_name), r)
        orders.append(order)
        for name in order:
            runs[name].append(_run_one(scenario, by_name[name], params, r, repeat))
        dead = _dead_server(servers)
        if dead is not None:
            code = dead.proc.returncode
            raise SystemExit(f"{dead.name} exited (code {code}):\n{dead.stderr_text()}")
    return runs, orders


def measure(scenario: str, column: Column, params: Params) -> Metrics:
    """One run; around the CPU scenarios the intermediary's CPU time is read too."""
    run = functools.partial(run_scenario, scenario, column.target, params, column.probe)
    if scenario not in CPU_SCENARIOS or column.pid is None:
        return dict(run())
    before = cpu_seconds(column.pid)
    metrics: Metrics = dict(run())
    after = cpu_seconds(column.pid)
    if before is not None and after is not None:
        metrics |= cpu_metrics(scenario, metrics, after - before)
    return metrics


def _run_one(scenario: str, column: Column, params: Params, r: int, repeat: int) -> Metrics:
    print(f"  {scenario:8} {r + 1}/{repeat} {column.name:11} ... ", end="", file=sys.stderr)
    sys.stderr.flush()
    t0 = time.monotonic()
    try:
        metrics = measure(scenario, column, params)
    except (OSError, AmqpError) as exc:
        print(f"FAILED ({exc})", file=sys.stderr, flush=True)
        return {"error": f"{type(exc).__name__}: {exc}"}
    shown = ", ".join(f"{k}={v:,.1f}" for k, v in metrics.items() if isinstance(v, float))
    print(f"{shown} [{time.monotonic() - t0:.1f}s]", file=sys.stderr, flush=True)
    return metrics


def _print_results(
    args: argparse.Namespace, summary: dict[str, Any], runs: Runs, names: list[str]
) -> int:
    """Table of medians, the lines under it, errors, JSON; returns the exit code."""
    med = medians(runs)
    print()
    print(report.table_text(med, names))
    for line in report.notes_text(summary["repeat"], names, med):
        print(line)
    for line in report.added_latency_text(med, names):
        print(line)
    for line in report.cpu_vs_haproxy_text(med, names):
        print(line)
    for line in report.tls_cost_text(med, names):
        print(line)
    for line in report.load_generator_text(med):
        print(line)
    errors = report.errors_text(runs)
    for line in errors:
        print(line)
    if args.json:
        print(report.json_text({**summary, "runs": runs}, med))
    return 1 if errors else 0


def run(args: argparse.Namespace) -> int:
    """Start intermediaries, run scenarios, print results; returns exit code."""
    if args.tls and (args.no_proxy or args.proxy is not None):
        print("--tls needs the proxy the benchmark starts itself", file=sys.stderr)
        return 2
    params = with_amqpperf(args, make_params(args))
    scenarios = selected_scenarios(args.only, args.quick, go=params.amqpperf is not None)
    repeat = repeat_count(args.repeat, args.quick)
    info = report.machine_info()
    print(report.header_text(info), flush=True)
    soft, hard = raise_nofile_limit()  # before starting children: they inherit it
    print(f"open-files limit: {soft} (hard {hard})", file=sys.stderr)
    servers: list[Server] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="amqpprox-bench-")))
        stack.callback(_stop_all, servers)
        columns = start_columns(args, workdir, servers)
        hold_idle(columns, args.background_idle, stack)
        names = [c.name for c in columns]
        addrs = {c.name: str(c.target) for c in columns}
        print(report.targets_text(addrs), flush=True)
        print(f"params: {params}, repeat={repeat}", flush=True)
        runs: Runs = {}
        orders: dict[str, list[list[str]]] = {}
        for scenario in scenarios:
            runs[scenario], orders[scenario] = run_rounds(
                scenario, columns, params, repeat, servers
            )
        summary = {
            "machine": info,
            "targets": addrs,
            "pids": {c.name: c.pid for c in columns},
            "params": params.__dict__,
            "repeat": repeat,
            "orders": orders,
            "background_idle": args.background_idle,
        }
        return _print_results(args, summary, runs, names)


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m bench``."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaned up", file=sys.stderr)
        return 130
