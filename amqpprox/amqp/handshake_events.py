"""What both AMQP 0-9-1 handshakes share: the typed events they return, the broker's
default greeting, and the checks every handshake frame goes through. Sans-IO.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final, TypeAlias, Union

from amqpprox.amqp.errors import (
    COMMAND_INVALID,
    FRAME_ERROR,
    UNEXPECTED_FRAME,
    ProtocolError,
)
from amqpprox.amqp.fields import FieldValue
from amqpprox.amqp.frames import (
    FRAME_METHOD,
    LEGACY_PROTOCOL_HEADER,
    PROTOCOL_HEADER,
    Frame,
)
from amqpprox.amqp.methods import (
    ConnectionClose,
    ConnectionOpen,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    Method,
    decode_method,
    encode_method,
    method_name,
)

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
