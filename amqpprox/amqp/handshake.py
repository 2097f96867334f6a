"""The two AMQP 0-9-1 connection handshakes the proxy takes part in, sans-IO.

Owns: :class:`ServerHandshake` (the proxy plays the broker towards a client:
protocol header, Start, StartOk, Tune, TuneOk, Open; AMQP 0-9-1 §2.2.4 and the
class 10 grammar of §1.4.2), :class:`ClientHandshake` (the proxy replays the client's
StartOk/TuneOk/Open towards the broker), their state enums, one transition table each
and the typed events they return. Bytes in via ``receive_data``, events out, bytes to
write via ``data_to_send``; nothing here connects, reads a clock or logs.

Sans-IO: imports no asyncio, socket or ssl and nothing of ours outside
``amqpprox.amqp``.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias, TypeVar, Union

from amqpprox.amqp.errors import (
    COMMAND_INVALID,
    FRAME_ERROR,
    NOT_IMPLEMENTED,
    RESOURCE_ERROR,
    UNEXPECTED_FRAME,
    ProtocolError,
)
from amqpprox.amqp.fields import FieldValue
from amqpprox.amqp.frames import (
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    LEGACY_PROTOCOL_HEADER,
    NEED_DATA,
    PROTOCOL_HEADER,
    Frame,
    FrameReader,
    encode_frame,
)
from amqpprox.amqp.methods import (
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionSecure,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    Method,
    decode_method,
    encode_method,
    ids_of,
    method_ids,
    method_name,
)

__all__ = [
    "DEFAULT_MAX_PENDING_BYTES",
    "BadProtocolHeader",
    "BrokerClosed",
    "BrokerOpenOk",
    "BrokerStart",
    "BrokerTune",
    "ClientCloseOk",
    "ClientClosed",
    "ClientEvent",
    "ClientHandshake",
    "ClientState",
    "Event",
    "OpenReceived",
    "ServerEvent",
    "ServerHandshake",
    "ServerState",
    "StartOkReceived",
    "TuneOkReceived",
    "default_server_properties",
]

# Bytes a client may pipeline after Connection.Open before the broker side is open.
DEFAULT_MAX_PENDING_BYTES: Final = 1 << 20

_HEADER_LEN: Final = len(PROTOCOL_HEADER)
_ACCEPTED_HEADERS: Final = frozenset({PROTOCOL_HEADER, LEGACY_PROTOCOL_HEADER})
_CLOSE_IDS: Final = frozenset({(10, 50), (10, 51)})


def default_server_properties(version: str = "0.1") -> dict[str, FieldValue]:
    """The server-properties upstream amqpprox advertises (reference §5.1)."""
    return {
        "capabilities": {
            "publisher_confirms": True,
            "exchange_exchange_bindings": True,
            "basic.nack": True,
            "consumer_cancel_notify": True,
            "connection.blocked": True,
            "consumer_priorities": True,
            "authentication_failure_close": True,
            "per_consumer_qos": True,
            "direct_reply_to": True,
        },
        "cluster_name": "amqpprox_cloud",
        "copyright": "Copyright (C) Bloomberg Finance L.P. 2016.",
        "product": "amqpprox",
        "version": version,
        "platform": "Python",
    }


@functools.lru_cache(maxsize=8)
def _default_start(version: str, mechanisms: str, locales: str) -> tuple[ConnectionStart, bytes]:
    start = ConnectionStart(0, 9, default_server_properties(version), mechanisms, locales)
    return start, encode_method(start)


@functools.lru_cache(maxsize=8)
def _encoded_tune(channel_max: int, frame_max: int, heartbeat: int) -> bytes:
    return encode_method(ConnectionTune(channel_max, frame_max, heartbeat))


# -------------------------------------------------------------------------- events


@dataclass(frozen=True)
class BadProtocolHeader:
    """The client's first 8 bytes were not an AMQP 0-9-1 header; ours was sent back."""

    received: bytes


@dataclass(frozen=True)
class StartOkReceived:
    start_ok: ConnectionStartOk


@dataclass(frozen=True)
class TuneOkReceived:
    tune_ok: ConnectionTuneOk


@dataclass(frozen=True)
class OpenReceived:
    open: ConnectionOpen

    @property
    def vhost(self) -> str:
        return self.open.virtual_host


@dataclass(frozen=True)
class ClientClosed:
    """The client sent Connection.Close; CloseOk has been queued for it."""

    close: ConnectionClose


@dataclass(frozen=True)
class ClientCloseOk:
    """The client acknowledged our Connection.Close."""


@dataclass(frozen=True)
class BrokerStart:
    """The broker's Connection.Start, as its method payload.

    The proxy uses nothing of it (reference §5.2: not reconciled), so its arguments, a
    server-properties table of some twenty entries, are decoded only if ``start`` is read.
    """

    payload: bytes

    @property
    def start(self) -> ConnectionStart:
        """The decoded method (decoded on each read: nothing on the proxy's path reads it)."""
        method = decode_method(self.payload)
        if not isinstance(method, ConnectionStart):
            raise ProtocolError(COMMAND_INVALID, f"{method_name(method)} is not Connection.Start")
        return method


@dataclass(frozen=True)
class BrokerTune:
    tune: ConnectionTune


@dataclass(frozen=True)
class BrokerOpenOk:
    """The broker opened the connection.

    ``frame_bytes`` is its OpenOk frame exactly as received and ``trailing`` whatever
    bytes followed it in the same data, unparsed; the proxy forwards both to the client.
    """

    frame_bytes: bytes
    trailing: bytes


@dataclass(frozen=True)
class BrokerClosed:
    """The broker sent Connection.Close; CloseOk has been queued for it."""

    close: ConnectionClose


ServerEvent: TypeAlias = Union[  # noqa: UP007
    BadProtocolHeader, StartOkReceived, TuneOkReceived, OpenReceived, ClientClosed, ClientCloseOk
]
ClientEvent: TypeAlias = Union[BrokerStart, BrokerTune, BrokerOpenOk, BrokerClosed]  # noqa: UP007
Event: TypeAlias = Union[ServerEvent, ClientEvent]  # noqa: UP007


def _check_heartbeat(frame: Frame) -> None:
    # §4.2.7: heartbeat frames must use channel zero.
    if frame.channel != 0:
        raise ProtocolError(FRAME_ERROR, f"heartbeat frame on channel {frame.channel}")


def _handshake_method(frame: Frame) -> Method:
    """The method a handshake frame carries; 505 for anything but a channel-0 method."""
    if frame.type != FRAME_METHOD:
        raise ProtocolError(
            UNEXPECTED_FRAME,
            f"expected a method frame during the connection handshake, got frame type "
            f"{frame.type} on channel {frame.channel}",
        )
    method = decode_method(frame.payload)
    if frame.channel != 0:
        raise ProtocolError(
            COMMAND_INVALID,
            f"{method_name(method)} on channel {frame.channel} before the connection is open",
        )
    return method


# ----------------------------------------------------------- server (we play broker)


class ServerState(enum.Enum):
    # Members are singletons: hash by identity, not by Enum's Python-level name hash
    # (the transition tables look a state up several times per frame).
    __hash__ = object.__hash__

    AWAITING_PROTOCOL_HEADER = enum.auto()
    START_SENT = enum.auto()
    TUNE_SENT = enum.auto()
    AWAITING_OPEN = enum.auto()
    OPEN_RECEIVED = enum.auto()  # waiting for the broker side; client bytes are held
    CLOSING = enum.auto()  # we sent Connection.Close, awaiting CloseOk
    CLOSED = enum.auto()
    ERROR = enum.auto()


_ServerHandler: TypeAlias = Callable[["ServerHandshake", Any], ServerEvent]

# States in which frames from the client are parsed one by one.
_SERVER_PARSING: Final = frozenset(
    {
        ServerState.START_SENT,
        ServerState.TUNE_SENT,
        ServerState.AWAITING_OPEN,
        ServerState.CLOSING,
    }
)


class ServerHandshake:
    """Plays the broker towards a client until its Connection.Open.

    ``receive_data`` returns events and raises :class:`ProtocolError` when the client
    breaks the protocol (state ERROR; call :meth:`close` then to get a
    ``Connection.Close`` to send; events of that same call are lost). After
    ``OpenReceived`` every further byte is held unparsed, up to ``max_pending_bytes``
    (else ProtocolError 506 RESOURCE_ERROR), for :meth:`pending_bytes`.
    Heartbeats before Open are ignored.
    """

    def __init__(
        self,
        server_properties: dict[str, FieldValue] | None = None,
        channel_max: int = 2047,
        frame_max: int = 131072,
        heartbeat: int = 60,
        max_frame_size: int = 131072,
        *,
        version: str = "0.1",
        mechanisms: str = "PLAIN AMQPLAIN",
        locales: str = "en_US",
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
    ) -> None:
        if server_properties is None:
            # Every session of a proxy sends the same greeting: build and encode it once.
            self.start, self._start_frame = _default_start(version, mechanisms, locales)
        else:
            self.start = ConnectionStart(0, 9, server_properties, mechanisms, locales)
            self._start_frame = encode_method(self.start)
        self.tune = ConnectionTune(channel_max, frame_max, heartbeat)
        self._tune_frame = _encoded_tune(channel_max, frame_max, heartbeat)
        self.max_frame_size = max_frame_size
        self.max_pending_bytes = max_pending_bytes
        self._state = ServerState.AWAITING_PROTOCOL_HEADER
        self._header = bytearray()
        self._reader: FrameReader | None = FrameReader(max_frame_size)
        self._out = bytearray()
        self._pending = bytearray()
        self._pending_taken = False
        self._close_sent = False
        self._start_ok: ConnectionStartOk | None = None
        self._tune_ok: ConnectionTuneOk | None = None
        self._open: ConnectionOpen | None = None
        self.protocol_header: bytes | None = None  # the accepted header, once seen

    # -- properties

    @property
    def state(self) -> ServerState:
        return self._state

    @property
    def start_ok(self) -> ConnectionStartOk | None:
        return self._start_ok

    @property
    def tune_ok(self) -> ConnectionTuneOk | None:
        return self._tune_ok

    @property
    def open(self) -> ConnectionOpen | None:
        return self._open

    @property
    def vhost(self) -> str | None:
        return None if self._open is None else self._open.virtual_host

    # -- I/O facing API

    def data_to_send(self) -> bytes:
        """Return and clear the bytes to write to the client."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def pending_bytes(self) -> bytes:
        """Return and clear the raw bytes the client sent after Connection.Open."""
        pending = bytes(self._pending)
        self._pending.clear()
        if pending:
            self._pending_taken = True
        return pending

    def receive_data(self, data: bytes) -> list[ServerEvent]:
        """Feed bytes from the client; return what happened."""
        try:
            return self._receive(data)
        except ProtocolError as exc:
            self._state = ServerState.ERROR
            if exc.reply_code == FRAME_ERROR:
                self._reader = None  # framing lost: nothing after this can be parsed
            raise

    def close(
        self, reply_code: int, reply_text: str, class_id: int = 0, method_id: int = 0
    ) -> bytes:
        """Start closing: return the bytes to write (undrained output, then the Close).

        Afterwards ``receive_data`` waits for the client's CloseOk (or Close) and
        discards everything else. Bytes held since OPEN_RECEIVED are parsed on the next
        ``receive_data`` call (``b""`` will do), unless ``pending_bytes`` already handed
        some out: then frame boundaries are unknown and all input is discarded. After a
        501 framing error input is discarded too. Before the protocol header there is no
        AMQP connection to close (returns ``b""``, state CLOSED); after a Close was
        sent, nothing more is sent.
        """
        out = self.data_to_send()
        state = self._state
        if self._close_sent or state is ServerState.CLOSED:
            return out
        if state is ServerState.AWAITING_PROTOCOL_HEADER:
            self._state = ServerState.CLOSED
            self._reader = None
            return out
        if state is ServerState.OPEN_RECEIVED:
            if self._pending_taken:
                # Someone else owns the stream now; we cannot find frame boundaries.
                self._reader = None
            else:
                self._reader = FrameReader(self.max_frame_size)
                self._reader.feed(bytes(self._pending))
                self._pending.clear()
        self._close_sent = True
        self._state = ServerState.CLOSING
        return out + encode_method(ConnectionClose(reply_code, reply_text, class_id, method_id))

    # -- internals

    def _receive(self, data: bytes) -> list[ServerEvent]:
        state = self._state
        if state is ServerState.OPEN_RECEIVED:
            self._hold(data)
            return []
        if state is ServerState.ERROR:
            self._reader = None  # bytes are being dropped: framing is lost
            return []
        reader = self._reader
        if state is ServerState.CLOSED or reader is None:
            return []
        if state is ServerState.AWAITING_PROTOCOL_HEADER:
            missing = _HEADER_LEN - len(self._header)
            self._header += data[:missing]
            data = data[missing:]
            if len(self._header) < _HEADER_LEN:
                return []
            header = bytes(self._header)
            if header not in _ACCEPTED_HEADERS:
                # §4.2.2: answer with the header we do support, then close.
                self._out += PROTOCOL_HEADER
                self._state = ServerState.CLOSED
                self._reader = None
                return [BadProtocolHeader(header)]
            self.protocol_header = header
            self._out += self._start_frame
            self._state = ServerState.START_SENT
        reader.feed(data)
        events: list[ServerEvent] = []
        while self._state in _SERVER_PARSING:
            frame = reader.next_frame()
            if frame is NEED_DATA:
                break
            event = self._on_frame(frame)
            if event is not None:
                events.append(event)
        if self._state is ServerState.OPEN_RECEIVED:
            self._reader = None
            self._hold(reader.take_buffered())
        elif self._state is ServerState.CLOSED:
            self._reader = None
        return events

    def _hold(self, data: bytes) -> None:
        if len(self._pending) + len(data) > self.max_pending_bytes:
            raise ProtocolError(
                RESOURCE_ERROR,
                f"more than {self.max_pending_bytes} bytes sent before Connection.OpenOk",
            )
        self._pending += data

    def _on_frame(self, frame: Frame) -> ServerEvent | None:
        state = self._state
        if frame.type == FRAME_HEARTBEAT:
            if state is not ServerState.CLOSING:
                _check_heartbeat(frame)
            return None
        if state is ServerState.CLOSING and (
            frame.type != FRAME_METHOD
            or frame.channel != 0
            or method_ids(frame.payload) not in _CLOSE_IDS
        ):
            return None  # §1.4.2.9: after sending Close, discard all but Close/CloseOk
        method = _handshake_method(frame)
        transition = _SERVER_TRANSITIONS.get((state, type(method)))
        if transition is None:
            raise ProtocolError(
                COMMAND_INVALID, f"unexpected {method_name(method)} in state {state.name}"
            )
        next_state, handler = transition
        event = handler(self, method)
        self._state = next_state
        return event

    def _on_start_ok(self, start_ok: ConnectionStartOk) -> ServerEvent:
        self._start_ok = start_ok
        self._out += self._tune_frame
        return StartOkReceived(start_ok)

    def _on_tune_ok(self, tune_ok: ConnectionTuneOk) -> ServerEvent:
        self._tune_ok = tune_ok
        return TuneOkReceived(tune_ok)

    def _on_open(self, open_: ConnectionOpen) -> ServerEvent:
        self._open = open_
        return OpenReceived(open_)

    def _on_client_close(self, close: ConnectionClose) -> ServerEvent:
        self._out += encode_method(ConnectionCloseOk())
        return ClientClosed(close)

    def _on_client_close_ok(self, _: ConnectionCloseOk) -> ServerEvent:
        return ClientCloseOk()


_S = ServerState
# (state, method received) -> (next state, action). Heartbeats, the protocol header
# and the hold-everything OPEN_RECEIVED state are handled in ServerHandshake._receive.
_SERVER_TRANSITIONS: Final[dict[tuple[ServerState, type], tuple[ServerState, _ServerHandler]]] = {
    (_S.START_SENT, ConnectionStartOk): (_S.TUNE_SENT, ServerHandshake._on_start_ok),
    (_S.TUNE_SENT, ConnectionTuneOk): (_S.AWAITING_OPEN, ServerHandshake._on_tune_ok),
    (_S.AWAITING_OPEN, ConnectionOpen): (_S.OPEN_RECEIVED, ServerHandshake._on_open),
    (_S.START_SENT, ConnectionClose): (_S.CLOSED, ServerHandshake._on_client_close),
    (_S.TUNE_SENT, ConnectionClose): (_S.CLOSED, ServerHandshake._on_client_close),
    (_S.AWAITING_OPEN, ConnectionClose): (_S.CLOSED, ServerHandshake._on_client_close),
    (_S.CLOSING, ConnectionClose): (_S.CLOSED, ServerHandshake._on_client_close),
    (_S.CLOSING, ConnectionCloseOk): (_S.CLOSED, ServerHandshake._on_client_close_ok),
}


# ----------------------------------------------------------- client (we play client)


class ClientState(enum.Enum):
    __hash__ = object.__hash__  # as ServerState

    AWAITING_START = enum.auto()  # protocol header sent
    STARTOK_SENT = enum.auto()
    OPEN_SENT = enum.auto()  # TuneOk and Open sent
    OPEN = enum.auto()
    CLOSED = enum.auto()
    ERROR = enum.auto()


_ClientHandler: TypeAlias = Callable[["ClientHandshake", Frame], ClientEvent]
_M = TypeVar("_M")


def _decoded(frame: Frame, kind: type[_M]) -> _M:
    """The method of a frame the client transition table matched by ``kind``'s ids."""
    method = decode_method(frame.payload)
    assert isinstance(method, kind)  # decode_method picks the class by those same ids
    return method


_CLIENT_PARSING: Final = frozenset(
    {ClientState.AWAITING_START, ClientState.STARTOK_SENT, ClientState.OPEN_SENT}
)


class ClientHandshake:
    """Replays a client's StartOk, TuneOk and Open towards the broker.

    The broker's Start and Tune are reported but not reconciled (reference §5.2). A
    broker ``Connection.Close`` at any stage is answered with CloseOk and reported as
    :class:`BrokerClosed`. Once OPEN the handshake is over: bytes after the OpenOk are
    in ``BrokerOpenOk.trailing`` and feeding more data is a ``RuntimeError``.
    """

    def __init__(
        self,
        start_ok: ConnectionStartOk,
        tune_ok: ConnectionTuneOk,
        open: ConnectionOpen,
        max_frame_size: int = 131072,
        *,
        pipelined: bool = False,
    ) -> None:
        self.start_ok = start_ok
        self.tune_ok = tune_ok
        self.open = open
        # Pipelined: StartOk, TuneOk and Open go out with the protocol header instead of
        # one round trip each. The broker reads them in order once it has sent Start and
        # Tune; a refusal (Close) is still answered and reported at any stage.
        self.pipelined = pipelined
        self._state = ClientState.AWAITING_START
        self._reader: FrameReader | None = FrameReader(max_frame_size)
        self._out = bytearray()
        self._prefix = bytearray()  # first bytes, while telling a header from a frame
        self._first_seen = False
        self.broker_start_event: BrokerStart | None = None
        self.broker_tune: ConnectionTune | None = None

    @property
    def state(self) -> ClientState:
        return self._state

    def initiate(self) -> bytes:
        """The bytes to write first: the protocol header (and, pipelined, the whole replay)."""
        if self.pipelined:
            return (
                PROTOCOL_HEADER
                + encode_method(self.start_ok)
                + encode_method(self.tune_ok)
                + encode_method(self.open)
            )
        return PROTOCOL_HEADER

    def data_to_send(self) -> bytes:
        """Return and clear the bytes to write to the broker."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[ClientEvent]:
        """Feed bytes from the broker; return what happened."""
        if self._state is ClientState.OPEN:
            if not data:
                return []
            raise RuntimeError("broker handshake is complete: relay the bytes instead")
        try:
            return self._receive(data)
        except ProtocolError:
            self._state = ClientState.ERROR
            self._reader = None
            raise

    def _receive(self, data: bytes) -> list[ClientEvent]:
        reader = self._reader
        if self._state not in _CLIENT_PARSING or reader is None:
            return []
        if not self._first_seen:
            self._prefix += data
            if not self._prefix:
                return []
            if self._prefix[0] == PROTOCOL_HEADER[0]:
                # No frame type is 'A': the broker answered with its own protocol
                # header, which (§4.2.2) means it does not speak AMQP 0-9-1.
                if len(self._prefix) < _HEADER_LEN:
                    return []
                raise ProtocolError(
                    UNEXPECTED_FRAME,
                    "broker rejected AMQP 0-9-1: it answered with protocol header "
                    f"{bytes(self._prefix[:_HEADER_LEN])!r}",
                )
            self._first_seen = True
            data = bytes(self._prefix)
            self._prefix.clear()
        reader.feed(data)
        events: list[ClientEvent] = []
        while self._state in _CLIENT_PARSING:
            frame = reader.next_frame()
            if frame is NEED_DATA:
                break
            event = self._on_frame(frame)
            if event is not None:
                events.append(event)
        if self._state is not ClientState.OPEN and self._state not in _CLIENT_PARSING:
            self._reader = None
        return events

    def _on_frame(self, frame: Frame) -> ClientEvent | None:
        if frame.type == FRAME_HEARTBEAT:
            _check_heartbeat(frame)
            return None
        # Dispatch on the method ids: each handler decodes only what it uses, so the
        # broker's Start (nothing of which is relayed) is never decoded (see BrokerStart).
        ids = None
        if frame.type == FRAME_METHOD and frame.channel == 0:
            ids = method_ids(frame.payload)
        transition = _CLIENT_TRANSITIONS.get((self._state, ids))
        if transition is None:
            method = _handshake_method(frame)  # 505/503 for a frame that is no method here
            if isinstance(method, ConnectionSecure):
                raise ProtocolError(
                    NOT_IMPLEMENTED, "Connection.Secure (SASL challenge) is not supported"
                )
            raise ProtocolError(
                COMMAND_INVALID,
                f"unexpected {method_name(method)} from the broker in state {self._state.name}",
            )
        next_state, handler = transition
        event = handler(self, frame)
        self._state = next_state
        return event

    def _on_start(self, frame: Frame) -> ClientEvent:
        event = BrokerStart(bytes(frame.payload))
        self.broker_start_event = event
        if not self.pipelined:
            self._out += encode_method(self.start_ok)
        return event

    @property
    def broker_start(self) -> ConnectionStart | None:
        """The broker's Connection.Start, decoded on first use."""
        event = self.broker_start_event
        return None if event is None else event.start

    def _on_tune(self, frame: Frame) -> ClientEvent:
        tune = _decoded(frame, ConnectionTune)
        self.broker_tune = tune
        if not self.pipelined:
            self._out += encode_method(self.tune_ok)
            self._out += encode_method(self.open)
        return BrokerTune(tune)

    def _on_open_ok(self, frame: Frame) -> ClientEvent:
        _decoded(frame, ConnectionOpenOk)  # validated, then relayed as it came
        reader = self._reader
        trailing = b"" if reader is None else reader.take_buffered()
        self._reader = None
        # A frame's bytes are fully determined by (type, channel, payload).
        return BrokerOpenOk(encode_frame(frame.type, frame.channel, frame.payload), trailing)

    def _on_close(self, frame: Frame) -> ClientEvent:
        self._out += encode_method(ConnectionCloseOk())
        return BrokerClosed(_decoded(frame, ConnectionClose))


_C = ClientState
_START, _TUNE = ids_of(ConnectionStart), ids_of(ConnectionTune)
_OPEN_OK, _CLOSE = ids_of(ConnectionOpenOk), ids_of(ConnectionClose)
_CLIENT_TRANSITIONS: Final[
    dict[tuple[ClientState, tuple[int, int] | None], tuple[ClientState, _ClientHandler]]
] = {
    (_C.AWAITING_START, _START): (_C.STARTOK_SENT, ClientHandshake._on_start),
    (_C.STARTOK_SENT, _TUNE): (_C.OPEN_SENT, ClientHandshake._on_tune),
    (_C.OPEN_SENT, _OPEN_OK): (_C.OPEN, ClientHandshake._on_open_ok),
    (_C.AWAITING_START, _CLOSE): (_C.CLOSED, ClientHandshake._on_close),
    (_C.STARTOK_SENT, _CLOSE): (_C.CLOSED, ClientHandshake._on_close),
    (_C.OPEN_SENT, _CLOSE): (_C.CLOSED, ClientHandshake._on_close),
}
