"""Command line: start the proxy (and optionally a plain forwarder), run the
scenarios against the direct broker and through each intermediary, print a
side-by-side table."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from bench import report
from bench.pki import SERVER_NAME, make_pki
from bench.procs import Server, free_port, wait_amqp_ready
from bench.rawamqp import AmqpError, Target
from bench.scenarios import SCENARIOS, Params, run_scenario

PROJECT_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 15.0


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
        "--no-proxy", action="store_true", help="skip the proxy column (direct [+ forwarder] only)"
    )
    ap.add_argument(
        "--also-forwarder", action="store_true", help="add a column for bench.tcpforward (plain L4)"
    )
    ap.add_argument(
        "--only", choices=SCENARIOS, action="append", help="run only this scenario (repeatable)"
    )
    ap.add_argument(
        "--quick", action="store_true", help="short run (each scenario well under 20 s)"
    )
    ap.add_argument("--json", action="store_true", help="also print a JSON summary")
    ap.add_argument(
        "--also-no-per-source",
        action="store_true",
        help="add a column for a second proxy with per-source statistics disabled",
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
    ap.add_argument("--samples", type=int, help="override the latency sample count")
    return ap


def make_params(args: argparse.Namespace) -> Params:
    """Defaults or --quick, with explicit overrides applied."""
    p = Params.quick() if args.quick else Params()
    overrides = {
        "msg_count": args.messages,
        "mib_count": args.mib_messages,
        "conn_seconds": args.conn_seconds,
        "latency_samples": args.samples,
    }
    fields = {k: v for k, v in overrides.items() if v is not None}
    if fields:
        p = Params(**{**p.__dict__, **fields})
    return p


def control_line(path: Path, line: str, timeout: float = 5.0) -> str:
    """Send one line to an amqpprox control socket; return the reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(line.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _stop_all(servers: list[Server]) -> None:
    for server in reversed(servers):
        server.stop()


def _start_server(name: str, argv: list[str], workdir: Path, port: int) -> Server:
    """Start a server child and wait for a full AMQP handshake through it."""
    print(f"starting {name}: {' '.join(argv)}", file=sys.stderr, flush=True)
    server = Server(name, argv, workdir)
    try:
        wait_amqp_ready(Target("127.0.0.1", port), server.proc, READY_TIMEOUT)
    except AmqpError as exc:
        server.stop()
        print(f"{name} did not come up: {exc}\n{server.stderr_text()}", file=sys.stderr)
        raise SystemExit(1) from exc
    return server


def start_tls_listener(ctl: Path, workdir: Path) -> Target:
    """Give the proxy behind ``ctl`` a secure listener with a fresh certificate."""
    pki = make_pki(workdir)
    port = free_port()
    for line in (
        f"TLS INGRESS CERT_CHAIN_FILE {pki.server_cert}",
        f"TLS INGRESS KEY_FILE {pki.server_key}",
        f"LISTEN START_SECURE {port}",
    ):
        reply = control_line(ctl, line)
        if reply.strip():
            raise SystemExit(f"proxy refused {line!r}: {reply.strip()}")
    target = Target("127.0.0.1", port, tls_ca=str(pki.ca_cert), tls_server_name=SERVER_NAME)
    try:
        wait_amqp_ready(target, None, READY_TIMEOUT)
    except AmqpError as exc:
        raise SystemExit(f"TLS listener on {port} is not usable: {exc}") from exc
    return target


def run(args: argparse.Namespace) -> int:
    """Start intermediaries, run scenarios, print results; returns exit code."""
    if args.tls and (args.no_proxy or args.proxy is not None):
        print("--tls needs the proxy the benchmark starts itself", file=sys.stderr)
        return 2
    params = make_params(args)
    scenarios = [s for s in SCENARIOS if not args.only or s in args.only]
    info = report.machine_info()
    print(report.header_text(info), flush=True)
    targets: dict[str, Target] = {"direct": args.broker}
    servers: list[Server] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="amqpprox-bench-")))
        stack.callback(_stop_all, servers)
        if not args.no_proxy:
            if args.proxy is not None:
                try:
                    wait_amqp_ready(args.proxy, None, READY_TIMEOUT)
                except AmqpError as exc:
                    print(f"proxy at {args.proxy} is not usable: {exc}", file=sys.stderr)
                    return 1
                targets["proxy"] = args.proxy
            else:
                port = free_port()
                (workdir / "logs").mkdir()
                argv = [
                    sys.executable, "-m", "amqpprox",
                    "--listenPort", str(port),
                    "--destinationDNS", args.broker.host,
                    "--destinationPort", str(args.broker.port),
                    "--controlSocket", str(workdir / "ctl"),
                    "--logDirectory", str(workdir / "logs"),
                    "--adminPort", "0",
                ]  # fmt: skip
                servers.append(_start_server("proxy", argv, workdir, port))
                targets["proxy"] = Target("127.0.0.1", port)
                if args.tls:
                    # The same proxy process: the column differs from "proxy" by TLS alone.
                    targets["proxy-tls"] = start_tls_listener(workdir / "ctl", workdir)
        if args.also_no_per_source and not args.no_proxy and args.proxy is None:
            # A second proxy with per-source statistics off: the cost of statistics.
            port = free_port()
            ctl = workdir / "ctl-nosrc"
            argv = [
                sys.executable, "-m", "amqpprox",
                "--listenPort", str(port),
                "--destinationDNS", args.broker.host,
                "--destinationPort", str(args.broker.port),
                "--controlSocket", str(ctl),
                "--logDirectory", str(workdir / "logs"),
                "--adminPort", "0",
            ]  # fmt: skip
            servers.append(_start_server("proxy-nosrc", argv, workdir, port))
            reply = control_line(ctl, "STAT DISABLE per-source")
            print(f"proxy-nosrc: STAT DISABLE per-source -> {reply.strip()}", file=sys.stderr)
            targets["proxy-nosrc"] = Target("127.0.0.1", port)
        if args.also_forwarder:
            port = free_port()
            argv = [
                sys.executable, "-m", "bench.tcpforward",
                "--listen-port", str(port), "--target", str(args.broker),
            ]  # fmt: skip
            servers.append(_start_server("forwarder", argv, workdir, port))
            targets["forwarder"] = Target("127.0.0.1", port)

        names = list(targets)
        addrs = {n: str(t) for n, t in targets.items()}
        print(report.targets_text(addrs), flush=True)
        print(f"params: {params}", flush=True)
        results: report.Results = {}
        for scenario in scenarios:
            for name in names:
                results.setdefault(scenario, {})[name] = _run_one(
                    scenario, name, targets[name], params
                )
            for server in servers:
                if server.proc.poll() is not None:
                    code = server.proc.returncode
                    print(f"{server.name} exited (code {code}):\n{server.stderr_text()}")
                    return 1
        print()
        print(report.table_text(results, names))
        for line in report.added_latency_text(results, names):
            print(line)
        for line in report.tls_cost_text(results, names):
            print(line)
        errors = report.errors_text(results)
        for line in errors:
            print(line)
        if args.json:
            print(report.json_text(info, addrs, results))
        return 1 if errors else 0


def _run_one(scenario: str, name: str, target: Target, params: Params) -> dict[str, float | str]:
    print(f"  {scenario:8} {name:9} ... ", end="", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        metrics: dict[str, float | str] = dict(run_scenario(scenario, target, params))
    except (OSError, AmqpError) as exc:
        print(f"FAILED ({exc})", file=sys.stderr, flush=True)
        return {"error": f"{type(exc).__name__}: {exc}"}
    shown = ", ".join(f"{k}={v:,.1f}" for k, v in metrics.items() if isinstance(v, float))
    print(f"{shown} [{time.monotonic() - t0:.1f}s]", file=sys.stderr, flush=True)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m bench``."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaned up", file=sys.stderr)
        return 130
