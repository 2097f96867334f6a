"""Sans-IO AMQP 0-9-1 codec: frames, field tables, connection methods, handshakes.

Owns everything the proxy needs to read and write AMQP 0-9-1 bytes up to the point
where a connection is open. Nothing in this package does I/O: it must not import
asyncio, socket, ssl or any other part of amqpprox (a test enforces it). The proxy's
own codec does not use pamqp: it is small and needs exact control over errors and the
RabbitMQ errata. Only the trace's decoder (``trace_decode``), which must read every
method of the protocol, uses pamqp's spec-generated one; pamqp is used nowhere else.

One native part: the relay's frame walk in C (``_framescan``, optional; ``scanner``
runs the same walk in Python when it is not built or ``AMQPPROX_NO_EXTENSIONS`` is set).
"""

from amqpprox.amqp.errors import ProtocolError
from amqpprox.amqp.fields import FieldValue, Timestamp, decode_table, encode_table
from amqpprox.amqp.frames import (
    HEARTBEAT_FRAME,
    NEED_DATA,
    PROTOCOL_HEADER,
    Frame,
    FrameReader,
    encode_frame,
)
from amqpprox.amqp.handshake import (
    ClientHandshake,
    ClientState,
    Event,
    ServerHandshake,
    ServerState,
)
from amqpprox.amqp.methods import Method, decode_method, encode_method

__all__ = [
    "HEARTBEAT_FRAME",
    "NEED_DATA",
    "PROTOCOL_HEADER",
    "ClientHandshake",
    "ClientState",
    "Event",
    "FieldValue",
    "Frame",
    "FrameReader",
    "Method",
    "ProtocolError",
    "ServerHandshake",
    "ServerState",
    "Timestamp",
    "decode_method",
    "decode_table",
    "encode_frame",
    "encode_method",
    "encode_table",
]
