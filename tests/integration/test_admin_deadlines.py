"""The admin HTTP server drops half-sent requests (slowloris) at its read deadlines.

A request head must arrive within ``admin_header_timeout`` of connecting (or of the
previous response), a body within ``admin_body_timeout`` of its head; the test sets
both short through ``Settings``. A client that sends part of either and then nothing
sees its connection closed within the deadline; well-behaved requests still work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from amqpprox.core import operations as ops
from amqpprox.runtime import Runtime
from tests.conftest import make_settings

DEADLINE = 0.5
# Generous against a loaded 2-core machine; without the deadlines (aiohttp's default
# keep-alive is an hour) nothing would close the connection at all.
CLOSED_WITHIN = 8.0


@pytest.fixture
async def runtime(tmp_socket_dir: str) -> AsyncIterator[Runtime]:
    settings = make_settings(
        tmp_socket_dir, admin_header_timeout=DEADLINE, admin_body_timeout=DEADLINE
    )
    rt = Runtime(settings)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


async def _closed_after(port: int, sent: bytes) -> tuple[float, bytes]:
    """Send ``sent`` and nothing more: how long until the server closed, and what it said."""
    # The clock starts before connecting: the server's deadline cannot start earlier.
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(sent)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), CLOSED_WITHIN)
        return time.monotonic() - started, answer
    finally:
        writer.close()


async def _request(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def _port(runtime: Runtime) -> int:
    assert runtime.admin_port is not None
    return runtime.admin_port


@pytest.mark.parametrize(
    "partial",
    [b"", b"G", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaa"],
    ids=["nothing", "one-byte", "half-head"],
)
async def test_a_half_sent_head_is_dropped(runtime: Runtime, partial: bytes) -> None:
    elapsed, answer = await _closed_after(_port(runtime), partial)
    assert answer == b""
    assert elapsed >= DEADLINE * 0.8
    healthy = await _request(
        _port(runtime), b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    assert healthy.startswith(b"HTTP/1.1 200 OK")


async def test_a_trickled_head_is_dropped_at_the_deadline(runtime: Runtime) -> None:
    """Bytes that keep coming do not extend the head's deadline."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(runtime))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        closed = asyncio.ensure_future(reader.read())
        while not closed.done():
            assert time.monotonic() - started < CLOSED_WITHIN, "never closed"
            writer.write(b"X")  # a byte at a time, never the end of the head
            await asyncio.wait([closed], timeout=DEADLINE / 5)
        assert closed.result() == b""
    finally:
        writer.close()


@pytest.mark.parametrize("path", ["/api/v1/datacenter", "/login"], ids=["rest", "dashboard"])
async def test_a_half_sent_body_is_dropped(runtime: Runtime, path: str) -> None:
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 40\r\n\r\n"
    )
    if path == "/login":
        head = head.replace("PUT", "POST").replace(
            "application/json", "application/x-www-form-urlencoded"
        )
    elapsed, answer = await _closed_after(_port(runtime), head.encode() + b'{"name": "pa')
    assert answer == b""
    assert elapsed >= DEADLINE * 0.8
    assert ops.get_datacenter(runtime.ctx) == ""
    body = b'{"name": "paris"}'
    done = await _request(
        _port(runtime),
        b"PUT /api/v1/datacenter HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
    )
    assert done.startswith(b"HTTP/1.1 200 OK"), done
    assert ops.get_datacenter(runtime.ctx) == "paris"


async def test_keep_alive_requests_within_the_deadline_are_served(runtime: Runtime) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(runtime))
    try:
        for _ in range(3):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status = await asyncio.wait_for(reader.readline(), 10)
            assert status.startswith(b"HTTP/1.1 200 OK")
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            # The body is the JSON after the head (Content-Length).
            await asyncio.wait_for(reader.readuntil(b"}"), 10)
        # Idle after the last response: closed at the head's deadline.
        assert await asyncio.wait_for(reader.read(), CLOSED_WITHIN) == b""
    finally:
        writer.close()
