"""A scripted AMQP broker for the session tests: the proxy's backend, played in-process.

``ScriptedBroker`` listens on 127.0.0.1 (port 0, read back). Each accepted connection
takes the next :class:`Script` (or the default one) and plays the broker with the
project's own ``ServerHandshake`` (Start, Tune; OpenOk built with the method encoder).
A script says where the connection deviates from a normal handshake (accepted, after
StartOk, after TuneOk, at Open) and how: answer with ``Connection.Close``, stall, send
garbage, or close the socket.

After OpenOk a :class:`BrokerConnection` records every byte it receives (the bytes that
followed the client's Open included), parses them into frames, answers a
``Connection.Close`` with CloseOk (unless told not to), and lets the test send bytes, its
own Close, or drop. Tests wait on it with :meth:`BrokerConnection.until` and the
futures it exposes; nothing here sleeps.

Imports only the sans-IO codec of ``amqpprox.amqp``; nothing of the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar, Union, cast

from amqpprox.amqp import handshake as hs
from amqpprox.amqp.errors import ProtocolError
from amqpprox.amqp.frames import NEED_DATA, PROTOCOL_HEADER, Frame, FrameReader, encode_frame
from amqpprox.amqp.methods import (
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpenOk,
    ConnectionStartOk,
    Method,
    decode_method,
    encode_method,
)

T = TypeVar("T")
DEADLINE = 5.0
GARBAGE = b"HTTP/1.1 400 Bad Request\r\n\r\n"


class Stage(enum.Enum):
    """Where a connection's script may deviate from a normal handshake."""

    ACCEPT = "accept"  # the TCP connection is accepted; nothing read yet
    START_OK = "start_ok"  # StartOk received: instead of sending Tune
    TUNE_OK = "tune_ok"  # TuneOk received: before looking at Open
    OPEN = "open"  # Open received: instead of sending OpenOk


@dataclass(frozen=True)
class Close:
    """Answer with ``Connection.Close`` and wait for the proxy's CloseOk."""

    code: int
    text: str
    class_id: int = 0
    method_id: int = 0

    @property
    def method(self) -> ConnectionClose:
        return ConnectionClose(self.code, self.text, self.class_id, self.method_id)


@dataclass(frozen=True)
class Stall:
    """Say nothing more, ever (the socket stays open; what arrives is ignored)."""


@dataclass(frozen=True)
class Garbage:
    """Send bytes that are no AMQP frame, then say nothing more."""

    data: bytes = GARBAGE


@dataclass(frozen=True)
class Drop:
    """Close the socket (FIN)."""


@dataclass(frozen=True)
class Hold:
    """Stop there, reading but not answering, until :meth:`BrokerConnection.release`."""


Action: TypeAlias = Union[Close, Stall, Garbage, Drop, Hold]  # noqa: UP007


@dataclass(frozen=True)
class Script:
    """What one broker connection does; the default completes the handshake."""

    at: Stage | None = None
    do: Action | None = None
    after_open_ok: bytes = b""  # sent in the same write as OpenOk
    answer_close: bool = True  # answer a Connection.Close after OpenOk with CloseOk


class _Phase(enum.Enum):
    HANDSHAKE = 1
    OPEN = 2  # OpenOk sent: every byte is recorded
    CLOSING = 3  # we sent Close during the handshake: waiting for CloseOk
    SILENT = 4  # stalled, dropped or garbage sent: input ignored
    HELD = 5  # a Hold: input is kept for when the test releases the handshake


class _Watchers:
    """Wake coroutines waiting on a condition whenever something changes."""

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        for future in self._futures:
            if not future.done():
                future.set_result(None)
        self._futures.clear()

    async def until(self, predicate: Callable[[], T], what: str, timeout: float) -> T:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while not (value := predicate()):
                    future = loop.create_future()
                    self._futures.append(future)
                    await future
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None
        return value


class BrokerConnection(asyncio.Protocol):
    """One connection from the proxy, played by a script."""

    def __init__(self, script: Script, index: int) -> None:
        self.script = script
        self.index = index  # 0 for the broker's first accepted connection
        self.server = hs.ServerHandshake()
        self.transport: asyncio.Transport | None = None
        self.header = b""  # the protocol header the proxy sent
        self.received = bytearray()  # every byte after the proxy's Connection.Open
        self.frames: list[Frame] = []  # ``received`` parsed into frames
        self.frame_error: str | None = None  # set if ``received`` stopped parsing
        self.handshake_error: ProtocolError | None = None
        self.stages: list[Stage] = []  # stages reached, in order
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()  # OpenOk sent
        self.close_received: asyncio.Future[ConnectionClose] = loop.create_future()
        self.close_ok_received: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()  # the socket closed
        self._phase = _Phase.HANDSHAKE
        self._held_at: Stage | None = None
        self._held_input = bytearray()
        self._splitter = FrameReader(1 << 20)  # handshake frames, one at a time
        self._post_open = FrameReader(1 << 20)
        self._watchers = _Watchers()

    # -- what tests use

    @property
    def start_ok(self) -> ConnectionStartOk | None:
        """The StartOk the proxy replayed (None before it arrived)."""
        return self.server.start_ok

    @property
    def methods(self) -> list[Method]:
        """Every channel-0 method received after Open, decoded."""
        return [decode_method(f.payload) for f in self.frames if f.type == 1 and f.channel == 0]

    async def until(
        self, predicate: Callable[[], T], what: str = "a condition", timeout: float = DEADLINE
    ) -> T:
        """Wait (no polling) until ``predicate`` holds; re-checked on every event."""
        return await self._watchers.until(predicate, f"{what} on broker connection", timeout)

    async def received_at_least(self, size: int, timeout: float = DEADLINE) -> bytes:
        """Wait until ``size`` bytes arrived after Open; return all of them."""
        await self.until(
            lambda: len(self.received) >= size or self.lost.done(),
            f"{size} bytes (have {len(self.received)}: {bytes(self.received)[:80]!r})",
            timeout,
        )
        if len(self.received) < size:
            raise AssertionError(
                f"socket closed after {len(self.received)} of {size} bytes: "
                f"{bytes(self.received)!r}"
            )
        return bytes(self.received)

    async def wait_lost(self, timeout: float = DEADLINE) -> None:
        await self.until(self.lost.done, "the socket to close", timeout)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def send_method(self, method: Method, channel: int = 0) -> None:
        self.send(encode_method(method, channel))

    def send_close(self, code: int = 320, text: str = "CONNECTION_FORCED - bye") -> None:
        self.send_method(ConnectionClose(code, text, 0, 0))

    def release(self) -> None:
        """Go on from where a :class:`Hold` stopped, as if it had not."""
        stage = self._held_at
        assert stage is not None and self.transport is not None, "not held"
        self._held_at = None
        self._phase = _Phase.HANDSHAKE
        held, self._held_input = bytes(self._held_input), bytearray()
        if stage is Stage.OPEN:
            self._send_open_ok()
            if held:
                self._record(held)
        else:
            if stage is not Stage.ACCEPT:
                self.transport.write(self.server.data_to_send())  # the Tune held back
            self._handshake(held)
        self._watchers.notify()

    @property
    def held(self) -> bool:
        """A Hold stopped the handshake and :meth:`release` was not called yet."""
        return self._held_at is not None

    def drop(self) -> None:
        """Close the socket with a FIN, after what was written."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is no asyncio.Transport subclass: no isinstance).
        self.transport = cast(asyncio.Transport, transport)
        self._reach(Stage.ACCEPT)

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase is _Phase.HANDSHAKE:
            self._handshake(data)
        elif phase is _Phase.OPEN:
            self._record(data)
        elif phase is _Phase.CLOSING:
            self._closing(data)
        elif phase is _Phase.HELD:
            self._held_input += data
        self._watchers.notify()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self._watchers.notify()

    # -- internals

    def _reach(self, stage: Stage) -> bool:
        """Record ``stage``; play the script's deviation there. True: carry on normally."""
        self.stages.append(stage)
        script = self.script
        if script.at is not stage or script.do is None:
            return True
        action = script.do
        assert self.transport is not None
        if isinstance(action, Close):
            if stage is Stage.ACCEPT:  # no AMQP connection yet: the frame alone
                self.transport.write(encode_method(action.method))
            else:
                self.server.data_to_send()  # what the handshake queued (Tune) is not sent
                self.transport.write(
                    self.server.close(action.code, action.text, action.class_id, action.method_id)
                )
            self._phase = _Phase.CLOSING
            self._closing(b"")  # the frames already read may hold the CloseOk
        elif isinstance(action, Garbage):
            self.transport.write(action.data)
            self._phase = _Phase.SILENT
        elif isinstance(action, Drop):
            self.transport.close()
            self._phase = _Phase.SILENT
        elif isinstance(action, Hold):
            self._held_at = stage
            self._phase = _Phase.HELD
            self._held_input += self._splitter.take_buffered()
        else:
            self._phase = _Phase.SILENT
        return False

    def _handshake(self, data: bytes) -> None:
        assert self.transport is not None
        if len(self.header) < len(PROTOCOL_HEADER):
            missing = len(PROTOCOL_HEADER) - len(self.header)
            self.header += data[:missing]
            data = data[missing:]
            if len(self.header) < len(PROTOCOL_HEADER):
                return
            self.server.receive_data(self.header)
            self.transport.write(self.server.data_to_send())  # Start (or our header back)
        self._splitter.feed(data)
        # One frame at a time, so that a deviation after StartOk replaces exactly its Tune.
        while self._phase is _Phase.HANDSHAKE:
            try:
                frame = self._splitter.next_frame()
                if frame is NEED_DATA:
                    return
                events = self.server.receive_data(encode_frame(*frame))
            except ProtocolError as error:
                self.handshake_error = error
                self.transport.write(self.server.close(error.reply_code, error.reply_text))
                self._phase = _Phase.CLOSING
                return
            for event in events:
                if not self._on_event(event):
                    return
            self.transport.write(self.server.data_to_send())

    def _on_event(self, event: hs.ServerEvent) -> bool:
        assert self.transport is not None
        if isinstance(event, hs.StartOkReceived):
            return self._reach(Stage.START_OK)
        if isinstance(event, hs.TuneOkReceived):
            return self._reach(Stage.TUNE_OK)
        if isinstance(event, hs.OpenReceived):
            if self._reach(Stage.OPEN):
                self._send_open_ok()
                rest = self._splitter.take_buffered() + self.server.pending_bytes()
                if rest:
                    self._record(rest)
            return False
        if isinstance(event, hs.ClientClosed):  # the proxy gave up during the handshake
            self._phase = _Phase.SILENT
            self.transport.write(self.server.data_to_send())  # CloseOk
            if not self.close_received.done():
                self.close_received.set_result(event.close)
            return False
        return True

    def _send_open_ok(self) -> None:
        assert self.transport is not None
        self.transport.write(
            self.server.data_to_send()
            + encode_method(ConnectionOpenOk())
            + self.script.after_open_ok
        )
        self._phase = _Phase.OPEN
        self.opened.set_result(None)

    def _record(self, data: bytes) -> None:
        self.received += data
        if self.frame_error is not None:
            return
        self._post_open.feed(data)
        while True:
            try:
                frame = self._post_open.next_frame()
            except ProtocolError as error:
                self.frame_error = error.reply_text
                return
            if frame is NEED_DATA:
                return
            self.frames.append(frame)
            if frame.type == 1 and frame.channel == 0:
                self._on_connection_method(decode_method(frame.payload))

    def _on_connection_method(self, method: Method) -> None:
        if isinstance(method, ConnectionClose):
            if not self.close_received.done():
                self.close_received.set_result(method)
            if self.script.answer_close:
                self.send_method(ConnectionCloseOk())
        elif isinstance(method, ConnectionCloseOk) and not self.close_ok_received.done():
            self.close_ok_received.set_result(None)

    def _closing(self, data: bytes) -> None:
        """After our Close: every frame is skipped but the proxy's Close and CloseOk."""
        if len(self.header) < len(PROTOCOL_HEADER):  # closed before the header came
            missing = len(PROTOCOL_HEADER) - len(self.header)
            self.header += data[:missing]
            data = data[missing:]
        self._splitter.feed(data)
        while True:
            try:
                frame = self._splitter.next_frame()
            except ProtocolError:
                return
            if frame is NEED_DATA:
                return
            if frame.type != 1 or frame.channel != 0:
                continue
            method = decode_method(frame.payload)
            if isinstance(method, ConnectionCloseOk) and not self.close_ok_received.done():
                self.close_ok_received.set_result(None)
            elif isinstance(method, ConnectionClose) and not self.close_received.done():
                self.close_received.set_result(method)


@dataclass(eq=False)
class ScriptedBroker:
    """The listening broker: connection ``i`` plays ``scripts[i]``, later ones ``default``."""

    scripts: list[Script] = field(default_factory=list)
    default: Script = field(default_factory=Script)
    port: int = 0
    connections: list[BrokerConnection] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _watchers: _Watchers = field(default_factory=_Watchers)

    async def start(self) -> ScriptedBroker:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        for connection in self.connections:
            connection.abort()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ScriptedBroker:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def plan(self, *scripts: Script) -> None:
        """Queue scripts for the next connections, in accept order."""
        self.scripts.extend(scripts)

    async def connection(self, index: int = 0, timeout: float = DEADLINE) -> BrokerConnection:
        """Wait until connection number ``index`` (0-based) has been accepted."""
        await self._watchers.until(
            lambda: len(self.connections) > index,
            f"connection {index} to the scripted broker on port {self.port}",
            timeout,
        )
        return self.connections[index]

    async def opened(self, index: int = 0, timeout: float = DEADLINE) -> BrokerConnection:
        """Wait until connection ``index`` has sent its OpenOk."""
        connection = await self.connection(index, timeout)
        await connection.until(connection.opened.done, "OpenOk to be sent", timeout)
        return connection

    def _accept(self) -> BrokerConnection:
        index = len(self.connections)
        script = self.scripts[index] if index < len(self.scripts) else self.default
        connection = BrokerConnection(script, index)
        self.connections.append(connection)
        self._watchers.notify()
        return connection


def frames_of(data: bytes) -> list[Frame]:
    """Split bytes into frames (all of them must be whole)."""
    reader = FrameReader(1 << 20)
    reader.feed(data)
    frames: list[Frame] = []
    while (frame := reader.next_frame()) is not NEED_DATA:
        frames.append(frame)
    assert reader.buffered == 0, f"{reader.buffered} trailing bytes"
    return frames
