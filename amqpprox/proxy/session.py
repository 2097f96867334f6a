"""One proxied connection: its identity, its phase, and the parts that do the work.

A ``Session`` is created for each accepted client socket. It owns one phase (every
change goes through ``move`` and ``proxy.lifecycle``'s table), points each socket's
reads at what the phase wants them to reach (``route``), and composes the parts: the
protocol adapter (``proxy.amqp091``), the connect loop (``proxy.connect``), the relay
(``proxy.relay``), a read gate per side (``proxy.gate``) and a graceful close
(``proxy.graceful``). It holds the control actions (pause, unpause, disconnects), the
endings and a deadline for every wait (client handshake, connect, broker handshake, close).
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import TYPE_CHECKING

from amqpprox.core.sessions import ZERO_ENDPOINT, CloseReason, SessionBase, SessionState
from amqpprox.logsetup import hot_info
from amqpprox.proxy import connect
from amqpprox.proxy.amqp091 import ACCESS_REFUSED, RESOURCE_ERROR
from amqpprox.proxy.coalescing import ReadCoalescer, wrap_pair
from amqpprox.proxy.gate import Hold, ReadGate
from amqpprox.proxy.graceful import GracefulClose
from amqpprox.proxy.lifecycle import PUBLIC, Phase, check_move
from amqpprox.proxy.relay import Relay
from amqpprox.proxy.stream_adapter import adapter_for
from amqpprox.proxy.transports import BrokerSide, ClientSide, discard, peer_address
from amqpprox.proxy.watch import BrokerSilence

if TYPE_CHECKING:
    from collections.abc import Callable

    from amqpprox.amqp.methods import ConnectionStartOk
    from amqpprox.proxy.plane import DataPlane
    from amqpprox.proxy.shaping import Shaper

log = logging.getLogger("amqpprox.session")
_monotonic = time.monotonic

# The client's bytes still feed the handshake (after a refusal, its CloseOk ends the session).
_HANDSHAKING = frozenset({Phase.HANDSHAKE, Phase.HELD, Phase.CONNECTING, Phase.REFUSING})
_RELAYING = frozenset({Phase.ACTIVE, Phase.PAUSED})
_CLOSING = frozenset({Phase.CLOSING_CLIENT, Phase.CLOSING_BROKER})


class Session(SessionBase):
    """A client connection and, once chosen, its broker connection."""

    def __init__(
        self,
        plane: DataPlane,
        side: ClientSide,
        listen_port: int,
        secure: bool,
        client: tuple[str, int] | None = None,
    ) -> None:
        transport = side.transport
        assert transport is not None
        ctx = plane.ctx
        super().__init__(
            ctx.sessions.next_id(),
            client or peer_address(transport, "peername"),
            peer_address(transport, "sockname"),
            secure=secure,
        )
        self.plane = plane
        self.settings = ctx.settings
        self.loop = plane.loop
        self.listen_port = listen_port
        self.phase = Phase.HANDSHAKE
        self.client_side = side
        # The client's transport never changes: a plain attribute, read on every path.
        self.client_transport: asyncio.Transport = transport
        self.broker_side: BrokerSide | None = None
        self.client_gate = ReadGate(on_peer_gone=self._client_vanished)
        self.client_gate.attach(transport)
        self.broker_gate = ReadGate(on_peer_gone=self._broker_vanished)
        self._client_gone = False  # the client socket's connection_lost has come
        self._silence: BrokerSilence | None = None  # heartbeats on: the broker's silence
        side.peer_gate = self.broker_gate  # the client's full write buffer stops the broker
        side.on_lost = self.client_lost
        self.adapter = adapter_for(self, side.protocol, side.node)
        self.relay: Relay | None = None
        # What a live session's reads reach: the relay's entry points, or the features
        # that wrap them (proxy.shaping, proxy.coalescing); see ``rewire``.
        self.client_chain: Callable[[bytes], None] = discard
        self.broker_chain: Callable[[bytes], None] = discard
        self.broker_entry: Callable[[bytes], None] = discard  # ``adapter.wrap_broker``
        self.shaper: Shaper | None = None
        self.coalescers: tuple[ReadCoalescer, ReadCoalescer] | None = None
        self._held: list[bytes] = []  # the client's reads while paused
        self._attempt: asyncio.Future[connect.Outcome] | None = None
        self.auth_start_ok: ConnectionStartOk | None = None  # the auth service's credentials
        self.closing: GracefulClose | None = None  # DISCONNECT_GRACEFUL under way
        self._deadline: asyncio.TimerHandle | None = self.loop.call_later(
            self.settings.client_handshake_timeout, self._handshake_timeout
        )
        self.route()
        ctx.sessions.add(self)
        log.debug("session %d accepted from %s:%d", self.id, *self.client)

    # -- the transports, as the admin plane and the statistics see them ------------------
    @property
    def broker_transport(self) -> asyncio.Transport | None:
        side = self.broker_side
        return side.transport if side is not None else None

    @property
    def relaying(self) -> bool:
        """Client bytes flow to the broker now (live, not paused, no close under way)."""
        return self.phase is Phase.ACTIVE and self.closing is None

    @property
    def lingering(self) -> bool:
        """Finished, but the client socket is still open (flushing): it stays listed."""
        return self.finished and not self._client_gone

    @property
    def ended(self) -> bool:
        """Nothing more is read from either side."""
        return self.phase is Phase.DEAD

    # -- phase and routing ---------------------------------------------------------------
    def move(self, phase: Phase) -> None:
        """The one way the phase changes (``lifecycle.ALLOWED`` says which moves exist)."""
        if check_move(self.phase, phase):
            self.phase = phase
            if self.close_reason is None:
                self.state = PUBLIC[phase]
            self.route()

    def route(self) -> None:
        """Point each socket's reads at what the phase wants them to reach."""
        phase = self.phase
        closing = self.closing
        pending = closing.until_boundary if closing is not None and closing.waiting else None
        if phase is Phase.ACTIVE and pending is None:
            client = self.client_chain
        elif phase in _RELAYING:
            client = self._hold_client
        elif phase in _HANDSHAKING:
            client = self.adapter.client_handshake_data
        elif phase is Phase.CLOSING_CLIENT:
            client = self.adapter.closing_client_data
        else:
            client = discard
        self.client_side.on_data = client
        side = self.broker_side
        if side is None:
            return
        if phase is Phase.CONNECTING:
            side.on_data = self.adapter.broker_handshake_data
        elif phase in _RELAYING:
            side.on_data = pending or self.broker_chain
        elif phase is Phase.CLOSING_CLIENT:
            side.on_data = self._count_broker  # the client is closing: counted, dropped
        elif phase is Phase.CLOSING_BROKER:
            side.on_data = self.adapter.closing_broker_data
        else:
            side.on_data = discard

    def rewire(self) -> None:
        """Rebuild the live chains after a feature changed (a shaper came or went)."""
        relay = self.relay
        if relay is None:
            return
        client: Callable[[bytes], None] = relay.client_data
        broker: Callable[[bytes], None] = self.broker_entry
        if self.coalescers is not None:
            client, broker = wrap_pair(
                self.coalescers, self, (relay.in_scanner, relay.out_scanner), (client, broker)
            )
        if self.shaper is not None:
            client, broker = self.shaper.wrap(client, broker)
        client, broker = self.plane.wrap_traced(self, client, broker)
        self.client_chain, self.broker_chain = client, broker
        self.route()

    def deliver_client(self, data: bytes) -> None:
        """Hand client bytes a feature held back to what the phase wants, past that
        feature (a shaper's backlog when the session stopped relaying, say)."""
        if self.relaying and self.relay is not None:
            self.relay.client_data(data)
        else:
            self.client_side.on_data(data)

    def deliver_broker(self, data: bytes) -> None:
        if self.phase in _RELAYING and self.relay is not None:
            self.broker_entry(data)
        elif self.broker_side is not None:
            self.broker_side.on_data(data)

    def _hold_client(self, data: bytes) -> None:
        self._held.append(data)
        self.client_gate.hold(Hold.PAUSED)

    def _count_broker(self, data: bytes) -> None:
        self.out_bytes += len(data)
        self.out_packets += 1

    # -- the client handshake's outcomes (called by the adapter) -------------------------
    def open_received(self, vhost: str) -> None:
        self.cancel_deadline()
        self.vhost = vhost
        self.open_received_mono = _monotonic()
        hot_info(  # log.info, without a LogRecord while only our sinks listen
            log,
            'Starting connection for: connectionName="%s" tlsEnabled=%s id=%d vhost=%s '
            "ingressRemote=%s:%d",
            self.connection_name,
            "secured" if self.secure else "insecure",
            self.id,
            vhost,
            *self.client,
        )
        self.plane.apply_limits(self)
        self.plane.session_opened(self)
        if self.plane.ctx.state.is_vhost_paused(vhost) or self.paused:
            self.paused = True
            self.move(Phase.HELD)
            return
        connect.start(self)

    def limited_refusal(self, code: int, text: str) -> None:
        """LIMIT: after a delay (the original's 750 ms, against reconnect storms), Close."""
        self.limited = True
        self.finish(CloseReason.LIMITED)

        def refuse() -> None:
            self._deadline = None
            if self.phase is not Phase.DEAD:
                self.reject(code, text, CloseReason.LIMITED)

        self._arm_deadline(self.settings.limit_close_delay, refuse)

    # -- the broker connection (called by the connect loop and the adapter) --------------
    def attach_broker(
        self, name: str, side: BrokerSide, remote: tuple[str, int]
    ) -> asyncio.Future[connect.Outcome]:
        """Make ``side`` this session's broker connection to ``remote`` (the address it
        connected to) and greet the broker; the future settles with the handshake's
        outcome."""
        transport = side.transport
        assert transport is not None
        self.backend_name = name
        self.broker_side = side
        side.on_lost = lambda exc: self.broker_lost(side)
        side.peer_gate = self.client_gate
        self.broker_gate.attach(transport)
        self.egress_local = peer_address(transport, "sockname")
        self.egress_remote = remote  # what the socket's peername says, without asking
        self._attempt = self.loop.create_future()
        self.route()
        side.greet(self.adapter.broker_greeting(self.egress_local[1]))
        return self._attempt

    def detach_broker(self) -> None:
        """Give up the broker connection (attempt failed, or the client was refused)."""
        side = self.broker_side
        self.broker_side = None
        self.backend_name = None
        self.broker_gate.attach(None)
        if side is not None:
            side.on_data = discard
            side.on_lost = None
            if side.transport is not None:
                side.transport.abort()

    def settle_attempt(self, outcome: connect.Outcome) -> None:
        attempt = self._attempt
        if attempt is not None and not attempt.done():
            attempt.set_result(outcome)

    def attempt_failed(self) -> None:
        self.settle_attempt(connect.Outcome.FAILED)

    def broker_open(self, open_ok: bytes, trailing: bytes) -> None:
        """The broker's OpenOk: the session goes live (unless refused or cut meanwhile)."""
        if self.finished:
            self.settle_attempt(connect.Outcome.ABANDONED)
            self.detach_broker()
            return
        self._go_live(open_ok, trailing)
        self.settle_attempt(connect.Outcome.OPEN)

    def broker_refused(self, code: int, text: str, class_id: int, method_id: int) -> None:
        """The broker closed the handshake: its Close reaches the client; no retry."""
        self.finish(CloseReason.BROKER_SNAPPED)
        self.move(Phase.REFUSING)
        self.client_transport.write(self.adapter.refusal_frame(code, text, class_id, method_id))
        self._arm_deadline(self.settings.graceful_close_timeout, self._close_timeout)
        broker = self.broker_transport
        if broker is not None:
            broker.close()
        self.settle_attempt(connect.Outcome.BROKER_CLOSED)

    def _go_live(self, open_ok: bytes, trailing: bytes) -> None:
        broker = self.broker_transport
        assert broker is not None
        adapter = self.adapter
        self.opened_at = time.time()
        self.open_ok_mono = _monotonic()
        scanners = adapter.in_scanner, adapter.out_scanner
        self.relay = Relay(
            self, self.client_transport, broker, scanners, on_violation=self.violation
        )
        if self.settings.coalesce_reads_ms:
            self.coalescers = ReadCoalescer.pair(
                self.loop,
                self.settings.coalesce_reads_ms / 1000,
                partial(self.client_gate.set, Hold.COALESCE),
                partial(self.broker_gate.set, Hold.COALESCE),
            )
        self.broker_entry = adapter.wrap_broker(self.relay.broker_data)
        self.client_chain, self.broker_chain = self.relay.client_data, self.broker_entry
        if self.coalescers is not None or self.shaper is not None or self.id in self.plane.taps:
            self.rewire()
        self.client_transport.write(open_ok)
        self.move(Phase.PAUSED if self.paused else Phase.ACTIVE)
        if trailing:
            self.broker_entry(trailing)
        pending = adapter.went_live()
        if pending:
            self.client_side.on_data(pending)
        limit = adapter.silence_limit()
        if limit is not None:
            self._silence = BrokerSilence(
                self.loop, self, self.broker_gate, limit, self.broker_silent
            )
        log.debug("session %d: vhost %s open on %s", self.id, self.vhost, self.backend_name)

    # -- transport events -----------------------------------------------------------------
    def client_lost(self, exc: Exception | None) -> None:
        self._client_gone = True
        phase = self.phase
        closing = self.closing
        if self.close_reason is None and closing is not None and phase in _CLOSING:
            closing.client_gone()
            return
        if self.close_reason is None:
            cut = phase is Phase.CUT  # the operator's BACKEND_DISCONNECT ended it, not the client
            self.finish(
                CloseReason.BACKEND_DISCONNECTED if cut else self.adapter.client_left(phase)
            )
        self.move(Phase.DEAD)
        self.cancel_deadline()
        self.settle_attempt(connect.Outcome.ABANDONED)
        broker = self.broker_transport
        if broker is not None:
            broker.close()  # flushes what the client sent last (its Close, say)
            if broker.get_write_buffer_size():  # a broker that does not read: bounded
                self._arm_deadline(self.settings.graceful_close_timeout, self._linger_over)

    def broker_lost(self, side: BrokerSide) -> None:
        if side is not self.broker_side:
            return
        phase = self.phase
        if phase in _HANDSHAKING:
            self.attempt_failed()
            return
        if self.close_reason is None:
            reason, notice = self.adapter.broker_left(phase)
            self.finish(reason)
            if notice:
                self.client_transport.write(notice)
        self.move(Phase.DEAD)
        self.cancel_deadline()
        self._close_client()

    def violation(self, reason: str, from_client: bool) -> None:
        """A side broke the protocol's framing: tell the client if it was the culprit, end."""
        log.warning(
            "session %d: %s from the %s", self.id, reason, "client" if from_client else "broker"
        )
        self.finish(CloseReason.PROTOCOL_ERROR)
        self.move(Phase.DEAD)
        if from_client:
            self.client_transport.write(self.adapter.violation_frame(reason))
        self._abort_broker()
        self._close_client()

    # -- control actions --------------------------------------------------------------------
    def pause(self) -> None:
        if self.finished:
            return
        self.paused = True
        if self.phase is Phase.ACTIVE:
            self.move(Phase.PAUSED)
            self.client_gate.hold(Hold.PAUSED)

    def unpause(self) -> None:
        if not self.paused or self.finished:
            return
        if self.phase is Phase.HELD:
            self.release_held()
            return
        self.paused = False
        if self.phase is Phase.PAUSED:
            self.move(Phase.ACTIVE)
            held, self._held = self._held, []
            for chunk in held:
                if not self.relaying:
                    self._held.append(chunk)
                    continue
                self.client_side.on_data(chunk)
            self.client_gate.release(Hold.PAUSED)

    def release_held(self) -> None:
        """VHOST UNPAUSE for a session not live yet: held at Open, it connects out; paused
        on its way (handshake, connecting), it goes live unpaused."""
        if self.finished or self.phase not in _HANDSHAKING:
            return
        self.paused = False
        if self.phase is Phase.HELD:
            self.held_released_mono = _monotonic()  # the handshake histogram starts here
            connect.start(self)

    def force_disconnect(self) -> None:
        if self.close_reason is None:
            self.finish(CloseReason.PROXY_FORCED)
        self.move(Phase.DEAD)
        self.cancel_deadline()
        self.settle_attempt(connect.Outcome.ABANDONED)
        self._abort_broker()
        self.client_transport.abort()

    def backend_disconnect(self) -> None:
        side = self.broker_side
        if side is None or side.transport is None:
            return
        if self.phase in _HANDSHAKING:
            # Still connecting: drop this attempt; the plan moves on to the next candidate.
            self.attempt_failed()
            return
        if self.phase in _RELAYING:
            self.move(Phase.CUT)  # the client's bytes have nowhere to go now
            self.egress_local = self.egress_remote = ZERO_ENDPOINT
        # The client stays (a closing one still completes its close without a broker).
        self.broker_side = None
        self.broker_gate.attach(None)
        side.on_data = discard
        side.on_lost = None
        side.transport.abort()

    def disconnect_graceful(self, reply_text: str = "OK", reply_code: int = 200) -> None:
        """Close the client with ``Connection.Close`` then the broker, both waiting for CloseOk."""
        phase = self.phase
        if self.finished and phase not in _RELAYING:
            return
        if phase in (Phase.HANDSHAKE, Phase.HELD, Phase.CONNECTING):
            self.settle_attempt(connect.Outcome.ABANDONED)
            self._abort_broker()
            reason = CloseReason.PROXY_GRACEFUL if reply_code == 200 else CloseReason.PROXY_FORCED
            self.reject(reply_code, reply_text, reason)
            return
        if phase not in _RELAYING:
            return
        self._arm_deadline(self.settings.graceful_close_timeout, self._close_timeout)
        self.closing = GracefulClose(self, reply_code, reply_text)
        self.closing.start()

    def replay_held(self) -> None:
        """The client's bytes held by a pause go where the phase now wants them."""
        held, self._held = self._held, []
        for chunk in held:
            self.client_side.on_data(chunk)
        self.paused = False
        self.client_gate.release(Hold.PAUSED)

    def _close_timeout(self) -> None:
        self._deadline = None
        log.info("session %d: close not acknowledged in time, closing sockets", self.id)
        if self.close_reason is None:
            self.finish(CloseReason.PROXY_FORCED)
        self.move(Phase.DEAD)
        self._abort_broker()
        self.client_transport.abort()

    # -- endings ----------------------------------------------------------------------------
    def reject(
        self, code: int, text: str, reason: CloseReason, class_id: int = 0, method_id: int = 0
    ) -> None:
        """Refuse the client with ``Connection.Close`` and wait (bounded) for its CloseOk.

        Any broker attempt in flight is abandoned: the client has been told no.
        """
        self.finish(reason)
        self.move(Phase.REFUSING)
        self.settle_attempt(connect.Outcome.ABANDONED)
        self.detach_broker()
        self.client_transport.write(self.adapter.refusal_frame(code, text, class_id, method_id))
        self._arm_deadline(self.settings.graceful_close_timeout, self._close_timeout)

    def refuse(self, reason: CloseReason, text: str) -> None:
        """No route or no reachable backend: a resource error, in the protocol's terms."""
        self.reject(RESOURCE_ERROR, text, reason)

    def deny(self, start_ok: ConnectionStartOk, reason: str) -> None:
        """The auth service said no: 403 (StartOk's class and method) if the client can
        take it, else just close."""
        self.auth_denied = True
        log.info("session %d: auth service denied vhost %s: %s", self.id, self.vhost, reason)
        if self.adapter.wants_failure_close(start_ok):
            self.reject(ACCESS_REFUSED, reason, CloseReason.AUTH_DENIED, class_id=10, method_id=11)
            return
        self.finish(CloseReason.AUTH_DENIED)
        self.move(Phase.DEAD)
        self._close_client()

    def end(self, reason: CloseReason) -> None:
        """The client is done (its Close, its CloseOk, a header we do not speak): close."""
        self.finish(reason)
        self.move(Phase.DEAD)
        self.cancel_deadline()
        self.settle_attempt(connect.Outcome.ABANDONED)
        self._abort_broker()
        self._close_client()

    def _handshake_timeout(self) -> None:
        self._deadline = None
        if self.phase is Phase.HANDSHAKE and not self.finished:
            log.info("session %d: no Connection.Open within the handshake deadline", self.id)
            self.finish(CloseReason.HANDSHAKE_TIMEOUT)
            self.move(Phase.DEAD)
            self.client_transport.abort()

    def finish(self, reason: CloseReason) -> None:
        if self._silence is not None:
            self._silence.stop()
            self._silence = None
        if self.close_reason is None:
            self.close_reason = reason
            self.closed_at = time.time()
            self.state = SessionState.CLOSED
            self.plane.session_finished(self)

    def _close_client(self) -> None:
        """Close the client's socket once its buffer is flushed, within the close deadline:
        a client that does not read is not left holding a socket with no session."""
        transport = self.client_transport
        transport.close()
        if not self._client_gone and transport.get_write_buffer_size():
            self._arm_deadline(self.settings.graceful_close_timeout, self._linger_over)

    def _linger_over(self) -> None:
        self._deadline = None
        if not self._client_gone:
            log.info("session %d: client not reading after the end, closing its socket", self.id)
            self.client_transport.abort()
        self._abort_broker()

    def broker_silent(self, seconds: float) -> None:
        """The broker said nothing for two heartbeat intervals (``watch.BrokerSilence``)."""
        log.warning(
            "session %d: broker %s sent nothing for %.0f s: closing",
            self.id,
            self.backend_name,
            seconds,
        )
        self.finish(CloseReason.BROKER_UNRESPONSIVE)
        self.move(Phase.DEAD)
        self.cancel_deadline()
        self.client_transport.write(self.adapter.silent_broker_frame())
        self._abort_broker()
        self._close_client()

    def _client_vanished(self) -> None:
        """The client left while we were not reading it (its broker not reading, say)."""
        log.info("session %d: the client closed its socket while not being read", self.id)
        self.client_transport.abort()  # connection_lost follows: client_lost ends it

    def _broker_vanished(self) -> None:
        """The broker left while we were not reading it (its client not reading, say)."""
        side = self.broker_side
        if side is None or side.transport is None:
            return
        log.info("session %d: the broker closed its socket while not being read", self.id)
        side.on_lost = None
        self.broker_lost(side)
        side.transport.abort()

    def _abort_broker(self) -> None:
        broker = self.broker_transport
        # A closed transport whose last write flushed is gone already; on Python 3.11 an
        # abort() then fails inside asyncio (its loop is unset, yet it schedules a callback).
        if broker is not None and not (broker.is_closing() and not broker.get_write_buffer_size()):
            broker.abort()

    def _arm_deadline(self, delay: float, callback: Callable[[], None]) -> None:
        self.cancel_deadline()
        self._deadline = self.loop.call_later(delay, callback)

    def cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
