"""Hostile AMQP input, live against the proxy with RabbitMQ behind it.

Every test runs a ``HealthyClient`` (aio-pika, confirms and acks) on its own
connection for its whole length: it must see no error. Each hostile connection must get
the right ``Connection.Close`` code (or the proxy's protocol header, or a close), be
counted by its ``CloseReason``, and leave nothing behind: sessions after cleanup, the
proxy's tasks, file descriptors and ``Session`` objects all return to the baseline.
Error paths already pinned byte for byte in test_wire.py are not repeated here.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from amqpprox.amqp.frames import PROTOCOL_HEADER, encode_frame
from amqpprox.amqp.methods import (
    ConnectionClose,
    ConnectionOpen,
    ConnectionTuneOk,
    encode_method,
)
from amqpprox.core.sessions import CloseReason as R
from amqpprox.runtime import Runtime, SimpleMode
from tests.conftest import BROKER_HOST, BROKER_PORT, make_settings
from tests.rawamqp import CHANNEL_OPEN, handshake_bytes, start_ok
from tests.reliability import (
    Baseline,
    HealthyClient,
    Outcome,
    back_to_baseline,
    baseline,
    outcome,
    raise_fd_limit,
)

pytestmark = pytest.mark.broker

HANDSHAKE_TIMEOUT = 1.0
ERROR_CODES = {501, 502, 503, 505}
START_OK = encode_method(start_ok())
TUNE_OK = encode_method(ConnectionTuneOk(2047, 131072, 0))
OPEN = encode_method(ConnectionOpen("/"))
SILENT_QUICK = 500
SILENT_SOAK = 5000


@dataclass
class Hostile:
    runtime: Runtime
    port: int
    healthy: HealthyClient
    base: Baseline


@pytest.fixture
async def hostile(tmp_socket_dir: str) -> AsyncIterator[Hostile]:
    runtime = Runtime(
        make_settings(
            tmp_socket_dir,
            client_handshake_timeout=HANDSHAKE_TIMEOUT,
            graceful_close_timeout=1.0,
        )
    )
    await runtime.start()
    try:
        port = await runtime.configure_simple(SimpleMode(0, BROKER_HOST, BROKER_PORT))
        async with HealthyClient(f"amqp://guest:guest@127.0.0.1:{port}/") as healthy:
            yield Hostile(runtime, port, healthy, baseline(runtime))
            # No error is the point here; most tests last too few round trips for a p99, so
            # the bound is loose (test_admin_hostile.py measures latency under load).
            healthy.assert_healthy(p99_limit=1.0)
    finally:
        await runtime.stop()


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)


async def _script(port: int, data: bytes, *, half_close: bool = False) -> Outcome:
    reader, writer = await _connect(port)
    try:
        writer.write(data)
        if half_close:
            writer.write_eof()
        await writer.drain()
        return await outcome(reader)
    finally:
        writer.transport.abort()


def _frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return encode_frame(frame_type, channel, payload)


def _start_ok_with_table(table: bytes, declared: int | None = None) -> bytes:
    """A StartOk whose client-properties are ``table`` (length prefix ``declared``)."""
    length = len(table) if declared is None else declared
    body = (
        b"\x00\x0a\x00\x0b"
        + length.to_bytes(4, "big")
        + table
        + b"\x05PLAIN"
        + (12).to_bytes(4, "big")
        + b"\x00guest\x00guest"
        + b"\x05en_US"
    )
    return _frame(1, 0, body)


def _nested_tables(depth: int) -> bytes:
    inner = b""
    for _ in range(depth):
        inner = b"\x01kF" + len(inner).to_bytes(4, "big") + inner
    return inner


def _nested_arrays(depth: int) -> bytes:
    inner = b""
    for _ in range(depth):
        inner = b"A" + len(inner).to_bytes(4, "big") + inner
    return b"\x01a" + inner


# Stages of the client handshake and what the client has sent to reach each.
STAGES = {
    "START_SENT": PROTOCOL_HEADER,
    "TUNE_SENT": PROTOCOL_HEADER + START_OK,
    "AWAITING_OPEN": PROTOCOL_HEADER + START_OK + TUNE_OK,
}


def _garbage(seed: int, size: int = 96) -> bytes:
    data = bytearray(random.Random(seed).randbytes(size))
    data[0] = data[0] % 200 + 9  # never a valid frame type, never 'A' of "AMQP"
    return bytes(data)


async def test_random_bytes_at_every_handshake_stage(hostile: Hostile) -> None:
    port = hostile.port
    before_header = [_script(port, _garbage(seed)) for seed in range(5)]
    staged = [
        _script(port, prefix + _garbage(seed)) for prefix in STAGES.values() for seed in range(5)
    ]
    results = await asyncio.gather(*before_header, *staged)
    assert results[:5] == [Outcome("header")] * 5
    for result in results[5:]:
        assert result.kind == "close" and result.code in ERROR_CODES, result
    counted = await back_to_baseline(hostile.runtime, hostile.base)
    assert counted == {R.PROTOCOL_ERROR: 20}


async def test_random_bytes_after_open_end_the_session(hostile: Hostile) -> None:
    """Garbage pipelined after Open reaches the relay's scanner: 501, the broker untouched."""
    results = await asyncio.gather(
        *[_script(hostile.port, handshake_bytes() + _garbage(seed)) for seed in range(5)]
    )
    for result in results:
        assert result.kind == "close" and result.code == 501, result
    counted = await back_to_baseline(hostile.runtime, hostile.base)
    assert counted == {R.PROTOCOL_ERROR: 5}


WRONG_HEADERS = [
    b"AMQP\x00\x01\x00\x00",  # AMQP 1.0
    b"AMQP\x03\x01\x00\x00",  # AMQP 1.0 SASL
    b"AMQP\x00\x00\x09\x02",  # 0-9-2 does not exist
    b"amqp\x00\x00\x09\x01",
    b"\x16\x03\x01\x02\x00\x01\x00\x01",  # a TLS ClientHello on a plain port
]


async def test_wrong_protocol_headers(hostile: Hostile) -> None:
    results = await asyncio.gather(*[_script(hostile.port, h) for h in WRONG_HEADERS])
    assert results == [Outcome("header")] * len(WRONG_HEADERS)
    counted = await back_to_baseline(hostile.runtime, hostile.base)
    assert counted == {R.PROTOCOL_ERROR: len(WRONG_HEADERS)}


async def test_truncated_protocol_headers_and_frames(hostile: Hostile) -> None:
    port = hostile.port
    half_start_ok = PROTOCOL_HEADER + START_OK[: len(START_OK) // 2]
    closed = await asyncio.gather(
        _script(port, b"AMQP", half_close=True),
        _script(port, PROTOCOL_HEADER[:7], half_close=True),
        _script(port, half_start_ok, half_close=True),
        _script(port, PROTOCOL_HEADER + START_OK + TUNE_OK[:3], half_close=True),
    )
    assert closed == [Outcome("eof")] * 4
    # The same, left open: the handshake deadline ends them.
    timed_out = await asyncio.gather(
        _script(port, b"AMQ"), _script(port, half_start_ok), _script(port, PROTOCOL_HEADER)
    )
    assert timed_out == [Outcome("eof")] * 3
    counted = await back_to_baseline(hostile.runtime, hostile.base)
    assert counted == {R.CLIENT_SNAPPED: 4, R.HANDSHAKE_TIMEOUT: 3}


OVERSIZE_AND_BAD_END = {
    "one byte over frame-max": (PROTOCOL_HEADER + b"\x01\x00\x00" + (131065).to_bytes(4, "big")),
    "2 GB frame": PROTOCOL_HEADER + START_OK + b"\x01\x00\x00\x80\x00\x00\x00",
    "4 GB frame": PROTOCOL_HEADER + START_OK + TUNE_OK + b"\x03\x00\x01\xff\xff\xff\xff",
    "bad end octet on TuneOk": PROTOCOL_HEADER + START_OK + TUNE_OK[:-1] + b"\x00",
    "unknown frame type": PROTOCOL_HEADER + b"\x09\x00\x00\x00\x00\x00\x00\xce",
    "heartbeat on channel 1": PROTOCOL_HEADER + _frame(8, 1, b""),
}


async def test_oversized_and_malformed_frames_get_501(hostile: Hostile) -> None:
    results = await asyncio.gather(
        *[_script(hostile.port, data) for data in OVERSIZE_AND_BAD_END.values()]
    )
    assert [r.code for r in results] == [501] * len(OVERSIZE_AND_BAD_END), results
    counted = await back_to_baseline(hostile.runtime, hostile.base)
    assert counted == {R.PROTOCOL_ERROR: len(OVERSIZE_AND_BAD_END)}


OUT_OF_ORDER = {
    "Open before StartOk": (PROTOCOL_HEADER + OPEN, 503),
    "TuneOk before StartOk": (PROTOCOL_HEADER + TUNE_OK, 503),
    "StartOk twice": (PROTOCOL_HEADER + START_OK + START_OK, 503),
    "Open before TuneOk": (PROTOCOL_HEADER + START_OK + OPEN, 503),
    "SecureOk": (PROTOCOL_HEADER + _frame(1, 0, b"\x00\x0a\x00\x15\x00\x00\x00\x00"), 503),
    "Channel.Open before Open": (PROTOCOL_HEADER + START_OK + TUNE_OK + CHANNEL_OPEN, 503),
    "content header before Open": (
        PROTOCOL_HEADER + START_OK + TUNE_OK + _frame(2, 1, b"\x00\x3c" + b"\x00" * 12),
        505,
    ),
    "body before Open": (PROTOCOL_HEADER + START_OK + _frame(3, 1, b"hello"), 505),
    "Basic.Publish on channel 0": (
        PROTOCOL_HEADER + START_OK + TUNE_OK + _frame(1, 0, b"\x00\x3c\x00\x28\x00\x00\x00\x00"),
        503,
    ),
    "unknown class": (PROTOCOL_HEADER + _frame(1, 0, b"\x27\x10\x00\x01"), 503),
    "StartOk args truncated": (PROTOCOL_HEADER + _frame(1, 0, START_OK[7:20]), 502),
    "StartOk bytes after args": (PROTOCOL_HEADER + _frame(1, 0, START_OK[7:-1] + b"xx"), 502),
}


async def test_methods_out_of_order_and_malformed(hostile: Hostile) -> None:
    results = await asyncio.gather(
        *[_script(hostile.port, data) for data, _code in OUT_OF_ORDER.values()]
    )
    got = {name: r.code for name, r in zip(OUT_OF_ORDER, results, strict=True)}
    assert got == {name: code for name, (_data, code) in OUT_OF_ORDER.items()}
    counted = await back_to_baseline(hostile.runtime, hostile.base)
    assert counted == {R.PROTOCOL_ERROR: len(OUT_OF_ORDER)}


async def test_field_tables_nested_10000_deep_or_declaring_2gb(hostile: Hostile) -> None:
    cases = [
        _start_ok_with_table(_nested_tables(10_000)),
        _start_ok_with_table(_nested_arrays(10_000)),
        _start_ok_with_table(b"", declared=2**31),
        _start_ok_with_table(b"\x01kS" + (2**31).to_bytes(4, "big") + b"x" * 16),
        _start_ok_with_table(b"\x01kF" + (2**31 - 1).to_bytes(4, "big")),
        _start_ok_with_table(b"\x01kx" + (2**32 - 1).to_bytes(4, "big")),
    ]
    assert all(len(c) < 131072 for c in cases)
    results = await asyncio.gather(*[_script(hostile.port, PROTOCOL_HEADER + c) for c in cases])
    assert [r.code for r in results] == [502] * len(cases), results
    assert "nested deeper" in results[0].text
    counted = await back_to_baseline(hostile.runtime, hostile.base)
    assert counted == {R.PROTOCOL_ERROR: len(cases)}


async def test_slowloris_is_cut_at_the_handshake_deadline(hostile: Hostile) -> None:
    """One byte per second of a valid handshake: the deadline counts from accept."""
    data = handshake_bytes()
    loop = asyncio.get_running_loop()

    async def dribble() -> tuple[bytes, str, int, float]:
        """What the client received, how its connection ended, how many bytes it had
        sent by then, and when."""
        reader, writer = await _connect(hostile.port)
        started = loop.time()
        received, ended, sent = b"", "still open", 0
        try:
            for i in range(len(data)):
                if reader.at_eof():  # the end came while the last read timed out
                    ended = "eof"
                    break
                writer.write(data[i : i + 1])
                sent = i + 1
                try:
                    got = await asyncio.wait_for(reader.read(65536), 1.0)  # 1 byte/s pacing
                except TimeoutError:
                    continue
                except (ConnectionError, OSError):
                    ended = "reset"
                    break
                if not got:
                    ended = "eof"
                    break
                received += got
            return received, ended, sent, loop.time() - started
        finally:
            writer.transport.abort()

    results = await asyncio.gather(*[dribble() for _ in range(20)])
    for received, ended, sent, elapsed in results:
        # At a byte a second the protocol header is not complete by the 1 s deadline: the
        # proxy has said nothing (no Start, no Close) when it cuts the connection.
        assert 1 <= sent < len(PROTOCOL_HEADER), sent
        assert (received, ended) in ((b"", "eof"), (b"", "reset")), (received, ended)
        assert elapsed < HANDSHAKE_TIMEOUT + 1.5, elapsed
    counted = await back_to_baseline(hostile.runtime, hostile.base)
    assert counted == {R.HANDSHAKE_TIMEOUT: 20}


async def _silent_connections(hostile: Hostile, count: int) -> None:
    """The silent clients run on an event loop of their own in another thread (as other
    processes would), so the healthy client measures the proxy's cost, not theirs."""
    raise_fd_limit(4 * count + 1024)
    results = await asyncio.to_thread(asyncio.run, _silent_clients(hostile.port, count))
    assert results == [Outcome("eof")] * count
    counted = await back_to_baseline(hostile.runtime, hostile.base, timeout=60)
    assert counted == {R.HANDSHAKE_TIMEOUT: count}


async def _silent_clients(port: int, count: int) -> list[Outcome]:
    sem = asyncio.Semaphore(500)

    async def one() -> Outcome:
        async with sem:
            reader, writer = await _connect(port)
        try:
            return await outcome(reader, timeout=HANDSHAKE_TIMEOUT + 30)
        finally:
            writer.transport.abort()

    return list(await asyncio.gather(*[one() for _ in range(count)]))


async def test_500_connections_that_never_send_a_byte(hostile: Hostile) -> None:
    await _silent_connections(hostile, SILENT_QUICK)


@pytest.mark.soak
@pytest.mark.timeout(300)
async def test_5000_connections_that_never_send_a_byte(hostile: Hostile) -> None:
    await _silent_connections(hostile, SILENT_SOAK)


async def test_half_closed_sockets(hostile: Hostile) -> None:
    port = hostile.port
    # Half-closed after the header, after the whole handshake (before OpenOk), and after a
    # Channel.Open pipelined behind it: the proxy closes, the broker connection goes too.
    early = await asyncio.gather(
        _script(port, PROTOCOL_HEADER, half_close=True),
        _script(port, handshake_bytes(), half_close=True),
        _script(port, handshake_bytes() + CHANNEL_OPEN, half_close=True),
    )
    assert [r.kind for r in early] == ["eof"] * 3
    # Open, then Close, then a half-close: recorded as the client's graceful close.
    reader, writer = await _connect(port)
    writer.write(handshake_bytes())
    await until_open_ok(reader)
    writer.write(encode_method(ConnectionClose(200, "bye")))
    writer.write_eof()
    await writer.drain()
    assert (await outcome(reader)).kind == "eof"
    writer.transport.abort()
    counted = await back_to_baseline(hostile.runtime, hostile.base)
    assert counted == {R.CLIENT_SNAPPED: 3, R.CLIENT_GRACEFUL: 1}


async def until_open_ok(reader: asyncio.StreamReader) -> None:
    """Read the proxy's handshake answers up to the broker's OpenOk."""
    seen = b""
    while b"\x00\x0a\x00\x29" not in seen:  # Connection.OpenOk
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        assert chunk, "closed before OpenOk"
        seen += chunk


def test_fd_limit_is_enough_for_the_soak() -> None:
    """The soak opens 5,000 client sockets plus the proxy's 5,000 in this one process."""
    raise_fd_limit(4 * SILENT_SOAK + 1024)
    import resource  # noqa: PLC0415

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == resource.RLIM_INFINITY or soft >= 2 * SILENT_SOAK + 256, soft
    assert os.path.isdir("/proc/self/fd")
