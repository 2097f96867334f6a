"""A fault-injecting TCP forwarder for the tests: it sits between the proxy and RabbitMQ.

``FaultyForwarder`` listens on 127.0.0.1 (port 0, read back) and forwards each accepted
connection to the real broker. Its ``mode`` decides what new connections get, and
``cut`` acts on the ones already open:

* ``PASS``: bytes both ways, untouched;
* ``STALL``: accepted, then nothing is forwarded either way (a broker that hangs);
* ``DROP``: forwards ``after`` bytes of the broker's stream, then closes both sockets
  with a FIN (``after`` can land mid-frame);
* ``RESET``: as DROP, but the proxy's socket gets an RST (SO_LINGER 0);
* ``REFUSE``: the listening socket is closed, so connects are refused; switching back
  to another mode listens on the same port again.

With ``record=True`` it also keeps a copy of every byte it forwards, per connection
and direction (``recorded``), for tests that check what crossed.

It only ever connects to the broker address it was given (127.0.0.1 in the tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
from dataclasses import dataclass, field


class Fault(enum.Enum):
    PASS = "pass"
    STALL = "stall"
    DROP = "drop"
    RESET = "reset"
    REFUSE = "refuse"


def _rst(transport: asyncio.BaseTransport) -> None:
    """Close with an RST rather than a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@dataclass(eq=False)
class _Pair:
    front: asyncio.StreamWriter  # the proxy's connection to us
    back: asyncio.StreamWriter | None = None  # our connection to the broker
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    down: int = 0  # broker->proxy bytes forwarded so far
    limit: int | None = None  # ... after which the pair is cut (DROP/RESET)
    how: Fault = Fault.DROP
    frozen: asyncio.Event = field(default_factory=asyncio.Event)  # set: forward nothing
    reading: asyncio.Event = field(default_factory=asyncio.Event)  # clear: read nothing
    sent_up: bytearray | None = None  # with record=True: what went proxy -> broker
    sent_down: bytearray | None = None  # ... and broker -> proxy

    def __post_init__(self) -> None:
        self.reading.set()


class FaultyForwarder:
    def __init__(
        self,
        target: tuple[str, int],
        mode: Fault = Fault.PASS,
        after: int = 0,
        *,
        record: bool = False,
    ) -> None:
        self.target = target
        self.record = record
        # With record=True: (upstream, downstream) bytes of every connection, in accept order.
        self.recorded: list[tuple[bytearray, bytearray]] = []
        self.mode = mode
        self.after = after  # broker->proxy bytes forwarded before DROP/RESET strikes
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> FaultyForwarder:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def set_mode(self, mode: Fault, after: int = 0) -> None:
        """Change what new connections get (REFUSE closes the listening socket)."""
        self.mode, self.after = mode, after
        if mode is Fault.REFUSE and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        elif mode is not Fault.REFUSE and self._server is None:
            await self.start()

    def cut(self, how: Fault = Fault.RESET) -> int:
        """Break every open connection now: RESET (RST to the proxy) or DROP (FIN)."""
        pairs = list(self._pairs)
        for pair in pairs:
            self._break(pair, how)
        return len(pairs)

    def cut_after(self, extra: int, how: Fault = Fault.DROP) -> None:
        """Cut every open connection once ``extra`` more broker bytes went through."""
        for pair in self._pairs:
            pair.limit, pair.how = pair.down + extra, how

    def freeze(self) -> None:
        """Open connections stop forwarding either way (a broker that hangs mid-session)."""
        for pair in self._pairs:
            pair.frozen.set()

    def hang(self) -> None:
        """Open connections stop reading either way, as a SIGSTOPped broker: the sockets
        stay open and silent, and what the proxy writes piles up in its buffers."""
        for pair in self._pairs:
            pair.frozen.set()
            pair.reading.clear()

    @property
    def open_connections(self) -> int:
        return len(self._pairs)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.cut(Fault.DROP)
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    # -- internals -------------------------------------------------------------------------
    def _break(self, pair: _Pair, how: Fault) -> None:
        self._pairs.discard(pair)
        for task in pair.tasks:
            task.cancel()
        if how is Fault.RESET:
            _rst(pair.front.transport)
        else:
            pair.front.transport.close()
        if pair.back is not None:
            pair.back.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.accepted += 1
        pair = _Pair(writer)
        if self.record:
            pair.sent_up, pair.sent_down = bytearray(), bytearray()
            self.recorded.append((pair.sent_up, pair.sent_down))
        self._pairs.add(pair)
        mode, after = self.mode, self.after
        try:
            if mode is Fault.STALL:
                await reader.read()  # hold the connection, forward nothing, until it goes
                return
            try:
                back_reader, back = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
            except (OSError, TimeoutError):
                _rst(writer.transport)
                return
            pair.back = back
            if mode in (Fault.DROP, Fault.RESET):
                pair.limit, pair.how = after, mode
            up = asyncio.create_task(self._pump(reader, back, pair, upstream=True))
            down = asyncio.create_task(self._pump(back_reader, writer, pair, upstream=False))
            pair.tasks = [up, down]
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
            if pair in self._pairs:
                self._break(pair, pair.how if pair.limit is not None else Fault.DROP)
        except asyncio.CancelledError:
            pass
        finally:
            self._pairs.discard(pair)
            self._handlers.discard(task)
            if not writer.transport.is_closing():
                writer.transport.abort()

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: _Pair, *, upstream: bool
    ) -> None:
        try:
            while True:
                await pair.reading.wait()
                chunk = await reader.read(65536)
                if not chunk:
                    return
                if pair.frozen.is_set():
                    continue  # swallowed: a hung peer, yet its socket closing is noticed
                if not upstream and pair.limit is not None and pair.down + len(chunk) >= pair.limit:
                    writer.write(chunk[: pair.limit - pair.down])
                    pair.down = pair.limit
                    await writer.drain()
                    return
                if not upstream:
                    pair.down += len(chunk)
                copy = pair.sent_up if upstream else pair.sent_down
                if copy is not None:
                    copy += chunk
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            return
