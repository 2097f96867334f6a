"""Minimal, CPU-cheap raw-socket AMQP 0-9-1 client used by the load generator.

Design rules:

* Every outgoing frame is encoded once (with pamqp) and cached; the hot paths
  only call ``socket.sendall`` on pre-built ``bytes``.
* Incoming traffic on hot paths is never turned into objects: the
  :class:`DeliveryCounter` walks frame headers in a ``bytearray`` with
  ``struct.unpack_from`` and integer offsets.
* Every blocking call runs under a socket timeout derived from a deadline.
"""

from __future__ import annotations

import functools
import socket
import ssl
import struct
import time
from dataclasses import dataclass

from pamqp import body as pbody
from pamqp import commands, frame, header

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_END = 0xCE
FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8

_HDR = struct.Struct(">BHI")  # type, channel, size
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_TUNE = struct.Struct(">HIH")  # channel_max, frame_max, heartbeat


def _mid(class_id: int, method_id: int) -> int:
    """Pack a (class, method) pair the way it appears on the wire (u32)."""
    return (class_id << 16) | method_id


M_START = _mid(10, 10)
M_TUNE = _mid(10, 30)
M_OPEN_OK = _mid(10, 41)
M_CLOSE = _mid(10, 50)
M_CLOSE_OK = _mid(10, 51)
M_BLOCKED = _mid(10, 60)
M_UNBLOCKED = _mid(10, 61)
M_CHANNEL_OPEN_OK = _mid(20, 11)
M_CHANNEL_CLOSE = _mid(20, 40)
M_QUEUE_DECLARE_OK = _mid(50, 11)
M_CONSUME_OK = _mid(60, 21)
M_DELIVER = _mid(60, 60)


class AmqpError(Exception):
    """Protocol violation, server-side close, or timeout on the wire."""


@dataclass(frozen=True)
class Target:
    """A loopback host:port the benchmark talks AMQP to.

    With ``tls_ca`` (a CA file) the socket is wrapped in TLS, the server's certificate
    verified against that CA for the name ``tls_server_name``.
    """

    host: str
    port: int
    tls_ca: str | None = None
    tls_server_name: str = "localhost"

    def __str__(self) -> str:
        return f"{self.host}:{self.port}{' (TLS)' if self.tls_ca else ''}"


@functools.lru_cache(maxsize=4)
def client_tls_context(ca_file: str) -> ssl.SSLContext:
    """One context per process and CA (building one per connection would skew conn/s)."""
    return ssl.create_default_context(cafile=ca_file)


def connect(target: Target, timeout: float) -> socket.socket:
    """A TCP connection to ``target``, TLS handshake done when it is a TLS target."""
    sock = socket.create_connection((target.host, target.port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if target.tls_ca is None:
            return sock
        # The handshake runs under the socket's timeout set above.
        return client_tls_context(target.tls_ca).wrap_socket(
            sock, server_hostname=target.tls_server_name
        )
    except BaseException:
        sock.close()
        raise


def close_reason(payload: bytes | bytearray | memoryview) -> str:
    """Decode reply-code and reply-text of Connection.Close / Channel.Close."""
    code = _U16.unpack_from(payload, 4)[0]
    length = payload[6]
    text = bytes(payload[7 : 7 + length]).decode("utf-8", "replace")
    return f"{code} {text}"


# --------------------------------------------------------------------------
# Pre-encoded frames
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def start_ok_frame(user: str, password: str) -> bytes:
    """Connection.StartOk with PLAIN credentials."""
    props: dict[str, object] = {
        "product": "amqpprox-bench",
        "capabilities": {"connection.blocked": True},
    }
    method = commands.Connection.StartOk(
        client_properties=props,  # type: ignore[arg-type]
        mechanism="PLAIN",
        response=f"\0{user}\0{password}",
        locale="en_US",
    )
    return frame.marshal(method, 0)


@functools.lru_cache(maxsize=32)
def tune_ok_open_frames(channel_max: int, frame_max: int, vhost: str) -> bytes:
    """Connection.TuneOk (heartbeats off) immediately followed by Connection.Open."""
    tune_ok = commands.Connection.TuneOk(channel_max=channel_max, frame_max=frame_max, heartbeat=0)
    return frame.marshal(tune_ok, 0) + frame.marshal(
        commands.Connection.Open(virtual_host=vhost), 0
    )


CONNECTION_CLOSE = frame.marshal(
    commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0), 0
)
CHANNEL_OPEN = frame.marshal(commands.Channel.Open(), 1)


def queue_declare_frame(queue: str) -> bytes:
    """Exclusive, auto-delete, non-durable queue on channel 1."""
    return frame.marshal(commands.Queue.Declare(queue=queue, exclusive=True, auto_delete=True), 1)


def consume_frame(queue: str) -> bytes:
    """No-ack consumer on channel 1 (prefetch is irrelevant with no-ack)."""
    return frame.marshal(commands.Basic.Consume(queue=queue, consumer_tag="bench", no_ack=True), 1)


def publish_frames(routing_key: str, body_size: int, frame_max: int) -> bytes:
    """Basic.Publish + content header + body frames (split to fit frame_max)."""
    chunk = frame_max - 8  # 7-byte frame header + frame-end octet
    payload = bytes(i & 0xFF for i in range(body_size))
    parts = [
        frame.marshal(commands.Basic.Publish(exchange="", routing_key=routing_key), 1),
        frame.marshal(header.ContentHeader(0, body_size, commands.Basic.Properties()), 1),
    ]
    parts.extend(
        frame.marshal(pbody.ContentBody(payload[i : i + chunk]), 1)
        for i in range(0, body_size, chunk)
    )
    return b"".join(parts)


def parse_frame_header(header: bytes | bytearray) -> tuple[int, int, int]:
    """(frame type, channel, payload size) from the first 7 bytes of a frame."""
    if header[:4] == b"AMQP":
        raise AmqpError(f"server rejected protocol header: {bytes(header[:8])!r}")
    ftype, channel, size = _HDR.unpack_from(header, 0)
    return ftype, channel, size


def method_id(payload: bytes | bytearray) -> int:
    """The (class, method) u32 at the start of a method frame's payload."""
    value: int = _U32.unpack_from(payload, 0)[0]
    return value


def negotiate_tune(tune_payload: bytes, frame_max: int) -> tuple[int, int]:
    """(channel_max, frame_max) to answer Connection.Tune with; heartbeats stay off."""
    srv_channel_max, srv_frame_max, _hb = _TUNE.unpack_from(tune_payload, 4)
    channel_max = min(srv_channel_max or 2047, 2047)
    fmax = min(srv_frame_max, frame_max) if srv_frame_max else frame_max
    return channel_max, fmax


# --------------------------------------------------------------------------
# Control-path frame reader (allocates; used only outside hot loops)
# --------------------------------------------------------------------------


class FrameReader:
    """Reads whole frames from a blocking socket, honouring a deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buf = bytearray()

    def _fill(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise AmqpError("deadline exceeded waiting for a frame")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError as exc:
            raise AmqpError("timed out waiting for a frame") from exc
        if not data:
            raise AmqpError("connection closed by peer")
        self.buf += data

    def read_frame(self) -> tuple[int, int, bytes]:
        """Return (frame type, channel, payload)."""
        while True:
            if len(self.buf) >= 7:
                if self.buf[:4] == b"AMQP":
                    raise AmqpError(f"server rejected protocol header: {bytes(self.buf[:8])!r}")
                ftype, channel, size = _HDR.unpack_from(self.buf, 0)
                if len(self.buf) >= size + 8:
                    if self.buf[7 + size] != FRAME_END:
                        raise AmqpError("bad frame-end octet")
                    payload = bytes(self.buf[7 : 7 + size])
                    del self.buf[: size + 8]
                    return ftype, channel, payload
            self._fill()

    def expect(self, method: int, *, skip_other: bool = False) -> bytes:
        """Read frames until ``method`` arrives; raise on close or mismatch."""
        for _ in range(1_000_000):  # bounded; the deadline normally ends it first
            ftype, _channel, payload = self.read_frame()
            if ftype == FRAME_HEARTBEAT:
                continue
            if ftype == FRAME_METHOD and len(payload) >= 4:
                got = _U32.unpack_from(payload, 0)[0]
                if got == method:
                    return payload
                if got in (M_CLOSE, M_CHANNEL_CLOSE):
                    raise AmqpError(f"server closed: {close_reason(payload)}")
                if got in (M_BLOCKED, M_UNBLOCKED):
                    continue
            if not skip_other:
                raise AmqpError(
                    f"unexpected frame type={ftype} while waiting for method {method:#010x}"
                )
        raise AmqpError("too many unexpected frames")


# --------------------------------------------------------------------------
# Connection set-up / tear-down
# --------------------------------------------------------------------------


@dataclass
class Connection:
    """An open AMQP connection on a blocking socket."""

    sock: socket.socket
    reader: FrameReader
    frame_max: int

    def start_counting(self, bufsize: int) -> DeliveryCounter:
        """Hand buffered bytes over to a hot-path :class:`DeliveryCounter`."""
        counter = DeliveryCounter(bufsize, initial=bytes(self.reader.buf))
        self.reader.buf.clear()
        return counter

    def stop_counting(self, counter: DeliveryCounter) -> None:
        """Give unscanned bytes back to the control-path reader."""
        self.reader.buf[:0] = counter.leftover()

    def close(self, timeout: float = 5.0) -> None:
        """Connection.Close, wait (bounded) for CloseOk, then close the socket."""
        try:
            self.reader.deadline = time.monotonic() + timeout
            self.sock.settimeout(timeout)
            self.sock.sendall(CONNECTION_CLOSE)
            self.reader.expect(M_CLOSE_OK, skip_other=True)
        finally:
            self.sock.close()


def open_connection(
    target: Target,
    *,
    timeout: float = 10.0,
    frame_max: int = 131072,
    vhost: str = "/",
    user: str = "guest",
    password: str = "guest",
) -> Connection:
    """Full AMQP connection open: header, StartOk, TuneOk, Open -> OpenOk."""
    deadline = time.monotonic() + timeout
    sock = connect(target, timeout)
    try:
        sock.sendall(PROTOCOL_HEADER)
        reader = FrameReader(sock, deadline)
        reader.expect(M_START)
        sock.sendall(start_ok_frame(user, password))
        channel_max, fmax = negotiate_tune(reader.expect(M_TUNE), frame_max)
        sock.sendall(tune_ok_open_frames(channel_max, fmax, vhost))
        reader.expect(M_OPEN_OK)
    except BaseException:
        sock.close()
        raise
    return Connection(sock=sock, reader=reader, frame_max=fmax)


def open_channel(conn: Connection) -> None:
    """Open channel 1."""
    conn.sock.sendall(CHANNEL_OPEN)
    conn.reader.expect(M_CHANNEL_OPEN_OK)


def declare_and_consume(conn: Connection, queue: str) -> None:
    """Declare the benchmark queue and start a no-ack consumer on it."""
    conn.sock.sendall(queue_declare_frame(queue))
    conn.reader.expect(M_QUEUE_DECLARE_OK)
    conn.sock.sendall(consume_frame(queue))
    conn.reader.expect(M_CONSUME_OK)


def connect_cycle(target: Target, timeout: float) -> None:
    """One full open + Close/CloseOk + socket close (connection-rate scenario)."""
    open_connection(target, timeout=timeout).close(timeout)


# --------------------------------------------------------------------------
# Hot-path consumer: count completed deliveries without allocating per frame
# --------------------------------------------------------------------------


class DeliveryCounter:
    """Incrementally scans received bytes and counts completed messages.

    A message is complete when its content header has been seen and its
    body frames add up to the announced body size.  Frames other than
    content, Basic.Deliver, heartbeats and flow notifications cause an
    :class:`AmqpError` (e.g. a server-side Channel.Close).
    """

    __slots__ = ("body_left", "buf", "end", "start", "view")

    def __init__(self, bufsize: int = 1 << 20, initial: bytes = b"") -> None:
        self.buf = bytearray(bufsize)
        self.view = memoryview(self.buf)
        self.start = 0
        self.end = len(initial)
        self.buf[: self.end] = initial
        self.body_left = -1

    def recv(self, sock: socket.socket) -> int:
        """One ``recv_into`` into the free tail of the buffer; raises on EOF."""
        n = sock.recv_into(self.view[self.end :])
        if n == 0:
            raise AmqpError("connection closed by peer")
        self.end += n
        return n

    def scan(self) -> int:
        """Consume all complete frames in the buffer; return messages completed."""
        buf = self.buf
        off = self.start
        end = self.end
        left = self.body_left
        done = 0
        unpack_hdr = _HDR.unpack_from
        while end - off >= 7:
            ftype, _channel, size = unpack_hdr(buf, off)
            fend = off + 7 + size
            if fend >= end:
                if size + 8 > len(buf):
                    raise AmqpError(f"frame of {size} bytes exceeds receive buffer")
                break
            if buf[fend] != FRAME_END:
                raise AmqpError("bad frame-end octet")
            if ftype == FRAME_BODY:
                left -= size
                if left == 0:
                    done += 1
                elif left < 0:
                    raise AmqpError("body frame without content header")
            elif ftype == FRAME_HEADER:
                left = _U64.unpack_from(buf, off + 11)[0]
                if left == 0:
                    done += 1
            elif ftype == FRAME_METHOD:
                method = _U32.unpack_from(buf, off + 7)[0]
                if method != M_DELIVER and method not in (M_BLOCKED, M_UNBLOCKED):
                    payload = bytes(buf[off + 7 : fend])
                    if method in (M_CLOSE, M_CHANNEL_CLOSE):
                        raise AmqpError(f"server closed: {close_reason(payload)}")
                    raise AmqpError(f"unexpected method {method:#010x} during consume")
            elif ftype != FRAME_HEARTBEAT:
                raise AmqpError(f"unexpected frame type {ftype}")
            off = fend + 1
        self.body_left = left
        rem = end - off
        if rem == 0:
            self.start = self.end = 0
        elif off > 0:
            buf[0:rem] = buf[off:end]
            self.start = 0
            self.end = rem
        return done

    def leftover(self) -> bytes:
        """Unscanned bytes (used when handing the buffer to another reader)."""
        return bytes(self.buf[self.start : self.end])
