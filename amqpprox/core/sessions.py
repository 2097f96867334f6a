"""Live sessions and their counters; totals of the sessions already removed.

``SessionBase`` is what every front end sees of a session: identity, endpoints, state,
flags and the traffic counters, which the relay keeps as plain ints on the object
itself (no locks, no metric objects on the hot path). The data plane subclasses it and
implements the control actions. ``SessionRegistry`` owns the live sessions: ids start
at 1, finished sessions stay visible until the next cleanup (as the original's CONN
shows them), and the counters of removed sessions are folded into retained totals so
aggregates never go backwards.

A vhost name comes from the client, so it is a label only once it is known
(``known_vhost``: configured, or opened by some session); the statistics ask
``SessionRegistry.vhost_label`` and see ``UNKNOWN_VHOST`` for the others, so clients
inventing vhost names cannot grow the retained totals or the metrics.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from amqpprox.amqp.identity import ClientIdentity, identify
from amqpprox.amqp.methods import ConnectionStartOk, ConnectionTuneOk

ZERO_ENDPOINT = ("0.0.0.0", 0)
# The vhost label of sessions that never named a vhost, or named one that is neither
# configured nor ever opened: a bounded label for what unauthenticated clients send.
UNKNOWN_VHOST = ""
_NO_IDENTITY = ClientIdentity()


class SessionState(enum.Enum):
    """Where a session is in its life, as the admin plane reports it."""

    __hash__ = object.__hash__  # singletons: identity hash, as lifecycle.Phase

    HANDSHAKING = "handshaking"  # playing the broker, before Connection.Open
    HELD = "held"  # Open received while its vhost is paused: waits for VHOST UNPAUSE
    CONNECTING = "connecting"  # choosing a backend and replaying the handshake to it
    ACTIVE = "active"  # relaying frames
    PAUSED = "paused"  # relaying broker->client only
    CLOSING = "closing"  # a graceful close is in progress
    BROKER_DISCONNECTED = "broker_disconnected"  # BACKEND_DISCONNECT: the client stays
    CLOSED = "closed"


class CloseReason(enum.Enum):
    """Why a session ended (the ``reason`` label of the closed-sessions metric)."""

    __hash__ = object.__hash__  # singletons: identity hash, as lifecycle.Phase

    CLIENT_GRACEFUL = "client_graceful"
    CLIENT_SNAPPED = "client_snapped"
    BROKER_SNAPPED = "broker_snapped"
    BROKER_UNRESPONSIVE = "broker_unresponsive"  # nothing from it for two heartbeats
    PROXY_GRACEFUL = "proxy_graceful"
    PROXY_FORCED = "proxy_forced"
    BACKEND_DISCONNECTED = "backend_disconnected"  # BACKEND_DISCONNECT, then the client left
    AUTH_DENIED = "auth_denied"
    LIMITED = "limited"
    NO_MAPPING = "no_mapping"
    BROKEN_MAPPING = "broken_mapping"  # mapped to a farm or backend that does not exist
    NO_BACKEND = "no_backend"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    PROTOCOL_ERROR = "protocol_error"


class SessionBase:
    """One client connection paired with at most one broker connection."""

    # The relay increments these with ``+=`` in its callbacks; nothing else writes them.
    in_bytes: int
    in_frames: int
    in_packets: int
    out_bytes: int
    out_frames: int
    out_packets: int
    in_coalesce_waits: int
    out_coalesce_waits: int

    def __init__(
        self,
        session_id: int,
        client: tuple[str, int],
        local: tuple[str, int],
        *,
        secure: bool = False,
    ) -> None:
        self.id = session_id
        self.client = client
        self.local = local
        self.secure = secure
        self.vhost = ""
        self.connection_name = ""
        self.protocol = "amqp"  # or "stream" (RabbitMQ Streams)
        # Who the client said it is and what it negotiated: the handshake's StartOk and
        # TuneOk, kept at Connection.Open and read into ``identity`` when first asked.
        self._identity = _NO_IDENTITY
        self._handshake: tuple[ConnectionStartOk, ConnectionTuneOk | None] | None = None
        self.state = SessionState.HANDSHAKING
        self.paused = False
        self.auth_denied = False
        self.limited = False
        self.close_reason: CloseReason | None = None
        self.backend_name: str | None = None
        self.farm_name: str | None = None
        self.egress_local: tuple[str, int] = ZERO_ENDPOINT
        self.egress_remote: tuple[str, int] = ZERO_ENDPOINT
        self.started_at = time.time()
        self.opened_at: float | None = None
        self.closed_at: float | None = None
        self.last_in_at = time.monotonic()  # monotonic clock: for "seconds since last read"
        self.last_out_at = self.last_in_at
        self.connect_failures = 0
        # Handshake milestones on the monotonic clock, set once each by the data plane
        # (never per frame); the statistics derive latencies from them at read time.
        self.accepted_mono = self.last_in_at
        self.open_received_mono: float | None = None  # Connection.Open from the client
        self.held_released_mono: float | None = None  # a VHOST PAUSE hold at Open ended
        self.connect_started_mono: float | None = None  # TCP connect to the broker began
        self.broker_connected_mono: float | None = None  # ... and completed
        self.open_ok_mono: float | None = None  # the broker's OpenOk relayed to the client
        self.in_bytes = self.in_frames = self.in_packets = 0
        self.out_bytes = self.out_frames = self.out_packets = 0
        # Read coalescing (--coalesceReadsMs): how often each side was left unread.
        self.in_coalesce_waits = self.out_coalesce_waits = 0
        # The vhost label the statistics settled on (``SessionRegistry.vhost_label``).
        self.stats_vhost: str | None = None

    @property
    def finished(self) -> bool:
        return self.close_reason is not None

    @property
    def identity(self) -> ClientIdentity:
        """Who the client said it is and what it negotiated (``amqp.identity``)."""
        handshake = self._handshake
        if handshake is not None:
            self._handshake = None
            self._identity = identify(*handshake)
        return self._identity

    def identified_by(self, start_ok: ConnectionStartOk, tune_ok: ConnectionTuneOk | None) -> None:
        """The client's handshake names it: read (once) when ``identity`` is first asked."""
        self._handshake = (start_ok, tune_ok)

    @property
    def lingering(self) -> bool:
        """Finished, but a socket is still being flushed: kept listed until it closes."""
        return False

    @property
    def handshake_seconds(self) -> float | None:
        """Connection.Open received (or, held by VHOST PAUSE, released) to OpenOk relayed:
        backend choice, connect, broker handshake; not the time the hold lasted."""
        start = self.held_released_mono or self.open_received_mono
        if start is None or self.open_ok_mono is None:
            return None
        return max(0.0, self.open_ok_mono - start)

    @property
    def backend_connect_seconds(self) -> float | None:
        """TCP connect time of the broker connection this session holds (its last attempt)."""
        if self.connect_started_mono is None or self.broker_connected_mono is None:
            return None
        return max(0.0, self.broker_connected_mono - self.connect_started_mono)

    # Control actions: implemented by the data plane.
    def pause(self) -> None:
        raise NotImplementedError

    def unpause(self) -> None:
        raise NotImplementedError

    def disconnect_graceful(self, reply_text: str = "OK", reply_code: int = 200) -> None:
        raise NotImplementedError

    def force_disconnect(self) -> None:
        raise NotImplementedError

    def backend_disconnect(self) -> None:
        raise NotImplementedError

    def release_held(self) -> None:
        """Connect a session held at Open (its vhost was unpaused)."""
        raise NotImplementedError


@dataclass
class Totals:
    """Counters folded in from sessions already removed from the registry."""

    sessions: int = 0
    in_bytes: int = 0
    in_frames: int = 0
    in_packets: int = 0
    out_bytes: int = 0
    out_frames: int = 0
    out_packets: int = 0
    in_coalesce_waits: int = 0
    out_coalesce_waits: int = 0
    opened: int = 0  # of those, sessions that reached OpenOk
    by_reason: dict[CloseReason, int] = field(default_factory=dict)

    def add(self, session: SessionBase) -> None:
        self.sessions += 1
        if session.opened_at is not None:
            self.opened += 1
        self._add_traffic(session)
        if session.close_reason is not None:
            self.by_reason[session.close_reason] = self.by_reason.get(session.close_reason, 0) + 1

    def merge(self, other: Totals) -> None:
        """Add another set of totals (removed sessions of another group) to these."""
        self.sessions += other.sessions
        self.opened += other.opened
        self._add_traffic(other)
        for reason, count in other.by_reason.items():
            self.by_reason[reason] = self.by_reason.get(reason, 0) + count

    def _add_traffic(self, source: SessionBase | Totals) -> None:
        # Spelled out, not a loop of getattr/setattr: the cleanup job runs this for every
        # session that ends.
        self.in_bytes += source.in_bytes
        self.in_frames += source.in_frames
        self.in_packets += source.in_packets
        self.out_bytes += source.out_bytes
        self.out_frames += source.out_frames
        self.out_packets += source.out_packets
        self.in_coalesce_waits += source.in_coalesce_waits
        self.out_coalesce_waits += source.out_coalesce_waits


class SessionRegistry:
    """Owns the live sessions; the cleanup job removes finished ones."""

    def __init__(self) -> None:
        self._sessions: dict[int, SessionBase] = {}
        self._next_id = 1
        # The removed sessions' totals per (vhost, backend name or ""): what keeps
        # per-label counters monotonic; ``removed`` sums them.
        self.removed_by_route: dict[tuple[str, str], Totals] = {}
        self.removed_by_protocol: dict[str, Totals] = {}  # "amqp", "stream"
        self.opened_total = 0
        # Whether a vhost may be a label (the Context asks its ProxyState); by default all.
        self.known_vhost: Callable[[str], bool] = _every_vhost

    def vhost_label(self, session: SessionBase) -> str:
        """The vhost a session is counted under: its own once the vhost is known (or the
        session opened), else ``UNKNOWN_VHOST``. Settled for good once the session opened
        or finished, so its counters never move from one label to another."""
        label = session.stats_vhost
        if label is not None:
            return label
        vhost = session.vhost
        opened = session.opened_at is not None
        label = vhost if opened or self.known_vhost(vhost) else UNKNOWN_VHOST
        if opened or session.close_reason is not None:
            session.stats_vhost = label
        return label

    def next_id(self) -> int:
        session_id = self._next_id
        self._next_id += 1
        return session_id

    def add(self, session: SessionBase) -> None:
        self._sessions[session.id] = session
        self.opened_total += 1

    def get(self, session_id: int) -> SessionBase | None:
        return self._sessions.get(session_id)

    def __iter__(self) -> Iterator[SessionBase]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    def of_vhost(self, vhost: str) -> list[SessionBase]:
        return [s for s in self._sessions.values() if s.vhost == vhost]

    def live(self) -> list[SessionBase]:
        return [s for s in self._sessions.values() if not s.finished]

    @property
    def removed(self) -> Totals:
        """The totals of every session removed so far (its routes' totals merged)."""
        total = Totals()
        for totals in self.removed_by_route.values():
            total.merge(totals)
        return total

    def cleanup(self) -> list[SessionBase]:
        """Remove finished sessions, folding their counters into their route's totals."""
        done = [s for s in self._sessions.values() if s.finished and not s.lingering]
        for session in done:
            del self._sessions[session.id]
            route = (self.vhost_label(session), session.backend_name or "")
            totals = self.removed_by_route.get(route)
            if totals is None:
                totals = self.removed_by_route[route] = Totals()
            totals.add(session)
            by_protocol = self.removed_by_protocol.get(session.protocol)
            if by_protocol is None:
                by_protocol = self.removed_by_protocol[session.protocol] = Totals()
            by_protocol.add(session)
        return done


def _every_vhost(vhost: str) -> bool:
    return True
