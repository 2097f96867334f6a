"""The handshake in which the proxy plays the client: :class:`ClientHandshake` replays a
client's StartOk, TuneOk and Open towards the chosen broker (one transition table,
typed events out). Sans-IO.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final, TypeAlias, TypeVar

from amqpprox.amqp.errors import (
    COMMAND_INVALID,
    NOT_IMPLEMENTED,
    UNEXPECTED_FRAME,
    ProtocolError,
)
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
    _HEADER_LEN,
    BrokerClosed,
    BrokerOpenOk,
    BrokerStart,
    BrokerTune,
    ClientEvent,
    _check_heartbeat,
    _handshake_method,
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
    decode_method,
    encode_method,
    ids_of,
    method_ids,
    method_name,
)

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
        frames: tuple[bytes, bytes, bytes] | None = None,
    ) -> None:
        self.start_ok = start_ok
        self.tune_ok = tune_ok
        self.open = open
        # The three frames to send, when the caller has them encoded already (the client's
        # own bytes, ``ServerHandshake.replay_frames``); else they are encoded here.
        self._frames = frames or (
            encode_method(start_ok),
            encode_method(tune_ok),
            encode_method(open),
        )
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
            start_ok, tune_ok, open_ = self._frames
            return PROTOCOL_HEADER + start_ok + tune_ok + open_
        return PROTOCOL_HEADER

    def data_to_send(self) -> bytes:
        """Return and clear the bytes to write to the broker."""
        if not self._out:
            return b""
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
            self._out += self._frames[0]
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
            self._out += self._frames[1]
            self._out += self._frames[2]
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
