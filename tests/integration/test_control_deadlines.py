"""The control socket gives up on clients that never send a line or never read."""

from __future__ import annotations

import asyncio
import socket

from amqpprox.runtime import Runtime
from tests.conftest import make_settings
from tests.polling import until


async def test_silent_control_client_is_closed_at_its_deadline(tmp_socket_dir: str) -> None:
    runtime = Runtime(make_settings(tmp_socket_dir, control_client_timeout=0.2))
    await runtime.start()
    try:
        reader, writer = await asyncio.open_unix_connection(runtime.settings.control_socket)
        # Nothing sent: the proxy closes the connection once the deadline passes.
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await writer.wait_closed()
        # The socket still serves the next client.
        reader, writer = await asyncio.open_unix_connection(runtime.settings.control_socket)
        writer.write(b"DATACENTER PRINT\n")
        assert await asyncio.wait_for(reader.read(), 5) == b"\n"
        writer.close()
        await writer.wait_closed()
    finally:
        await runtime.stop()


async def test_stat_listener_that_never_reads_is_dropped(tmp_socket_dir: str) -> None:
    runtime = Runtime(
        make_settings(tmp_socket_dir, control_client_timeout=0.3, cleanup_interval_ms=10)
    )
    await runtime.start()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.connect(runtime.settings.control_socket)
        sock.sendall(b"STAT LISTEN json all\n")
        # Never read: once the socket buffers fill, the proxy drops this client.
        clients = runtime.control._clients
        await until(lambda: len(clients) == 1, "the STAT LISTEN stream to start")
        await until(lambda: not clients, "the stalled client to be dropped", timeout=20)
    finally:
        sock.close()
        await runtime.stop()
