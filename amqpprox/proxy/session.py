"""One proxied connection: the client handshake, backend choice, broker handshake, relay.

A ``Session`` plays the broker towards its client (``ServerHandshake``) until
``Connection.Open`` names the vhost, picks a backend through ``ProxyState.route``,
tries each candidate address of each candidate backend, replays the client's
handshake to the broker (``ClientHandshake``), forwards the broker's ``OpenOk`` and
then relays bytes both ways from ``asyncio.Protocol`` callbacks.

Hot path (mode RELAY): ``client_data``/``broker_data`` add to plain int counters, let
a ``FrameScanner`` walk frame boundaries, and write the same bytes to the other
transport. Backpressure: when one transport's write buffer passes its high-water mark
the other side stops reading until it drains.

Every wait has a deadline: client handshake, backend connect, broker handshake and
graceful close. A broker ``Connection.Close`` at any handshake stage reaches the client
with its code and text; nothing the client pipelines before ``OpenOk`` is dropped.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from typing import TYPE_CHECKING, cast

from amqpprox.amqp import handshake as hs
from amqpprox.amqp.errors import ProtocolError
from amqpprox.amqp.methods import (
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionStartOk,
    encode_method,
)
from amqpprox.amqp.scanner import FrameScanner
from amqpprox.core.sessions import CloseReason, SessionBase, SessionState
from amqpprox.proxy import proxy_protocol
from amqpprox.proxy.coalescing import ReadCoalescer
from amqpprox.proxy.connector import open_connection
from amqpprox.proxy.tls import contexts_of

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from amqpprox.core.limits import Refusal
    from amqpprox.core.model import Backend
    from amqpprox.core.state import Route
    from amqpprox.proxy.plane import DataPlane
    from amqpprox.proxy.shaping import Shaper

log = logging.getLogger("amqpprox.session")
_monotonic = time.monotonic

# Backpressure thresholds of each side's write buffer: large enough to keep a 1 MiB
# message moving in few reads, small enough to bound memory per session.
WRITE_BUFFER_HIGH = 1024 * 1024
WRITE_BUFFER_LOW = 256 * 1024
CONNECTION_FORCED = 320
ACCESS_REFUSED = 403
RESOURCE_ERROR = 506
FRAME_ERROR = 501


class Mode(enum.Enum):
    """What the session does with incoming bytes."""

    HANDSHAKE = 1  # feeding the ServerHandshake (also while held or connecting)
    RELAY = 2  # forwarding frames both ways
    CLOSING_CLIENT = 3  # we sent the client Close; forwarding its frames until CloseOk
    CLOSING_BROKER = 4  # we sent the broker Close; waiting for its CloseOk
    DEAD = 5  # nothing more is read


class _Outcome(enum.Enum):
    OPEN = 1
    BROKER_CLOSED = 2  # the broker answered with Connection.Close: forwarded, no retry
    FAILED = 3  # no AMQP answer (reset, timeout, garbage): the next candidate is tried
    TIMED_OUT = 4  # the broker handshake deadline passed (then treated as FAILED)


class ClientSide(asyncio.Protocol):
    """The client's socket: hands bytes and transport events to its session."""

    __slots__ = ("_client", "_listen_port", "_plane", "_secure", "session")

    def __init__(
        self,
        plane: DataPlane,
        listen_port: int,
        secure: bool,
        client: tuple[str, int] | None = None,
    ) -> None:
        self._plane = plane
        self._listen_port = listen_port
        self._secure = secure
        self._client = client  # from an ingress PROXY header; None: the socket's peer
        self.session: Session | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but implement it.
        transport.set_write_buffer_limits(WRITE_BUFFER_HIGH, WRITE_BUFFER_LOW)  # type: ignore[attr-defined]
        self.session = Session(
            self._plane,
            cast("asyncio.Transport", transport),
            self._listen_port,
            self._secure,
            self._client,
        )

    def data_received(self, data: bytes) -> None:
        assert self.session is not None
        self.session.client_sink(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.client_lost(exc)

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.client_backpressure(True)

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.client_backpressure(False)


class BrokerSide(asyncio.Protocol):
    """The broker's socket of one session."""

    __slots__ = ("session", "transport")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        self.transport.set_write_buffer_limits(WRITE_BUFFER_HIGH, WRITE_BUFFER_LOW)

    def data_received(self, data: bytes) -> None:
        self.session.broker_sink(data, self)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.broker_lost(self, exc)

    def pause_writing(self) -> None:
        self.session.broker_backpressure(True)

    def resume_writing(self) -> None:
        self.session.broker_backpressure(False)


def _close_frame(code: int, text: str, class_id: int = 0, method_id: int = 0) -> bytes:
    return encode_method(ConnectionClose(code, text, class_id, method_id))


def _peer(transport: asyncio.BaseTransport, key: str) -> tuple[str, int]:
    address = transport.get_extra_info(key)
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return ("0.0.0.0", 0)


class Session(SessionBase):
    """A client connection and, once chosen, its broker connection."""

    def __init__(
        self,
        plane: DataPlane,
        transport: asyncio.Transport,
        listen_port: int,
        secure: bool,
        client: tuple[str, int] | None = None,
    ) -> None:
        ctx = plane.ctx
        super().__init__(
            ctx.sessions.next_id(),
            client or _peer(transport, "peername"),
            _peer(transport, "sockname"),
            secure=secure,
        )
        self._plane = plane
        self._settings = ctx.settings
        self._loop = asyncio.get_running_loop()
        self.listen_port = listen_port
        self.client_transport = transport
        self.broker_transport: asyncio.Transport | None = None
        self._broker_protocol: BrokerSide | None = None
        self.mode = Mode.HANDSHAKE
        self.relaying = False  # RELAY and not paused: the hot path's only branch
        # Both handshakes are dropped once the session is live (_go_live): a long-lived
        # session keeps only what the relay and the admin views read.
        self._server: hs.ServerHandshake | None = hs.ServerHandshake(
            frame_max=self._settings.max_frame_size,
            max_frame_size=self._settings.max_frame_size,
            version=plane.version,
        )
        self._client_hs: hs.ClientHandshake | None = None
        self._handshake_done: asyncio.Future[_Outcome] | None = None
        self._held: list[bytes] = []
        self._client_reading = True
        self._broker_reading = True
        self._broker_pushback = False  # the broker transport's buffer is full
        self._client_pushback = False
        # Data-rate limits (proxy.shaping): the shaper, and a side held back by it.
        self.shaper: Shaper | None = None
        self.rate_held_client = False
        self.rate_held_broker = False
        # Read coalescing (proxy.coalescing), when --coalesceReadsMs sets a window.
        self.in_coalescer: ReadCoalescer | None = None
        self.out_coalescer: ReadCoalescer | None = None
        if self._settings.coalesce_reads_ms:
            self.in_coalescer, self.out_coalescer = ReadCoalescer.pair(
                self._loop,
                self._settings.coalesce_reads_ms / 1000,
                self._set_client_reading,
                self._set_broker_reading,
            )
        self.auth_start_ok: ConnectionStartOk | None = None  # the auth service's credentials
        self._broker_cut = False  # BACKEND_DISCONNECT: the client stays, the broker is gone
        self._close_code = 200
        self._close_text = "OK"
        self._close_pending = False  # inject our Close once the broker stream is at a boundary
        # AMQP 0-9-1 §4.2.3: frame-max bounds the whole frame, its 8 octets of overhead included.
        self.in_scanner = FrameScanner(self._settings.max_frame_size)
        self.out_scanner = FrameScanner(self._settings.max_frame_size)
        # Where the transports deliver reads: these methods, or a data-rate Shaper's gated
        # ones (proxy.shaping), so unlimited sessions relay without a shaping branch.
        self.client_sink: Callable[[bytes], None] = self.client_data
        self.broker_sink: Callable[[bytes, BrokerSide], None] = self.broker_data
        self._deadline: asyncio.TimerHandle | None = self._loop.call_later(
            self._settings.client_handshake_timeout, self._handshake_timeout
        )
        ctx.sessions.add(self)
        log.debug("session %d accepted from %s:%d", self.id, *self.client)

    # -- hot path ---------------------------------------------------------------------
    def client_data(self, data: bytes) -> None:
        if self.relaying:
            size = len(data)
            self.in_bytes += size
            self.in_packets += 1
            previous = self.last_in_at
            now = _monotonic()
            self.last_in_at = now
            scanner = self.in_scanner
            bad = scanner.feed(data)
            self.in_frames = scanner.frames
            broker = self.broker_transport
            assert broker is not None
            if bad < 0:
                broker.write(data)
                coalescer = self.in_coalescer
                if coalescer is not None and coalescer.after_read(
                    size, previous, now, self.last_out_at, scanner.at_boundary
                ):
                    self.in_coalesce_waits += 1
                return
            broker.write(data[:bad])
            self._frame_violation(scanner.error, from_client=True)
            return
        self._client_data_slow(data)

    def broker_data(self, data: bytes, side: BrokerSide) -> None:
        if self.mode is Mode.RELAY and side is self._broker_protocol:
            size = len(data)
            self.out_bytes += size
            self.out_packets += 1
            previous = self.last_out_at
            now = _monotonic()
            self.last_out_at = now
            scanner = self.out_scanner
            if self._close_pending:
                self._broker_data_until_boundary(data)
                return
            bad = scanner.feed(data)
            self.out_frames = scanner.frames
            if bad < 0:
                self.client_transport.write(data)
                coalescer = self.out_coalescer
                if coalescer is not None and coalescer.after_read(
                    size, previous, now, self.last_in_at, scanner.at_boundary
                ):
                    self.out_coalesce_waits += 1
                return
            self.client_transport.write(data[:bad])
            self._frame_violation(scanner.error, from_client=False)
            return
        self._broker_data_slow(data, side)

    # -- client bytes outside the relay -------------------------------------------------
    def _client_data_slow(self, data: bytes) -> None:
        mode = self.mode
        if mode is Mode.RELAY:  # paused: hold the bytes, stop reading
            self._held.append(data)
            self._set_client_reading()
        elif mode is Mode.HANDSHAKE:
            self._handshake_data(data)
        elif mode is Mode.CLOSING_CLIENT:
            self._closing_client_data(data)
        # CLOSING_BROKER / DEAD: the client has nothing more to say to the broker.

    def _handshake_data(self, data: bytes) -> None:
        server = self._server
        if server is None:  # live sessions have no client handshake left to feed
            return
        try:
            events = server.receive_data(data)
        except ProtocolError as error:
            log.info(
                "session %d: client handshake error %d %s",
                self.id,
                error.reply_code,
                error.reply_text,
            )
            self._reject(error.reply_code, error.reply_text, CloseReason.PROTOCOL_ERROR)
            return
        out = server.data_to_send()
        if out:
            self.client_transport.write(out)
        for event in events:
            if isinstance(event, hs.BadProtocolHeader):
                log.info("session %d: unsupported protocol header %r", self.id, event.received)
                self._finish(CloseReason.PROTOCOL_ERROR)
                self.client_transport.close()
            elif isinstance(event, hs.StartOkReceived):
                name = event.start_ok.client_properties.get("connection_name")
                if isinstance(name, str):
                    self.connection_name = name
            elif isinstance(event, hs.OpenReceived):
                self._open_received(event.open.virtual_host)
            elif isinstance(event, (hs.ClientClosed, hs.ClientCloseOk)):
                if self.close_reason is None:
                    self._finish(CloseReason.CLIENT_GRACEFUL)
                self._abort_broker()
                self.client_transport.close()

    def _open_received(self, vhost: str) -> None:
        self._cancel_deadline()
        self.vhost = vhost
        self.open_received_mono = _monotonic()
        log.info(
            'Starting connection for: connectionName="%s" tlsEnabled=%s id=%d vhost=%s '
            "ingressRemote=%s:%d",
            self.connection_name,
            "secured" if self.secure else "insecure",
            self.id,
            vhost,
            *self.client,
        )
        self._plane.apply_limits(self)
        if self._plane.ctx.state.is_vhost_paused(vhost) or self.paused:
            self.paused = True
            self.state = SessionState.HELD
            return
        self._start_connecting()

    def _start_connecting(self) -> None:
        refusal = self._plane.admit(self)
        if refusal is not None:
            self._refuse_limited(refusal)
            return
        route = self._plane.ctx.state.route(self.vhost)
        if route is None:
            log.error("No mapping available for vhost=%s", self.vhost)
            self._reject(
                RESOURCE_ERROR,
                f"No known broker mapping for vhost {self.vhost}",
                CloseReason.NO_MAPPING,
            )
            return
        if route.kind == "farm":
            self.farm_name = route.name
        self.state = SessionState.CONNECTING
        if self._plane.ctx.state.auth.service:
            task = self._loop.create_task(self._authenticate(route))
        else:
            task = self._loop.create_task(self._connect(route))
        self._plane.track(task)  # the plane keeps it until done; the session need not

    def _refuse_limited(self, refusal: Refusal) -> None:
        """LIMIT: after a delay (the original's 750 ms, against reconnect storms), Close."""
        self.limited = True
        self._finish(CloseReason.LIMITED)

        def refuse() -> None:
            self._deadline = None
            if self.mode is not Mode.DEAD:
                self._reject(refusal.code, refusal.text, CloseReason.LIMITED)

        self._arm_deadline(self._settings.limit_close_delay, refuse)

    async def _authenticate(self, route: Route) -> None:
        """AUTH SERVICE: ask the auth service, then connect (ALLOW) or refuse (DENY)."""
        assert self._server is not None
        start_ok = self._server.start_ok
        assert start_ok is not None
        decision = await self._plane.authenticate(self, start_ok)
        if self.finished:
            return
        if not decision.allow:
            self._deny(start_ok, decision.reason)
            return
        if decision.mechanism is not None:
            replaced = start_ok.with_credentials(decision.mechanism, decision.credentials or b"")
            if decision.reason:
                replaced = replaced.with_extra_properties([("amqpprox_auth", decision.reason)])
            self.auth_start_ok = replaced
        await self._connect(route)

    def _deny(self, start_ok: ConnectionStartOk, reason: str) -> None:
        """Close 403 (class 10, method 11: StartOk) if the client can take it, else just close."""
        self.auth_denied = True
        log.info("session %d: auth service denied vhost %s: %s", self.id, self.vhost, reason)
        try:
            capabilities = start_ok.client_properties.get("capabilities")
        except ProtocolError:
            capabilities = None
        if isinstance(capabilities, dict) and capabilities.get("authentication_failure_close"):
            self._reject(ACCESS_REFUSED, reason, CloseReason.AUTH_DENIED, class_id=10, method_id=11)
            return
        self._finish(CloseReason.AUTH_DENIED)
        self.mode = Mode.DEAD
        self.client_transport.close()

    # -- choosing and connecting a backend ------------------------------------------------
    async def _connect(self, route: Route) -> None:
        state = self._plane.ctx.state
        settings = self._settings
        while not self.finished:
            name = route.plan.next_backend()
            if name is None:
                break
            backend = state.backends.get(name)
            if backend is None:
                continue
            try:
                addresses = await self._plane.resolver.resolve(backend, settings.connect_timeout)
            except (OSError, TimeoutError) as error:
                self.connect_failures += 1
                self._plane.connect_failed(name)
                log.warning(
                    "Failed to resolve %s:%d for %s: %s", backend.host, backend.port, name, error
                )
                continue
            for host, port in addresses:
                if self.finished:
                    return
                outcome = await self._try_endpoint(name, host, port, backend)
                if outcome is not _Outcome.FAILED or self.finished:
                    return
        if not self.finished:
            log.error("No backends available for connection, vhost=%s", self.vhost)
            self._reject(
                RESOURCE_ERROR,
                f"No broker reachable for vhost {self.vhost}",
                CloseReason.NO_BACKEND,
            )

    async def _try_endpoint(self, name: str, host: str, port: int, backend: Backend) -> _Outcome:
        settings = self._settings
        self.connect_started_mono, self.broker_connected_mono = _monotonic(), None
        try:
            if backend.proxy_protocol or backend.tls:
                opening = self._open_flagged(backend, host, port)
                deadline = settings.connect_timeout + settings.tls_handshake_timeout * backend.tls
            else:
                opening = self._loop.create_connection(lambda: BrokerSide(self), host, port)
                deadline = settings.connect_timeout
            # asyncio.timeout cancels this task at the deadline: no extra task, unlike wait_for.
            async with asyncio.timeout(deadline):
                _transport, protocol = await opening
        except (OSError, TimeoutError) as error:
            self.connect_failures += 1
            self._plane.connect_failed(name)
            log.warning("connect to %s (%s:%d) failed: %s", name, host, port, error)
            return _Outcome.FAILED
        self.broker_connected_mono = _monotonic()
        transport = protocol.transport
        assert transport is not None
        if self.finished:
            transport.abort()
            return _Outcome.BROKER_CLOSED
        self.backend_name = name
        self.broker_transport = transport
        self._broker_protocol = protocol
        self.egress_local = _peer(transport, "sockname")
        self.egress_remote = _peer(transport, "peername")
        server = self._server
        assert server is not None
        assert (
            server.start_ok is not None and server.tune_ok is not None and server.open is not None
        )
        client_tag = f"{self.client[0]}:{self.client[1]}" + (" TLS" if self.secure else "")
        host_tag = f"(:{self.listen_port}) {settings.hostname}:{self.egress_local[1]}"
        start_ok = (self.auth_start_ok or server.start_ok).with_extra_properties(
            [("amqpprox_client", client_tag), ("amqpprox_host", host_tag)]
        )
        self._client_hs = hs.ClientHandshake(
            start_ok,
            server.tune_ok,
            server.open,
            max_frame_size=settings.max_frame_size,
            pipelined=settings.pipeline_broker_handshake,
        )
        done: asyncio.Future[_Outcome] = self._loop.create_future()
        self._handshake_done = done
        transport.write(self._client_hs.initiate())
        # A plain timer settles the future on timeout: cheaper than wait_for + shield.
        timer = self._loop.call_later(
            settings.broker_handshake_timeout, self._settle_handshake, _Outcome.TIMED_OUT
        )
        outcome = await done
        timer.cancel()
        self._handshake_done = None
        if outcome is _Outcome.TIMED_OUT:
            log.warning("broker handshake with %s (%s:%d) timed out", name, host, port)
            outcome = _Outcome.FAILED
        if outcome is _Outcome.FAILED:
            self.connect_failures += 1
            self._plane.connect_failed(name)
            self._detach_broker()
        return outcome

    def _open_flagged(
        self, backend: Backend, host: str, port: int
    ) -> Coroutine[object, object, tuple[asyncio.Transport, BrokerSide]]:
        """Connect to a backend flagged SEND-PROXY[-V2] and/or TLS: header first, then TLS."""
        client, version = self.client, backend.proxy_protocol
        return open_connection(
            lambda: BrokerSide(self),
            host,
            port,
            proxy_header=(lambda dst: proxy_protocol.encode(version, client, dst))
            if version
            else None,
            ssl_context=contexts_of(self._plane.ctx).context("EGRESS") if backend.tls else None,
            server_hostname=backend.host if backend.tls else None,
            ssl_handshake_timeout=self._settings.tls_handshake_timeout if backend.tls else None,
        )

    def _detach_broker(self) -> None:
        transport = self.broker_transport
        self.broker_transport = None
        self._broker_protocol = None
        self.backend_name = None
        if transport is not None:
            transport.abort()

    def _settle_handshake(self, outcome: _Outcome) -> None:
        done = self._handshake_done
        if done is not None and not done.done():
            done.set_result(outcome)

    # -- broker bytes outside the relay ---------------------------------------------------
    def _broker_data_slow(self, data: bytes, side: BrokerSide) -> None:
        if side is not self._broker_protocol:
            return  # a connection we already gave up on
        mode = self.mode
        if mode is Mode.HANDSHAKE and self._client_hs is not None:
            self._broker_handshake_data(data)
        elif mode is Mode.CLOSING_CLIENT:
            self.out_bytes += len(data)
            self.out_packets += 1  # discarded: the client is closing
        elif mode is Mode.CLOSING_BROKER:
            self._closing_broker_data(data)

    def _broker_handshake_data(self, data: bytes) -> None:
        client_hs = self._client_hs
        broker = self.broker_transport
        assert client_hs is not None and broker is not None
        try:
            events = client_hs.receive_data(data)
        except ProtocolError as error:
            log.warning("session %d: broker handshake error: %s", self.id, error.reply_text)
            self._settle_handshake(_Outcome.FAILED)
            return
        out = client_hs.data_to_send()
        if out:
            broker.write(out)
        for event in events:
            if isinstance(event, hs.BrokerOpenOk):
                if self.finished:  # refused or cut meanwhile: never go live
                    self._settle_handshake(_Outcome.BROKER_CLOSED)
                    self._detach_broker()
                    return
                self._go_live(event.frame_bytes, event.trailing)
                self._settle_handshake(_Outcome.OPEN)
            elif isinstance(event, hs.BrokerClosed):
                close = event.close
                log.info(
                    "session %d: broker refused the handshake: %d %s",
                    self.id,
                    close.reply_code,
                    close.reply_text,
                )
                self._finish(CloseReason.BROKER_SNAPPED)
                self.client_transport.write(
                    self._client_close_frame(
                        close.reply_code, close.reply_text, close.class_id, close.method_id
                    )
                )
                self._arm_deadline(self._settings.graceful_close_timeout, self._close_timeout)
                broker.close()
                self._settle_handshake(_Outcome.BROKER_CLOSED)

    def _go_live(self, open_ok: bytes, trailing: bytes) -> None:
        broker = self.broker_transport
        assert broker is not None
        self.opened_at = time.time()
        self.open_ok_mono = _monotonic()
        self.mode = Mode.RELAY
        self.state = SessionState.PAUSED if self.paused else SessionState.ACTIVE
        self.relaying = not self.paused
        self.client_transport.write(open_ok)
        if trailing:
            self.out_bytes += len(trailing)
            self.out_packets += 1
            self.out_scanner.feed(trailing)
            self.out_frames = self.out_scanner.frames
            self.client_transport.write(trailing)
        server = self._server
        pending = server.pending_bytes() if server is not None else b""
        # The handshakes are over: drop them (decoded tables, frames, buffers) so a
        # long-lived session holds few objects for the garbage collector to walk.
        self._server = None
        self._client_hs = None
        if pending:
            if self.paused:
                self._held.append(pending)
            else:
                self.client_sink(pending)
        log.debug("session %d: vhost %s open on %s", self.id, self.vhost, self.backend_name)

    # -- transport events ---------------------------------------------------------------
    def client_lost(self, exc: Exception | None) -> None:
        if self.close_reason is None and self.mode in (Mode.CLOSING_CLIENT, Mode.CLOSING_BROKER):
            self._client_gone_while_closing()
            return
        if self.close_reason is None:
            if self.in_scanner.close_seen or (
                self.mode is Mode.HANDSHAKE and self._server_closed()
            ):
                self._finish(CloseReason.CLIENT_GRACEFUL)
            elif self.out_scanner.close_seen and self.in_scanner.close_ok_seen:
                self._finish(CloseReason.BROKER_SNAPPED)
            else:
                self._finish(CloseReason.CLIENT_SNAPPED)
        self.mode = Mode.DEAD
        self.relaying = False
        self._cancel_deadline()
        self._settle_handshake(_Outcome.BROKER_CLOSED)
        broker = self.broker_transport
        if broker is not None:
            broker.close()  # flushes what the client sent last (its Close, say)

    def _server_closed(self) -> bool:
        return self._server is not None and self._server.state is hs.ServerState.CLOSED

    def broker_lost(self, side: BrokerSide, exc: Exception | None) -> None:
        if side is not self._broker_protocol:
            return
        if self.mode is Mode.HANDSHAKE:
            self._settle_handshake(_Outcome.FAILED)
            return
        if self._broker_cut:
            self.broker_transport = None
            self._broker_protocol = None
            return
        if self.close_reason is None:
            if self.in_scanner.close_seen:
                self._finish(CloseReason.CLIENT_GRACEFUL)
            elif self.mode is Mode.CLOSING_BROKER:
                self._finish(CloseReason.PROXY_GRACEFUL)
            else:
                self._finish(CloseReason.BROKER_SNAPPED)
                if (
                    self.mode is Mode.RELAY
                    and self.out_scanner.at_boundary
                    and not self.out_scanner.close_seen
                ):
                    # Tell the client why, rather than leaving it a bare TCP close.
                    self.client_transport.write(
                        _close_frame(
                            CONNECTION_FORCED, "CONNECTION_FORCED - broker connection lost"
                        )
                    )
        self.mode = Mode.DEAD
        self.relaying = False
        self._cancel_deadline()
        self.client_transport.close()

    # -- backpressure ---------------------------------------------------------------------
    def broker_backpressure(self, full: bool) -> None:
        self._broker_pushback = full
        self._set_client_reading()

    def client_backpressure(self, full: bool) -> None:
        self._client_pushback = full
        self._set_broker_reading()

    def _set_broker_reading(self) -> None:
        broker = self.broker_transport
        if broker is None:
            return
        want = (
            not self._client_pushback
            and not self.rate_held_broker
            and not (self.out_coalescer is not None and self.out_coalescer.held)
        )
        if want != self._broker_reading:
            self._broker_reading = want
            if want:
                broker.resume_reading()
            else:
                broker.pause_reading()

    def _set_client_reading(self) -> None:
        want = (
            not self._broker_pushback
            and not self.rate_held_client
            and not (self.in_coalescer is not None and self.in_coalescer.held)
            and not (self.paused and self.mode is Mode.RELAY)
        )
        if want != self._client_reading and not self.client_transport.is_closing():
            self._client_reading = want
            if want:
                self.client_transport.resume_reading()
            else:
                self.client_transport.pause_reading()

    # -- frames the relay refuses ---------------------------------------------------------
    def _frame_violation(self, reason: str, *, from_client: bool) -> None:
        log.warning(
            "session %d: %s from the %s", self.id, reason, "client" if from_client else "broker"
        )
        self._finish(CloseReason.PROTOCOL_ERROR)
        self.mode = Mode.DEAD
        self.relaying = False
        if from_client:
            self.client_transport.write(_close_frame(FRAME_ERROR, f"FRAME_ERROR - {reason}"))
        self._abort_broker()
        self.client_transport.close()

    # -- control actions --------------------------------------------------------------------
    def pause(self) -> None:
        if self.finished:
            return
        self.paused = True
        if self.mode is Mode.RELAY:
            self.relaying = False
            self.state = SessionState.PAUSED
            self._set_client_reading()

    def unpause(self) -> None:
        if not self.paused or self.finished:
            return
        if self.state is SessionState.HELD:
            self.release_held()
            return
        self.paused = False
        if self.mode is Mode.RELAY:
            self.state = SessionState.ACTIVE
            self.relaying = True
            held, self._held = self._held, []
            for chunk in held:
                if not self.relaying:
                    self._held.append(chunk)
                    continue
                self.client_sink(chunk)
            self._set_client_reading()

    def release_held(self) -> None:
        if self.state is not SessionState.HELD or self.finished:
            return
        self.paused = False
        self._start_connecting()

    def force_disconnect(self) -> None:
        if self.close_reason is None:
            self._finish(CloseReason.PROXY_FORCED)
        self.mode = Mode.DEAD
        self.relaying = False
        self._cancel_deadline()
        self._settle_handshake(_Outcome.BROKER_CLOSED)
        self._abort_broker()
        self.client_transport.abort()

    def backend_disconnect(self) -> None:
        if self.broker_transport is None:
            return
        if self.mode is Mode.HANDSHAKE:
            # Still connecting: drop this attempt; the plan moves on to the next candidate.
            self._settle_handshake(_Outcome.FAILED)
            return
        self._broker_cut = True
        if self.mode is Mode.RELAY:
            self.relaying = False
            self.mode = Mode.DEAD  # the client's bytes have nowhere to go now
        self.broker_transport.abort()

    def disconnect_graceful(self, reply_text: str = "OK", reply_code: int = 200) -> None:
        """Close the client with ``Connection.Close`` then the broker, both waiting for CloseOk."""
        if self.finished and self.mode is not Mode.RELAY:
            return
        self._close_code, self._close_text = reply_code, reply_text
        if self.mode is Mode.HANDSHAKE:
            self._settle_handshake(_Outcome.BROKER_CLOSED)
            self._abort_broker()
            reason = CloseReason.PROXY_GRACEFUL if reply_code == 200 else CloseReason.PROXY_FORCED
            self._reject(reply_code, reply_text, reason)
            return
        if self.mode is not Mode.RELAY:
            return
        self.relaying = False
        self._arm_deadline(self._settings.graceful_close_timeout, self._close_timeout)
        if self.out_scanner.at_boundary:
            self._send_client_close()
        else:
            self._close_pending = True

    def _broker_data_until_boundary(self, data: bytes) -> None:
        scanner = self.out_scanner
        cut = scanner.boundary_offset(data)
        if cut < 0:
            scanner.feed(data)
            self.out_frames = scanner.frames
            self.client_transport.write(data)
            return
        scanner.feed(data[:cut])
        self.out_frames = scanner.frames
        self.client_transport.write(data[:cut])
        self._close_pending = False
        self._send_client_close()

    def _send_client_close(self) -> None:
        self.mode = Mode.CLOSING_CLIENT
        self.state = SessionState.CLOSING
        self.in_scanner.close_seen = self.in_scanner.close_ok_seen = False
        self.client_transport.write(_close_frame(self._close_code, self._close_text))
        held, self._held = self._held, []
        for chunk in held:
            self._closing_client_data(chunk)
        self.paused = False
        self._set_client_reading()

    def _closing_client_data(self, data: bytes) -> None:
        """Forward the client's last frames until its CloseOk (or crossing Close)."""
        scanner = self.in_scanner
        self.in_bytes += len(data)
        self.in_packets += 1
        bad = scanner.feed(data)
        self.in_frames = scanner.frames
        broker = self.broker_transport
        if bad >= 0:
            self._frame_violation(scanner.error, from_client=True)
            return
        if not (scanner.close_ok_seen or scanner.close_seen):
            if broker is not None:
                broker.write(data)
            return
        upto = max(0, scanner.close_offset)
        if broker is not None and upto:
            broker.write(data[:upto])
        if scanner.close_seen and not scanner.close_ok_seen:
            self.client_transport.write(encode_method(ConnectionCloseOk()))
        self.client_transport.close()
        if broker is None:
            self._finish(CloseReason.PROXY_GRACEFUL)
            self.mode = Mode.DEAD
            return
        self.mode = Mode.CLOSING_BROKER
        self.out_scanner.close_seen = self.out_scanner.close_ok_seen = False
        broker.write(_close_frame(self._close_code, self._close_text))

    def _client_gone_while_closing(self) -> None:
        """The client's socket closed during DISCONNECT_GRACEFUL: still close the broker cleanly.

        pika, for one, answers a server ``Connection.Close`` by closing its socket without
        ``CloseOk``. As upstream, the broker still gets ``Connection.Close`` and we wait
        (bounded by the close deadline) for its ``CloseOk``.
        """
        broker = self.broker_transport
        if self.mode is Mode.CLOSING_CLIENT:
            if broker is None:
                self._finish(CloseReason.PROXY_GRACEFUL)
                self.mode = Mode.DEAD
                self._cancel_deadline()
                return
            self.mode = Mode.CLOSING_BROKER
            self.out_scanner.close_seen = self.out_scanner.close_ok_seen = False
            broker.write(_close_frame(self._close_code, self._close_text))
        # CLOSING_BROKER: the client had its say; the broker's CloseOk ends the session.

    def _closing_broker_data(self, data: bytes) -> None:
        scanner = self.out_scanner
        scanner.feed(data)
        if scanner.close_ok_seen or scanner.close_seen:
            broker = self.broker_transport
            if broker is not None:
                if scanner.close_seen and not scanner.close_ok_seen:
                    broker.write(encode_method(ConnectionCloseOk()))
                broker.close()
            self._finish(CloseReason.PROXY_GRACEFUL)  # the close we started completed
            self.mode = Mode.DEAD
            self._cancel_deadline()

    def _close_timeout(self) -> None:
        self._deadline = None
        log.info("session %d: close not acknowledged in time, closing sockets", self.id)
        if self.close_reason is None:
            self._finish(CloseReason.PROXY_FORCED)
        self.mode = Mode.DEAD
        self._abort_broker()
        self.client_transport.abort()

    # -- endings ----------------------------------------------------------------------------
    def _reject(
        self, code: int, text: str, reason: CloseReason, class_id: int = 0, method_id: int = 0
    ) -> None:
        """Refuse the client with ``Connection.Close`` and wait (bounded) for its CloseOk.

        Any broker attempt in flight is abandoned: the client has been told no.
        """
        self._finish(reason)
        self.mode = Mode.HANDSHAKE
        self._settle_handshake(_Outcome.BROKER_CLOSED)
        self._detach_broker()
        self.client_transport.write(self._client_close_frame(code, text, class_id, method_id))
        self._arm_deadline(self._settings.graceful_close_timeout, self._close_timeout)

    def _client_close_frame(self, code: int, text: str, class_id: int, method_id: int) -> bytes:
        """Our Connection.Close to the client, through the client handshake while it lasts
        (which then waits for the CloseOk), else as a plain frame."""
        server = self._server
        if server is None:
            return _close_frame(code, text, class_id, method_id)
        try:
            return server.close(code, text, class_id, method_id)
        except ProtocolError:
            return _close_frame(code, text, class_id, method_id)

    def _handshake_timeout(self) -> None:
        self._deadline = None
        if self.state is SessionState.HANDSHAKING and not self.finished:
            log.info("session %d: no Connection.Open within the handshake deadline", self.id)
            self._finish(CloseReason.HANDSHAKE_TIMEOUT)
            self.mode = Mode.DEAD
            self.client_transport.abort()

    def _finish(self, reason: CloseReason) -> None:
        if self.close_reason is None:
            self.close_reason = reason
            self.closed_at = time.time()
            self.state = SessionState.CLOSED
            self._plane.session_finished(self)

    def _abort_broker(self) -> None:
        broker = self.broker_transport
        # A closed transport whose last write flushed is gone already; on Python 3.11 an
        # abort() then fails inside asyncio (its loop is unset, yet it schedules a callback).
        if broker is not None and not (broker.is_closing() and not broker.get_write_buffer_size()):
            broker.abort()

    def _arm_deadline(self, delay: float, callback: object) -> None:
        self._cancel_deadline()
        assert callable(callback)
        self._deadline = self._loop.call_later(delay, callback)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
