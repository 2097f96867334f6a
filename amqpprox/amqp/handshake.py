"""The two AMQP 0-9-1 connection handshakes the proxy takes part in, sans-IO.

Owns: :class:`ServerHandshake` (the proxy plays the broker towards a client:
protocol header, Start, StartOk, Tune, TuneOk, Open; AMQP 0-9-1 §2.2.4 and the
class 10 grammar of §1.4.2), its state enum and its transition table. The other side,
:class:`ClientHandshake` (the proxy replays the client's StartOk/TuneOk/Open towards
the broker), lives in ``client_handshake.py`` and the typed events both return in
``handshake_events.py``; this module re-exports them, so ``handshake`` is the one name
to import. Bytes in via ``receive_data``, events out, bytes to write via
``data_to_send``; nothing here connects, reads a clock or logs.

Sans-IO: imports no asyncio, socket or ssl and nothing of ours outside
``amqpprox.amqp``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from struct import Struct
from typing import Any, Final, TypeAlias

from amqpprox.amqp.client_handshake import ClientHandshake, ClientState
from amqpprox.amqp.errors import (
    COMMAND_INVALID,
    FRAME_ERROR,
    RESOURCE_ERROR,
    ProtocolError,
)
from amqpprox.amqp.fields import FieldValue
from amqpprox.amqp.frames import (
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    NEED_DATA,
    PROTOCOL_HEADER,
    Frame,
    FrameReader,
    encode_frame,
)
from amqpprox.amqp.handshake_events import (
    _ACCEPTED_HEADERS,
    _CLOSE_IDS,
    _HEADER_LEN,
    DEFAULT_MAX_PENDING_BYTES,
    BadProtocolHeader,
    BrokerClosed,
    BrokerOpenOk,
    BrokerStart,
    BrokerTune,
    ClientClosed,
    ClientCloseOk,
    ClientEvent,
    Event,
    OpenReceived,
    ServerEvent,
    StartOkReceived,
    TuneOkReceived,
    _check_heartbeat,
    _default_start,
    _encoded_tune,
    _handshake_method,
    default_server_properties,
)
from amqpprox.amqp.methods import (
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpen,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    encode_method,
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

_U32: Final = Struct(">I")

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
        # The payloads of those three as the client sent them: replayed to the broker
        # byte for byte (``replay_frames``) instead of encoded again.
        self._payloads: dict[type, bytes] = {}
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

    def replay_frames(self, extra_properties: bytes) -> tuple[bytes, bytes, bytes]:
        """The client's StartOk, TuneOk and Open frames as it sent them, for the broker;
        ``extra_properties`` (encoded table entries) are appended to StartOk's client
        properties. Only once Open has been received."""
        payloads = self._payloads
        start_ok = payloads[ConnectionStartOk]
        end = 8 + _U32.unpack_from(start_ok, 4)[0]
        start_ok = (
            start_ok[:4]
            + _U32.pack(end - 8 + len(extra_properties))
            + start_ok[8:end]
            + extra_properties
            + start_ok[end:]
        )
        return (
            encode_frame(FRAME_METHOD, 0, start_ok),
            encode_frame(FRAME_METHOD, 0, payloads[ConnectionTuneOk]),
            encode_frame(FRAME_METHOD, 0, payloads[ConnectionOpen]),
        )

    # -- I/O facing API

    def data_to_send(self) -> bytes:
        """Return and clear the bytes to write to the client."""
        if not self._out:
            return b""
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
        self._payloads[type(method)] = frame.payload
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
