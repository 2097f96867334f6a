"""The independent load generator: ``amqpperf``, a Go program on RabbitMQ's amqp091-go.

The bench's own generator (:mod:`bench.rawamqp`) writes each handshake step in one
``sendall`` and sends no client properties to speak of; a real client library does
not. ``amqpperf`` (in ``shared/tools/amqpperf`` beside the project) is built here, once,
when Go and Debian's ``golang-github-rabbitmq-amqp091-go-dev`` are installed, and
drives four scenarios of its own beside the bench's:

* ``go-msgs``    - 100-byte messages, one producer + one consumer connection, for a time
* ``go-mib``     - 1 MiB messages, the same layout
* ``go-conn``    - ``amqp.Dial`` + ``Close`` cycles from 4 goroutines
* ``go-latency`` - publish one message, wait for its delivery, repeat

Each prints one JSON object; this module turns it into the bench's metric names, so the
table shows the same units as the bench's own scenarios.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.rawamqp import AmqpError, Target

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = PROJECT_ROOT.parent / "shared" / "tools" / "amqpperf"
BUILD_DIR = PROJECT_ROOT / "build" / "amqpperf"
# Debian's packaging of amqp091-go installs its source under this GOPATH.
GOPATH = Path("/usr/share/gocode")
LIBRARY = GOPATH / "src" / "github.com" / "rabbitmq" / "amqp091-go"
INSTALL_HINT = (
    "amqpperf not built: it needs Go and amqp091-go (Debian: apt-get install golang-go "
    "golang-github-rabbitmq-amqp091-go-dev) and its source in ../shared/tools/amqpperf; "
    "the go-* scenarios are skipped"
)
SCENARIOS = ("go-msgs", "go-mib", "go-conn", "go-latency")
CPU_SCENARIOS = ("go-msgs", "go-mib", "go-conn")
MIB = 1 << 20


@dataclass(frozen=True)
class GoParams:
    """How long each ``amqpperf`` run lasts (it runs for a time, not a count)."""

    seconds: float = 8.0
    conn_concurrency: int = 4
    msg_size: int = 100


def build() -> Path | None:
    """The built binary (rebuilt when its source is newer), or None when it cannot be."""
    source = SOURCE_DIR / "main.go"
    go = shutil.which("go")
    if go is None or not source.is_file() or not LIBRARY.is_dir():
        return None
    binary = BUILD_DIR / "amqpperf"
    if binary.is_file() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GO111MODULE="off", GOPATH=str(GOPATH), GOCACHE=str(BUILD_DIR / "cache"))
    done = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=SOURCE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"building amqpperf failed:\n{done.stderr}")
    return binary


def url_of(target: Target) -> tuple[str, dict[str, str]]:
    """The URL ``amqpperf`` dials, and the environment its TLS needs (the bench's CA)."""
    if target.tls_ca is None:
        return f"amqp://guest:guest@{target.host}:{target.port}/", {}
    # Go verifies the name in the URL; SSL_CERT_FILE makes the throwaway CA its only root.
    url = f"amqps://guest:guest@{target.tls_server_name}:{target.port}/"
    return url, {"SSL_CERT_FILE": target.tls_ca}


def _run(binary: Path, target: Target, args: list[str], seconds: float) -> dict[str, float]:
    url, extra_env = url_of(target)
    done = subprocess.run(
        [str(binary), "-url", url, *args],
        env=dict(os.environ, **extra_env),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    if done.returncode != 0:
        raise AmqpError(f"amqpperf {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise AmqpError(f"amqpperf printed no result: {done.stdout!r}") from exc
    if not isinstance(result, dict):
        raise AmqpError(f"amqpperf printed {result!r}")
    if result.get("errors"):
        raise AmqpError(f"amqpperf counted {result['errors']} errors")
    return {k: float(v) for k, v in result.items() if isinstance(v, (int, float))}


def run(binary: Path, name: str, target: Target, p: GoParams) -> dict[str, float]:
    """One ``amqpperf`` run of scenario ``name`` through ``target``, in the bench's units."""
    duration = f"{p.seconds}s"
    queue = f"amqpperf-{uuid.uuid4().hex[:12]}"
    if name in ("go-msgs", "go-mib"):
        size = p.msg_size if name == "go-msgs" else MIB
        args = ["-mode", "throughput", "-d", duration, "-size", str(size), "-q", queue]
        out = _run(binary, target, args, p.seconds)
        if out.get("consumed", 0.0) <= 0:
            raise AmqpError("amqpperf consumed nothing")
        return {
            "msgs_per_s": out["con_rate"],
            "mib_per_s": out["con_rate"] * size / MIB,
            "messages": out["consumed"],
            "seconds": out["seconds"],
        }
    if name == "go-conn":
        out = _run(
            binary, target,
            ["-mode", "connect", "-d", duration, "-conc", str(p.conn_concurrency)],
            p.seconds,
        )  # fmt: skip
        return {
            "conn_per_s": out["conn_rate"],
            "connections": out["connections"],
            "connect_p50_us": out["p50_us"],
        }
    if name == "go-latency":
        out = _run(binary, target, ["-mode", "rpc", "-d", duration, "-q", queue], p.seconds)
        return {"p50_us": out["p50_us"], "p99_us": out["p99_us"], "samples": out["consumed"]}
    raise ValueError(f"unknown amqpperf scenario {name!r}")
