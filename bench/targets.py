"""The columns of the table: the direct broker and the intermediaries the bench starts.

Each intermediary is a :class:`~bench.procs.Server` child (own session, dies with the
bench); its :class:`Column` carries what the scenarios may measure about it: the PID
(CPU, RSS) and, for amqpprox, the admin API.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import haproxy
from bench.adminapi import AdminApi
from bench.idle import Probe
from bench.pki import SERVER_NAME, make_pki
from bench.procs import Server, free_port, wait_amqp_ready
from bench.rawamqp import AmqpError, Target

READY_TIMEOUT = 15.0
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Column:
    """One target of the benchmark and what is known about the process behind it."""

    name: str
    target: Target
    pid: int | None = None  # the process relaying the traffic (None: direct, external)
    admin: AdminApi | None = None

    @property
    def probe(self) -> Probe:
        """What the idle scenario may inspect."""
        return Probe(pid=self.pid, admin=self.admin)


def start_server(name: str, argv: list[str], workdir: Path, port: int) -> Server:
    """Start a server child and wait for a full AMQP handshake through it."""
    print(f"starting {name}: {' '.join(argv)}", file=sys.stderr, flush=True)
    server = Server(name, argv, workdir)
    try:
        wait_amqp_ready(Target(LOOPBACK, port), server.proc, READY_TIMEOUT)
    except AmqpError as exc:
        server.stop()
        print(f"{name} did not come up: {exc}\n{server.stderr_text()}", file=sys.stderr)
        raise SystemExit(1) from exc
    return server


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


def proxy_argv(
    port: int,
    broker: Target,
    ctl: Path,
    logdir: Path,
    admin_port: int,
    *,
    extra: Sequence[str] = (),
    source: Path | None = None,
) -> list[str]:
    """``python -m amqpprox`` in simple mode, admin API on 127.0.0.1:admin_port, then ``extra``.

    ``source``: run the amqpprox package of that source tree instead (a build of another
    revision, its C extension built in place), with this interpreter's dependencies.
    """
    run = ["-m", "amqpprox"]
    if source is not None:
        run = ["-c", _RUN_FROM.format(str(source.resolve()))]
    return [
        sys.executable, *run,
        "--listenPort", str(port),
        "--destinationDNS", broker.host,
        "--destinationPort", str(broker.port),
        "--controlSocket", str(ctl),
        "--logDirectory", str(logdir),
        "--adminHost", LOOPBACK,
        "--adminPort", str(admin_port),
        *extra,
    ]  # fmt: skip


_RUN_FROM = (
    "import runpy, sys; sys.path.insert(0, {!r}); "
    "runpy.run_module('amqpprox', run_name='__main__', alter_sys=True)"
)


def start_proxy(
    name: str,
    broker: Target,
    workdir: Path,
    ctl: Path,
    *,
    extra: Sequence[str] = (),
    source: Path | None = None,
) -> tuple[Server, Column]:
    """An amqpprox child on free ports; returns once AMQP and its admin API answer."""
    port, admin_port = free_port(), free_port()
    logdir = workdir / "logs"
    logdir.mkdir(exist_ok=True)
    argv = proxy_argv(port, broker, ctl, logdir, admin_port, extra=extra, source=source)
    server = start_server(name, argv, workdir, port)
    admin = AdminApi(LOOPBACK, admin_port)
    try:
        admin.wait_ready(READY_TIMEOUT)
    except AmqpError as exc:
        server.stop()
        raise SystemExit(f"{name}: {exc}\n{server.stderr_text()}") from exc
    return server, Column(name, Target(LOOPBACK, port), server.proc.pid, admin)


def start_tls_listener(proxy: Column, ctl: Path, workdir: Path) -> Column:
    """Give the proxy behind ``ctl`` a secure listener with a fresh certificate.

    The column shares the proxy's process (PID, admin API): it differs by TLS alone.
    """
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
    target = Target(LOOPBACK, port, tls_ca=str(pki.ca_cert), tls_server_name=SERVER_NAME)
    try:
        wait_amqp_ready(target, None, READY_TIMEOUT)
    except AmqpError as exc:
        raise SystemExit(f"TLS listener on {port} is not usable: {exc}") from exc
    return Column("proxy-tls", target, proxy.pid, proxy.admin)


def start_haproxy(
    binary: str, broker: Target, workdir: Path, variant: haproxy.Variant = haproxy.DEFAULT
) -> tuple[Server, Column]:
    """HAProxy in the foreground with a generated ``mode tcp`` configuration."""
    port = free_port()
    maxconn = haproxy.maxconn_for_this_process(splice=variant.splice)
    if maxconn < haproxy.MAXCONN:
        print(
            f"haproxy: maxconn {maxconn} instead of {haproxy.MAXCONN}: the open-files hard "
            "limit allows no more (two descriptors per connection, more with splice)",
            file=sys.stderr,
        )
    config = haproxy.write_config(workdir, port, broker, maxconn, variant)
    server = start_server(variant.name, haproxy.argv(binary, config), workdir, port)
    return server, Column(variant.name, Target(LOOPBACK, port), server.proc.pid)


def start_forwarder(broker: Target, workdir: Path) -> tuple[Server, Column]:
    """The plain asyncio L4 forwarder in :mod:`bench.tcpforward`."""
    port = free_port()
    argv = [
        sys.executable, "-m", "bench.tcpforward",
        "--listen-port", str(port), "--target", str(broker),
    ]  # fmt: skip
    server = start_server("forwarder", argv, workdir, port)
    return server, Column("forwarder", Target(LOOPBACK, port), server.proc.pid)
