"""Everything AMQP 0-9-1 about a session: the two handshakes, the Close frames, and what
a graceful close is.

``Amqp091`` plays the broker to the client (``ServerHandshake``) until
``Connection.Open`` names the vhost, replays the client's handshake to the chosen broker
(``ClientHandshake``), builds every ``Connection.Close`` the proxy sends, runs the
graceful-close choreography (Close to the client, its last frames through, CloseOk,
then Close to the broker) and tells, from the frames seen, how a side left. The session
(``proxy.session``) asks it; the relay and the read gates never see it. A second
protocol (RabbitMQ Streams) plugs in beside it with the same methods.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from amqpprox.amqp import handshake as hs
from amqpprox.amqp.errors import ProtocolError
from amqpprox.amqp.fields import encode_long_string_entry
from amqpprox.amqp.methods import ConnectionClose, ConnectionCloseOk, encode_method
from amqpprox.amqp.scanner import FrameScanner, Scanner
from amqpprox.core.sessions import CloseReason
from amqpprox.proxy import departures

if TYPE_CHECKING:
    from collections.abc import Callable

    from amqpprox.amqp.methods import ConnectionStartOk
    from amqpprox.core.model import Backend
    from amqpprox.proxy.session import Session

log = logging.getLogger("amqpprox.session")

CONNECTION_FORCED = 320
ACCESS_REFUSED = 403
FRAME_ERROR = 501
RESOURCE_ERROR = 506
BROKER_LOST_TEXT = "CONNECTION_FORCED - broker connection lost"
BROKER_SILENT_TEXT = "CONNECTION_FORCED - broker stopped responding"
_CLOSE_OK = encode_method(ConnectionCloseOk())


def close_frame(code: int, text: str, class_id: int = 0, method_id: int = 0) -> bytes:
    return encode_method(ConnectionClose(code, text, class_id, method_id))


class Amqp091(departures.Departures):
    """The AMQP 0-9-1 side of one session."""

    protocol = "amqp"
    node: str | None = None  # AMQP listeners are never node listeners
    in_scanner: Scanner
    out_scanner: Scanner

    def __init__(self, session: Session) -> None:
        self.session = session
        settings = session.settings
        # AMQP 0-9-1 §4.2.3: frame-max bounds the whole frame, its 8 octets of overhead
        # included.
        self.in_scanner = FrameScanner(settings.max_frame_size)
        self.out_scanner = FrameScanner(settings.max_frame_size)
        # Both handshakes are dropped once the session is live (``went_live``): a
        # long-lived session keeps only what the relay and the admin views read.
        self.server: hs.ServerHandshake | None = hs.ServerHandshake(
            frame_max=settings.max_frame_size,
            max_frame_size=settings.max_frame_size,
            version=session.plane.version,
        )
        self.client_hs: hs.ClientHandshake | None = None
        self.heartbeat = 0  # seconds, as the client's TuneOk set it for both sides

    # -- the client handshake (we play the broker) -------------------------------------
    @property
    def start_ok(self) -> ConnectionStartOk | None:
        return self.server.start_ok if self.server is not None else None

    def client_handshake_data(self, data: bytes) -> None:
        session, server = self.session, self.server
        if server is None:  # live sessions have no client handshake left to feed
            return
        try:
            events = server.receive_data(data)
        except ProtocolError as error:
            log.info(
                "session %d: client handshake error %d %s",
                session.id,
                error.reply_code,
                error.reply_text,
            )
            session.reject(error.reply_code, error.reply_text, CloseReason.PROTOCOL_ERROR)
            return
        out = server.data_to_send()
        if out:
            session.client_transport.write(out)
        for event in events:
            if isinstance(event, hs.BadProtocolHeader):
                log.info("session %d: unsupported protocol header %r", session.id, event.received)
                session.end(CloseReason.PROTOCOL_ERROR)
            elif isinstance(event, hs.StartOkReceived):
                name = event.start_ok.client_properties.get("connection_name")
                if isinstance(name, str):
                    session.connection_name = name
            elif isinstance(event, hs.OpenReceived):
                start_ok = server.start_ok
                if start_ok is not None:
                    session.identified_by(start_ok, server.tune_ok)
                session.open_received(event.open.virtual_host)
            elif isinstance(event, (hs.ClientClosed, hs.ClientCloseOk)):
                session.end(CloseReason.CLIENT_GRACEFUL)

    def refusal_frame(self, code: int, text: str, class_id: int = 0, method_id: int = 0) -> bytes:
        """Our Connection.Close to the client, through the client handshake while it lasts
        (which then waits for the CloseOk), else as a plain frame."""
        server = self.server
        if server is None:
            return close_frame(code, text, class_id, method_id)
        try:
            return server.close(code, text, class_id, method_id)
        except ProtocolError:
            return close_frame(code, text, class_id, method_id)

    def wants_failure_close(self, start_ok: ConnectionStartOk) -> bool:
        """The client announced ``authentication_failure_close``: it can take a 403."""
        try:
            capabilities = start_ok.client_properties.get("capabilities")
        except ProtocolError:
            return False
        return isinstance(capabilities, dict) and bool(
            capabilities.get("authentication_failure_close")
        )

    # -- the broker handshake (we replay the client's) ----------------------------------
    def backend_port(self, backend: Backend, port: int) -> int:
        return port

    def wrap_broker(self, sink: Callable[[bytes], None]) -> Callable[[bytes], None]:
        """The session's entry for the broker's bytes: the relay itself, as they are."""
        return sink

    def broker_greeting(self, egress_port: int) -> bytes:
        """Start the handshake with the broker just connected: the bytes to send it."""
        session, server, settings = self.session, self.server, self.session.settings
        assert server is not None
        start_ok, tune_ok, open_ = server.start_ok, server.tune_ok, server.open
        assert start_ok is not None and tune_ok is not None and open_ is not None
        client_tag = f"{session.client[0]}:{session.client[1]}" + (" TLS" if session.secure else "")
        host_tag = f"(:{session.listen_port}) {settings.hostname}:{egress_port}"
        extra = encode_long_string_entry("amqpprox_client", client_tag)
        extra += encode_long_string_entry("amqpprox_host", host_tag)
        frames = server.replay_frames(extra)
        if session.auth_start_ok is not None:  # the auth service's credentials instead
            start_ok = session.auth_start_ok.with_extra_table_bytes(extra)
            frames = (encode_method(start_ok), frames[1], frames[2])
        self.client_hs = hs.ClientHandshake(
            start_ok,
            tune_ok,
            open_,
            max_frame_size=settings.max_frame_size,
            pipelined=settings.pipeline_broker_handshake,
            frames=frames,
        )
        return self.client_hs.initiate()

    def broker_handshake_data(self, data: bytes) -> None:
        session, client_hs = self.session, self.client_hs
        broker = session.broker_transport
        if client_hs is None or broker is None:
            return
        try:
            events = client_hs.receive_data(data)
        except ProtocolError as error:
            log.warning("session %d: broker handshake error: %s", session.id, error.reply_text)
            session.attempt_failed()
            return
        out = client_hs.data_to_send()
        if out:
            broker.write(out)
        for event in events:
            if isinstance(event, hs.BrokerOpenOk):
                session.broker_open(event.frame_bytes, event.trailing)
            elif isinstance(event, hs.BrokerClosed):
                close = event.close
                log.info(
                    "session %d: broker refused the handshake: %d %s",
                    session.id,
                    close.reply_code,
                    close.reply_text,
                )
                session.broker_refused(
                    close.reply_code, close.reply_text, close.class_id, close.method_id
                )

    def went_live(self) -> bytes:
        """The handshakes are over: drop them; the client bytes pipelined after Open."""
        server = self.server
        pending = server.pending_bytes() if server is not None else b""
        tune_ok = server.tune_ok if server is not None else None
        if tune_ok is not None:
            self.heartbeat = tune_ok.heartbeat
        self.server = None
        self.client_hs = None
        return pending

    # -- how a side left (the rest: departures.Departures) ------------------------------
    def client_closed_in_handshake(self) -> bool:
        return self.server is not None and self.server.state is hs.ServerState.CLOSED

    def broker_lost_notice(self) -> bytes:
        return close_frame(CONNECTION_FORCED, BROKER_LOST_TEXT)

    def silent_broker_frame(self) -> bytes:
        return close_frame(CONNECTION_FORCED, BROKER_SILENT_TEXT)

    def violation_frame(self, reason: str) -> bytes:
        return close_frame(FRAME_ERROR, f"FRAME_ERROR - {reason}")

    # -- graceful close: Close to the client, then to the broker -------------------------
    def close_client(self, code: int, text: str) -> None:
        """Send the client our Close; its frames pass until its CloseOk (or crossing Close)."""
        self.in_scanner.close_seen = self.in_scanner.close_ok_seen = False
        self.session.client_transport.write(close_frame(code, text))

    def closing_client_data(self, data: bytes) -> None:
        """Forward the client's last frames until its CloseOk (or crossing Close)."""
        session, scanner = self.session, self.in_scanner
        session.in_bytes += len(data)
        session.in_packets += 1
        bad = scanner.feed(data)
        session.in_frames = scanner.frames
        broker = session.broker_transport
        if bad >= 0:
            session.violation(scanner.error, True)
            return
        if not (scanner.close_ok_seen or scanner.close_seen):
            if broker is not None:
                broker.write(data)
            return
        upto = max(0, scanner.close_offset)
        if broker is not None and upto:
            broker.write(data[:upto])
        if scanner.close_seen and not scanner.close_ok_seen:
            session.client_transport.write(_CLOSE_OK)
        session.client_transport.close()
        assert session.closing is not None
        session.closing.client_done()

    def close_broker(self, code: int, text: str) -> None:
        """Send the broker our Close; ``closing_broker_data`` waits for its CloseOk."""
        broker = self.session.broker_transport
        assert broker is not None
        self.out_scanner.close_seen = self.out_scanner.close_ok_seen = False
        broker.write(close_frame(code, text))

    def closing_broker_data(self, data: bytes) -> None:
        scanner = self.out_scanner
        scanner.feed(data)
        if scanner.close_ok_seen or scanner.close_seen:
            broker = self.session.broker_transport
            if broker is not None:
                if scanner.close_seen and not scanner.close_ok_seen:
                    broker.write(_CLOSE_OK)
                broker.close()
            closing = self.session.closing
            assert closing is not None
            closing.broker_done()
