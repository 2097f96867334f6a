"""The Context every front end works through: settings, state, sessions, listeners.

``runtime`` builds exactly one. It also owns the per-process state that is not
configuration: the statistics (``stats``, a ``core.stats.StatsHub``) and the admission
limiters (``admission``, a ``core.limits.Admission``) and the evictions and migrations
(``moves``, a ``core.moves.TrafficMoves``). The listener manager is described
here as a Protocol so that ``core`` and ``admin`` never import the data plane.
``core.stats`` and ``core.limits`` import this module only for type checking.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from typing import Protocol

from amqpprox.core.health import HealthBook
from amqpprox.core.hostnames import HostnameMapper
from amqpprox.core.limits import Admission
from amqpprox.core.model import ListenerSpec
from amqpprox.core.moves import TrafficMoves
from amqpprox.core.sessions import SessionRegistry
from amqpprox.core.state import ProxyState
from amqpprox.core.stats import StatsHub
from amqpprox.core.tls import NoTls, TlsControl
from amqpprox.core.traces import TraceRegistry


@dataclass(frozen=True, slots=True)
class Settings:
    """Process-wide settings; every wait of the data plane has a deadline here."""

    control_socket: str = "/tmp/amqpprox"
    # A control client must send its line, and keep reading its reply, within this.
    control_client_timeout: float = 30.0
    log_directory: str = "logs"
    cleanup_interval_ms: int = 1000
    console_verbosity: int = 0
    admin_host: str = "127.0.0.1"
    admin_port: int = 15673
    # An admin HTTP client must send a request's head (line and headers) within
    # admin_header_timeout of connecting or of the previous response (an idle keep-alive
    # connection is closed then too), and its body within admin_body_timeout of the head.
    admin_header_timeout: float = 10.0
    admin_body_timeout: float = 30.0
    client_handshake_timeout: float = 10.0
    connect_timeout: float = 5.0
    broker_handshake_timeout: float = 10.0
    graceful_close_timeout: float = 5.0
    drain_timeout: float = 10.0
    dns_cache_seconds: float = 1.0
    # TLS handshakes (secure listeners, TLS backends) and an ingress PROXY header.
    tls_handshake_timeout: float = 10.0
    proxy_header_timeout: float = 5.0
    max_frame_size: int = 131072
    stream_max_frame_size: int = 1048576  # RabbitMQ Streams frames (the broker's default)
    # The host stream clients are sent back to (Open and Metadata responses); empty: the
    # address each client connected to.
    stream_advertised_host: str = ""
    # LIMIT: a refused client gets its Connection.Close after this delay (the original: 750 ms).
    limit_close_delay: float = 0.75
    # AUTH SERVICE: the whole exchange with the auth service (the original: 30 s + 30 s).
    auth_timeout: float = 10.0
    # Send StartOk, TuneOk and Open to the broker without waiting for Start and Tune.
    pipeline_broker_handshake: bool = True
    # Read coalescing (proxy.coalescing): how long a streaming side is left unread so that
    # its reads batch up, in milliseconds; 0 (the default) reads as soon as data arrives.
    coalesce_reads_ms: int = 0
    hostname: str = field(default_factory=socket.gethostname)
    # REST: with a token, writes (and, with admin_token_for_reads, reads) need it as Bearer.
    admin_token: str | None = None
    admin_token_for_reads: bool = False
    # Host names the admin plane answers to besides loopback and admin_host (DNS rebinding).
    admin_allowed_hosts: tuple[str, ...] = ()
    # A definitions document applied at startup (amqpprox --definitions FILE).
    definitions_file: str | None = None
    # Reload definitions_file when it changes (inotify; SIGHUP reloads it in any case).
    watch_definitions: bool = False
    # Every configuration change is saved here before it is acknowledged, and restored at
    # start (amqpprox --stateFile PATH; core.persist). An existing one wins over definitions_file.
    state_file: str | None = None
    # Without active checks, a backend marked down by failed session attempts is tried
    # again this many seconds after its last failure (core.health).
    health_passive_retry: float = 10.0
    # When a farm is redefined without a backend, that backend's sessions routed through
    # the farm are closed (Close 320) at this many a second (--farmChangeEvictPerSecond);
    # 0 leaves them alone (core.moves).
    farm_change_evict_per_second: int = 10
    # Where trace files are written (TRACE ... FILE name); None: "traces" in log_directory.
    trace_directory: str | None = None


class ListenerControl(Protocol):
    """What the control plane may do with AMQP listeners."""

    async def start(self, spec: ListenerSpec) -> int:
        """Start listening; returns the bound port. Raises InvalidState if it cannot bind."""
        ...

    async def stop(self, port: int | None = None) -> list[int]:
        """Stop one listener (or all); returns the ports stopped."""
        ...

    def specs(self) -> list[ListenerSpec]: ...

    def counters(self, port: int) -> dict[str, int]:
        """What the listener on ``port`` (running or stopped) turned away, by counter name:
        ``accepted``, ``proxy_header_rejected``, ``tls_handshake_failures`` (zeros for a
        port never listened on)."""
        ...

    def counted_ports(self) -> list[int]:
        """Every port a listener has served since start (stopped ones too), sorted."""
        ...

    def listened_specs(self) -> list[ListenerSpec]:
        """The last spec of every port a listener has served since start, by port."""
        ...


class Context:
    """Everything the operations act on."""

    def __init__(
        self,
        settings: Settings,
        listeners: ListenerControl,
        *,
        state: ProxyState | None = None,
        sessions: SessionRegistry | None = None,
        tls: TlsControl | None = None,
    ) -> None:
        self.settings = settings
        self.state = state if state is not None else ProxyState()
        self.sessions = sessions if sessions is not None else SessionRegistry()
        # Vhosts clients merely name stay out of per-vhost labels (core.sessions).
        self.sessions.known_vhost = self.state.is_known_vhost
        self.listeners = listeners
        # The data plane's TLS contexts (proxy.tls.TlsContexts); settings only without it.
        self.tls: TlsControl = tls if tls is not None else NoTls()
        self.hostnames = HostnameMapper()
        # Backend health (core.health): fed by the data plane, read by every front end.
        self.health = HealthBook()
        self.health.check_of = self.state.effective_check
        self.health.passive_retry = settings.health_passive_retry
        # Interval baselines, STAT/statsd sinks, latency histograms, connect failures.
        self.stats = StatsHub()
        # Connection-rate windows and admitted-session counts (LIMIT, REST limits).
        self.admission = Admission()
        # Paced evictions and vhost migrations; a farm losing members evicts their sessions.
        self.moves = TrafficMoves(self)
        self.state.on_members_left = self.moves.farm_changed
        # On-demand AMQP traces (core.traces); the data plane taps the sessions they follow.
        self.traces = TraceRegistry()
        self.started_at = time.time()
        self.shutdown = asyncio.Event()
        self.ready = asyncio.Event()
