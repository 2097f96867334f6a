"""Everything RabbitMQ Streams about a session: the two handshakes, the Close frames,
the endpoints the broker advertises, and what a graceful close is.

``StreamAdapter`` has the methods of ``proxy.amqp091.Amqp091`` so that the session,
the connect loop, the relay and the graceful close work unchanged. It plays the broker
(``stream.handshake.ServerHandshake``) until ``Open`` names the vhost, replays the
client's handshake to the backend's stream port with ``amqpprox_client`` added to the
peer properties, forwards the broker's ``Open`` response with ``advertised_host``/
``advertised_port`` naming the proxy, and wraps the broker-to-client chain so that
``Metadata`` responses name proxy endpoints (``proxy.stream_metadata``).

Refusals reach the client in stream terms: the ``Open`` response with an error code
(the broker's own code when the broker refused), then a ``Close`` whose reason names
why. AMQP reply codes the session passes (403, 506, 530, ...) are mapped to stream
response codes; codes under 100 are stream codes already.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from amqpprox.amqp.methods import ConnectionStartOk
from amqpprox.core.sessions import CloseReason
from amqpprox.proxy import departures
from amqpprox.proxy.amqp091 import Amqp091
from amqpprox.proxy.lifecycle import Phase
from amqpprox.proxy.stream_metadata import MetadataRewriter
from amqpprox.stream import codec
from amqpprox.stream import handshake as hs
from amqpprox.stream.codec import StreamProtocolError
from amqpprox.stream.scanner import StreamScanner

if TYPE_CHECKING:
    from collections.abc import Callable

    from amqpprox.core.model import Backend
    from amqpprox.proxy.session import Session

log = logging.getLogger("amqpprox.session")

# The correlation id of the Close requests the proxy sends (clients count up from 1).
PROXY_CORRELATION_ID = 0x7FFF_FFF0
DEFAULT_HEARTBEAT = 60
BROKER_LOST_TEXT = "broker connection lost"
BROKER_SILENT_TEXT = "broker stopped responding"

_AMQP_TO_STREAM = {
    200: codec.OK,
    320: codec.INTERNAL_ERROR,
    403: codec.ACCESS_REFUSED,
    501: codec.FRAME_TOO_LARGE,
    506: codec.VIRTUAL_HOST_ACCESS_FAILURE,
    530: codec.VIRTUAL_HOST_ACCESS_FAILURE,
}


def adapter_for(session: Session, protocol: str, node: str | None) -> Amqp091 | StreamAdapter:
    """The protocol adapter of a session accepted by a listener of ``protocol``."""
    return StreamAdapter(session, node) if protocol == "stream" else Amqp091(session)


def stream_code(code: int) -> int:
    """A stream response code for ``code`` (an AMQP reply code, or a stream code)."""
    if code < 100:
        return code
    return _AMQP_TO_STREAM.get(code, codec.INTERNAL_ERROR)


class StreamAdapter(departures.Departures):
    """The stream protocol side of one session."""

    protocol = "stream"
    node: str | None = None
    in_scanner: StreamScanner
    out_scanner: StreamScanner

    def __init__(self, session: Session, node: str | None = None) -> None:
        self.session = session
        session.protocol = self.protocol
        self.node = node  # a node listener's backend: every connection goes there
        settings = session.settings
        cap = settings.stream_max_frame_size
        self.in_scanner = StreamScanner(cap)
        self.out_scanner = StreamScanner(cap)
        self.server: hs.ServerHandshake | None = hs.ServerHandshake(
            cap,
            DEFAULT_HEARTBEAT,
            [("product", "amqpprox"), ("version", session.plane.version)],
        )
        self.client_hs: hs.ClientHandshake | None = None
        self.heartbeat = 0
        self._refusing = hs.FrameSplitter()  # the client's frames after our Close

    # -- the client handshake (we play the broker) -------------------------------------
    @property
    def start_ok(self) -> ConnectionStartOk | None:
        """The client's SASL credentials in the shape the auth service reads."""
        server = self.server
        if server is None or not server.sasl_authenticate:
            return None
        return ConnectionStartOk(b"", server.mechanism, server.credentials, "en_US")

    def client_handshake_data(self, data: bytes) -> None:
        session, server = self.session, self.server
        if server is None:
            return
        if session.phase is Phase.REFUSING:
            self._refusing_data(data)
            return
        try:
            events = server.receive_data(data)
        except StreamProtocolError as error:
            log.info("session %d: stream handshake error: %s", session.id, error.text)
            session.reject(error.code, error.text, CloseReason.PROTOCOL_ERROR)
            return
        out = server.data_to_send()
        if out:
            session.client_transport.write(out)
        for event in events:
            if isinstance(event, hs.OpenReceived):
                name = server.client_properties.get("connection_name")
                if name:
                    session.connection_name = name
                session.open_received(event.vhost)
            else:
                session.end(CloseReason.CLIENT_GRACEFUL)

    def _refusing_data(self, data: bytes) -> None:
        """After our refusal, the client's Close response (or its own Close) ends it."""
        try:
            payloads = self._refusing.feed(data)
        except StreamProtocolError:
            self.session.end(CloseReason.PROTOCOL_ERROR)
            return
        for payload in payloads:
            key = codec.split(payload).key
            if key == codec.CLOSE:
                corr = codec.correlation_of(payload[4:])
                self.session.client_transport.write(codec.close_response(corr))
            if key in (codec.CLOSE, codec.CLOSE | codec.RESPONSE):
                self.session.end(self.session.close_reason or CloseReason.CLIENT_GRACEFUL)
                return

    def refusal_frame(self, code: int, text: str, class_id: int = 0, method_id: int = 0) -> bytes:
        """The client's pending ``Open`` answered with an error code, then our ``Close``."""
        code = stream_code(code)
        close = codec.close_request(PROXY_CORRELATION_ID, code, text)
        server = self.server
        if server is not None and server.state is hs.ServerState.OPEN:
            return codec.open_response(server.open_correlation_id, code, []) + close
        return close

    def wants_failure_close(self, start_ok: ConnectionStartOk) -> bool:
        return True  # a stream client always gets its Open answered

    # -- the broker handshake (we replay the client's) ----------------------------------
    def backend_port(self, backend: Backend, port: int) -> int:
        return backend.stream_port

    def broker_greeting(self, egress_port: int) -> bytes:
        session, server, settings = self.session, self.server, self.session.settings
        assert server is not None
        auth = session.auth_start_ok
        if auth is not None:  # the auth service replaced the credentials
            corr = codec.correlation_of(server.sasl_authenticate[8:])
            server.sasl_authenticate = codec.sasl_authenticate_request(
                corr, auth.mechanism, auth.response
            )
        client_tag = f"{session.client[0]}:{session.client[1]}" + (" TLS" if session.secure else "")
        host_tag = f"(:{session.listen_port}) {settings.hostname}:{egress_port}"
        self.client_hs = hs.ClientHandshake(
            server, [("amqpprox_client", client_tag), ("amqpprox_host", host_tag)]
        )
        return self.client_hs.initiate()

    def broker_handshake_data(self, data: bytes) -> None:
        session, client_hs = self.session, self.client_hs
        broker = session.broker_transport
        if client_hs is None or broker is None:
            return
        try:
            events = client_hs.receive_data(data)
        except StreamProtocolError as error:
            log.warning("session %d: broker stream handshake error: %s", session.id, error.text)
            session.attempt_failed()
            return
        out = client_hs.data_to_send()
        if out:
            broker.write(out)
        for event in events:
            if isinstance(event, hs.BrokerOpened):
                session.broker_open(self._open_response(event), event.trailing)
            else:
                text = _refusal_text(event)
                log.info("session %d: broker refused the handshake: %s", session.id, text)
                session.broker_refused(event.code, text, 0, 0)

    def _open_response(self, event: hs.BrokerOpened) -> bytes:
        """The broker's Open response with its advertised endpoint replaced by ours."""
        props = dict(event.properties)
        host, port = props.get("advertised_host"), props.get("advertised_port")
        session = self.session
        if host is not None and port is not None and port.isdigit() and session.backend_name:
            session.plane.stream_nodes.learn(session.backend_name, host, int(port))
        props["advertised_host"], ingress = self.ingress
        props["advertised_port"] = str(ingress)
        return codec.open_response(event.correlation_id, codec.OK, list(props.items()))

    @property
    def ingress(self) -> tuple[str, int]:
        """The proxy endpoint this client came in on, as clients are told to reach it."""
        session = self.session
        return session.settings.stream_advertised_host or session.local[0], session.local[1]

    def proxy_endpoint(self, host: str, port: int) -> tuple[str, int]:
        session = self.session
        return session.plane.stream_nodes.proxy_endpoint(
            session.plane.ctx, host, port, self.ingress
        )

    def wrap_broker(self, sink: Callable[[bytes], None]) -> Callable[[bytes], None]:
        """The session's entry for the broker's bytes, made once when it goes live (the
        features a session gains later wrap it): Metadata responses rewritten."""
        return MetadataRewriter(
            sink, self.proxy_endpoint, self.session.settings.stream_max_frame_size
        )

    def went_live(self) -> bytes:
        server = self.server
        pending = server.pending_bytes() if server is not None else b""
        if server is not None:
            self.heartbeat = server.tuned[1]
        self.server = None
        self.client_hs = None
        return pending

    # -- how a side left (the rest: departures.Departures) ------------------------------
    def client_closed_in_handshake(self) -> bool:
        return self.server is not None and self.server.state is hs.ServerState.CLOSED

    def broker_lost_notice(self) -> bytes:
        return codec.close_request(PROXY_CORRELATION_ID, codec.INTERNAL_ERROR, BROKER_LOST_TEXT)

    def silent_broker_frame(self) -> bytes:
        return codec.close_request(PROXY_CORRELATION_ID, codec.INTERNAL_ERROR, BROKER_SILENT_TEXT)

    def violation_frame(self, reason: str) -> bytes:
        return codec.close_request(PROXY_CORRELATION_ID, codec.FRAME_TOO_LARGE, reason)

    # -- graceful close: Close to the client, then to the broker -------------------------
    def close_client(self, code: int, text: str) -> None:
        self.in_scanner.close_seen = self.in_scanner.close_ok_seen = False
        self.session.client_transport.write(
            codec.close_request(PROXY_CORRELATION_ID, stream_code(code), text)
        )

    def closing_client_data(self, data: bytes) -> None:
        """The client's last frames pass until its Close response (or crossing Close).

        The read that carries the client's answer is not forwarded: it ends with it.
        """
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
        session.client_transport.close()
        assert session.closing is not None
        session.closing.client_done()

    def close_broker(self, code: int, text: str) -> None:
        broker = self.session.broker_transport
        assert broker is not None
        self.out_scanner.close_seen = self.out_scanner.close_ok_seen = False
        broker.write(codec.close_request(PROXY_CORRELATION_ID, stream_code(code), text))

    def closing_broker_data(self, data: bytes) -> None:
        scanner = self.out_scanner
        scanner.feed(data)
        if scanner.close_ok_seen or scanner.close_seen:
            broker = self.session.broker_transport
            if broker is not None:
                broker.close()
            closing = self.session.closing
            assert closing is not None
            closing.broker_done()


def _refusal_text(event: hs.BrokerRefused) -> str:
    names = {
        codec.AUTHENTICATION_FAILURE: "authentication failure",
        codec.SASL_MECHANISM_NOT_SUPPORTED: "SASL mechanism not supported",
        codec.VIRTUAL_HOST_ACCESS_FAILURE: "virtual host access failure",
        codec.ACCESS_REFUSED: "access refused",
    }
    reason = names.get(event.code, f"response code {event.code}")
    return f"broker refused the {event.stage}: {reason}"
