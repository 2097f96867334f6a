"""Trivial asyncio L4 (TCP) forwarder: a reference point for the proxy.

Run: ``python -m bench.tcpforward --listen-port 5673 --target 127.0.0.1:5672``

Protocol-based (no streams) with back-pressure: when one side's write
buffer is above the high-water mark, reading from the other side pauses.
Uses uvloop when importable unless ``--no-uvloop`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
from types import ModuleType
from typing import cast


def _uvloop() -> ModuleType | None:
    try:
        return importlib.import_module("uvloop")
    except ImportError:
        return None


class _Half(asyncio.Protocol):
    """One side of a forwarded connection; writes what it reads to ``peer``."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool | None:
        return False  # close our transport; connection_lost closes the peer

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()  # flushes what is still buffered

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _ClientHalf(_Half):
    """Accepted side: buffers early bytes until the upstream connection exists.

    As lean per connection as a Python relay gets, being the floor the proxy is compared
    with: one task (no ``wait_for``, whose own task would double it), the loop asked for
    once per process (on CPython 3.11 every ``get_running_loop`` is a ``getpid``), and a
    plain timer for the connect deadline.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int, connect_timeout: float
    ) -> None:
        super().__init__()
        self.loop = loop
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.pending: list[bytes] = []
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.task = self.loop.create_task(self._connect())

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            # uvloop starts reading after connection_made, so a pause there is
            # not enough: keep early bytes (protocol header) until upstream is up
            self.pending.append(data)
            if self.transport is not None:
                self.transport.pause_reading()
            return
        super().data_received(data)

    async def _connect(self) -> None:
        upstream = _Half()
        upstream.peer = self
        task = self.task
        assert task is not None
        deadline = self.loop.call_later(self.connect_timeout, task.cancel)
        try:
            await self.loop.create_connection(lambda: upstream, self.host, self.port)
        except (OSError, asyncio.CancelledError):  # refused, or the deadline passed
            if self.transport is not None:
                self.transport.close()
            return
        finally:
            deadline.cancel()
        if self.transport is None or self.transport.is_closing():
            if upstream.transport is not None:
                upstream.transport.close()
            return
        self.peer = upstream
        if upstream.transport is not None and self.pending:
            upstream.transport.write(b"".join(self.pending))
        self.pending.clear()
        self.transport.resume_reading()


async def serve(listen_port: int, host: str, port: int) -> None:
    """Forward 127.0.0.1:listen_port to host:port until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(
        lambda: _ClientHalf(loop, host, port, 10.0),
        "127.0.0.1",
        listen_port,
        reuse_address=True,
        backlog=1024,
    )
    print(f"forwarding 127.0.0.1:{listen_port} -> {host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(prog="python -m bench.tcpforward", description=__doc__)
    ap.add_argument("--listen-port", type=int, required=True)
    ap.add_argument("--target", default="127.0.0.1:5672", help="HOST:PORT to forward to")
    ap.add_argument("--no-uvloop", action="store_true", help="use the stock asyncio loop")
    args = ap.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    coro = serve(args.listen_port, host, int(port))
    uvloop = None if args.no_uvloop else _uvloop()
    if uvloop is not None:
        uvloop.run(coro)
    else:
        asyncio.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
