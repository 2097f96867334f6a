"""The stream connection handshake, both ways, as state machines: bytes in, events out.

``ServerHandshake``: the proxy plays the broker. It answers ``PeerProperties``,
``SaslHandshake`` and ``SaslAuthenticate`` itself (the credentials are only checked by
the broker the proxy connects to later), sends ``Tune``, reads the client's ``Tune``
and stops at ``Open``, which names the vhost. It keeps the client's frames to replay.

``ClientHandshake``: the proxy replays those frames to the chosen broker one step at a
time (PeerProperties with extra properties, SaslHandshake, SaslAuthenticate, Tune, Open)
and reports the broker's ``Open`` response, or the response code it refused with.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from amqpprox.stream import codec
from amqpprox.stream.codec import Frame, StreamProtocolError

__all__ = [
    "BrokerOpened",
    "BrokerRefused",
    "ClientClosed",
    "ClientHandshake",
    "OpenReceived",
    "ServerHandshake",
]

HANDSHAKE_FRAME_MAX = 65536  # a handshake frame is small; larger is hostile
MECHANISMS = ("PLAIN", "AMQPLAIN")
_SIZE = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class OpenReceived:
    vhost: str
    correlation_id: int


@dataclass(frozen=True, slots=True)
class ClientClosed:
    """The client sent Close during the handshake (answered already)."""


@dataclass(frozen=True, slots=True)
class BrokerOpened:
    correlation_id: int
    properties: list[tuple[str, str]]
    trailing: bytes  # what the broker sent after its Open response


@dataclass(frozen=True, slots=True)
class BrokerRefused:
    """The broker answered a step with an error code (its own code, forwarded)."""

    code: int
    stage: str


class FrameSplitter:
    """Whole frames out of a byte stream (handshake only: frames are small)."""

    __slots__ = ("_buffer", "max_frame")

    def __init__(self, max_frame: int = HANDSHAKE_FRAME_MAX) -> None:
        self._buffer = bytearray()
        self.max_frame = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        """Every whole frame's payload (key onwards) now available."""
        self._buffer += data
        out: list[bytes] = []
        buffer = self._buffer
        while len(buffer) >= 4:
            size = _SIZE.unpack_from(buffer)[0]
            if size > self.max_frame or size < 4:
                raise StreamProtocolError(f"frame of {size} bytes in the handshake")
            if len(buffer) < 4 + size:
                break
            out.append(bytes(buffer[4 : 4 + size]))
            del buffer[: 4 + size]
        return out

    def rest(self) -> bytes:
        out = bytes(self._buffer)
        self._buffer.clear()
        return out


class ServerState(enum.Enum):
    AWAITING_PEER_PROPERTIES = 1
    AWAITING_SASL_HANDSHAKE = 2
    AWAITING_SASL_AUTHENTICATE = 3
    AWAITING_TUNE = 4
    AWAITING_OPEN = 5
    OPEN = 6
    CLOSED = 7


# Which request each state accepts, and the state after it.
_SERVER_STEPS = {
    ServerState.AWAITING_PEER_PROPERTIES: (
        codec.PEER_PROPERTIES,
        ServerState.AWAITING_SASL_HANDSHAKE,
    ),
    ServerState.AWAITING_SASL_HANDSHAKE: (
        codec.SASL_HANDSHAKE,
        ServerState.AWAITING_SASL_AUTHENTICATE,
    ),
    ServerState.AWAITING_SASL_AUTHENTICATE: (codec.SASL_AUTHENTICATE, ServerState.AWAITING_TUNE),
    ServerState.AWAITING_TUNE: (codec.TUNE, ServerState.AWAITING_OPEN),
    ServerState.AWAITING_OPEN: (codec.OPEN, ServerState.OPEN),
}


class ServerHandshake:
    """The proxy as the broker, up to the client's Open."""

    def __init__(
        self, frame_max: int, heartbeat: int, server_properties: Sequence[tuple[str, str]]
    ) -> None:
        self.state = ServerState.AWAITING_PEER_PROPERTIES
        self.frame_max = frame_max
        self.heartbeat = heartbeat
        self._properties = list(server_properties)
        self._splitter = FrameSplitter()
        self._out: list[bytes] = []
        self.peer_properties: bytes = b""  # the client's request payload (key onwards)
        self.client_properties: dict[str, str] = {}
        self.sasl_handshake: bytes = b""  # whole frames, as the client sent them
        self.sasl_authenticate: bytes = b""
        self.mechanism = ""
        self.credentials = b""
        self.open: bytes = b""
        self.open_correlation_id = 0
        self.vhost = ""
        self.tuned = (frame_max, heartbeat)  # the client's Tune
        self._pending = b""

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def pending_bytes(self) -> bytes:
        """What the client sent after Open (pipelined frames), for the relay."""
        out = self._pending + self._splitter.rest()
        self._pending = b""
        return out

    def receive_data(self, data: bytes) -> list[OpenReceived | ClientClosed]:
        if self.state is ServerState.OPEN:
            self._pending += data
            return []
        if self.state is ServerState.CLOSED:
            return []
        events: list[OpenReceived | ClientClosed] = []
        payloads = self._splitter.feed(data)
        for index, payload in enumerate(payloads):
            event = self._handle(payload, codec.split(payload))
            if event is not None:
                events.append(event)
            if self._finished():
                if isinstance(event, OpenReceived):  # frames pipelined after Open: kept
                    self._pending += b"".join(codec.frame(p) for p in payloads[index + 1 :])
                    self._pending += self._splitter.rest()
                break
        return events

    def _finished(self) -> bool:
        return self.state in (ServerState.OPEN, ServerState.CLOSED)

    def _handle(self, payload: bytes, frame: Frame) -> OpenReceived | ClientClosed | None:
        key = frame.key
        if key == codec.HEARTBEAT:
            return None
        if key == codec.CLOSE:
            self.state = ServerState.CLOSED
            self._out.append(codec.close_response(codec.correlation_of(frame.body)))
            return ClientClosed()
        if key == codec.RESPONSE | codec.CLOSE:
            self.state = ServerState.CLOSED  # the answer to a Close of ours
            return ClientClosed()
        wanted, after = _SERVER_STEPS[self.state]
        if key != wanted:
            raise StreamProtocolError(
                f"unexpected command 0x{key:04x} during the handshake", codec.UNKNOWN_FRAME
            )
        body = frame.body
        if key == codec.PEER_PROPERTIES:
            correlation_id = codec.correlation_of(body)
            reader = codec.Reader(body, 4)
            self.client_properties = dict(reader.properties())
            self.peer_properties = payload
            self._out.append(codec.peer_properties_response(correlation_id, self._properties))
        elif key == codec.SASL_HANDSHAKE:
            self.sasl_handshake = codec.frame(payload)
            self._out.append(codec.sasl_handshake_response(codec.correlation_of(body), MECHANISMS))
        elif key == codec.SASL_AUTHENTICATE:
            correlation_id, self.mechanism, self.credentials = codec.read_sasl_authenticate(body)
            if self.mechanism not in MECHANISMS:
                self._out.append(
                    codec.sasl_authenticate_response(
                        correlation_id, codec.SASL_MECHANISM_NOT_SUPPORTED
                    )
                )
                return None  # the client may try again with another mechanism
            self.sasl_authenticate = codec.frame(payload)
            self._out.append(codec.sasl_authenticate_response(correlation_id))
            self._out.append(codec.tune(self.frame_max, self.heartbeat))
        elif key == codec.TUNE:
            self.tuned = codec.read_tune(body)
        else:
            self.open_correlation_id, self.vhost = codec.read_open(body)
            self.open = codec.frame(payload)
        self.state = after
        if after is ServerState.OPEN:
            return OpenReceived(self.vhost, self.open_correlation_id)
        return None

    def close(self, correlation_id: int, code: int, reason: str) -> bytes:
        """Our Close to the client (it then answers with a Close response)."""
        return codec.close_request(correlation_id, code, reason)


class ClientState(enum.Enum):
    AWAITING_PEER_PROPERTIES = 1
    AWAITING_SASL_HANDSHAKE = 2
    AWAITING_SASL_AUTHENTICATE = 3
    AWAITING_TUNE = 4
    AWAITING_OPEN = 5
    OPEN = 6
    FAILED = 7


class ClientHandshake:
    """The proxy as the client: replays ``ServerHandshake``'s frames to a broker."""

    def __init__(self, server: ServerHandshake, extra: Sequence[tuple[str, str]]) -> None:
        self.server = server
        self.extra = list(extra)
        self.state = ClientState.AWAITING_PEER_PROPERTIES
        self._splitter = FrameSplitter()
        self._out: list[bytes] = []
        self.broker_tune = (0, 0)

    def initiate(self) -> bytes:
        return codec.with_peer_properties(self.server.peer_properties, self.extra)

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[BrokerOpened | BrokerRefused]:
        events: list[BrokerOpened | BrokerRefused] = []
        payloads = self._splitter.feed(data)
        for index, payload in enumerate(payloads):
            event = self._handle(codec.split(payload))
            if event is None:
                continue
            if isinstance(event, BrokerOpened):  # what follows is the relay's
                after = b"".join(codec.frame(p) for p in payloads[index + 1 :])
                event = BrokerOpened(
                    event.correlation_id, event.properties, after + self._splitter.rest()
                )
            events.append(event)
            break
        return events

    def _handle(self, frame: Frame) -> BrokerOpened | BrokerRefused | None:
        key, state, server = frame.key, self.state, self.server
        if key == codec.HEARTBEAT:
            return None
        if key == codec.CLOSE:
            reader = codec.Reader(frame.body)
            reader.u32()
            self.state = ClientState.FAILED
            return BrokerRefused(reader.u16(), "close")
        if key == codec.TUNE and state is ClientState.AWAITING_TUNE:
            frame_max, heartbeat = codec.read_tune(frame.body)
            self.broker_tune = (frame_max, heartbeat)
            client_max, client_heartbeat = server.tuned
            agreed_max = (
                min(x for x in (frame_max, client_max) if x) if frame_max or client_max else 0
            )
            beats = [x for x in (heartbeat, client_heartbeat) if x]
            self._out.append(codec.tune(agreed_max, min(beats) if beats else 0))
            self._out.append(server.open)
            self.state = ClientState.AWAITING_OPEN
            return None
        expected = {
            ClientState.AWAITING_PEER_PROPERTIES: codec.PEER_PROPERTIES,
            ClientState.AWAITING_SASL_HANDSHAKE: codec.SASL_HANDSHAKE,
            ClientState.AWAITING_SASL_AUTHENTICATE: codec.SASL_AUTHENTICATE,
            ClientState.AWAITING_OPEN: codec.OPEN,
        }.get(state)
        if expected is None or key != expected | codec.RESPONSE:
            raise StreamProtocolError(f"unexpected command 0x{key:04x} from the broker")
        if state is ClientState.AWAITING_OPEN:
            correlation_id, code, props = codec.read_open_response(frame.body)
            if code != codec.OK:
                self.state = ClientState.FAILED
                return BrokerRefused(code, "open")
            self.state = ClientState.OPEN
            return BrokerOpened(correlation_id, props, b"")
        _correlation_id, code = codec.response_code(frame.body)
        if code != codec.OK:
            self.state = ClientState.FAILED
            return BrokerRefused(
                code, "authentication" if expected == codec.SASL_AUTHENTICATE else "handshake"
            )
        if state is ClientState.AWAITING_PEER_PROPERTIES:
            self._out.append(server.sasl_handshake)
            self.state = ClientState.AWAITING_SASL_HANDSHAKE
        elif state is ClientState.AWAITING_SASL_HANDSHAKE:
            self._out.append(server.sasl_authenticate)
            self.state = ClientState.AWAITING_SASL_AUTHENTICATE
        else:
            self.state = ClientState.AWAITING_TUNE
        return None
