"""LIMIT with real clients through the proxy to the real RabbitMQ.

Connection-rate limits (refused with the original's Close 506 after the configurable
delay; alarm-only logs and admits), the concurrent-connection caps (ours), the client ->
broker data rate measured on a publisher, and refusals in the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator

import aiohttp
import pytest

from amqpprox.amqp.frames import encode_frame
from amqpprox.amqp.methods import ConnectionClose, ConnectionCloseOk, ConnectionOpenOk
from amqpprox.core.context import Context
from amqpprox.core.limits import Refusal
from tests.conftest import RunningProxy, ctl, running_proxy
from tests.polling import until
from tests.rawamqp import CHANNEL_OPEN, CHANNEL_OPEN_OK_IDS, OPEN_CLIENTS, RawClient

pytestmark = pytest.mark.broker

FAST_VHOST = "amqpprox-limits-fast"


@pytest.fixture
async def limited(tmp_socket_dir: str) -> AsyncIterator[RunningProxy]:
    """A proxy in simple mode whose limit refusals wait 10 ms instead of 750."""
    async with running_proxy(tmp_socket_dir, limit_close_delay=0.01) as running:
        try:
            yield running
        finally:
            for client in OPEN_CLIENTS:  # no drain to wait for
                client.abort()


async def rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out.decode()
    return out.decode()


async def open_client(proxy: RunningProxy, vhost: str = "/") -> tuple[RawClient, object]:
    client = await RawClient.connect(proxy.port)
    return client, await client.open(vhost)


def closed_total(metrics: str, reason: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("amqpprox_sessions_closed_total{") and f'reason="{reason}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


class FrozenClock:
    """The admission's clock (the ``now`` the data plane passes to ``Admission.admit``),
    held still by the test: the rate windows are the test's, not the machine's speed's."""

    def __init__(self, proxy: RunningProxy) -> None:
        self.now = 1000.0
        self.seen: list[float] = []
        admission = proxy.ctx.admission
        admit = admission.admit

        def frozen(ctx: Context, session_id: int, vhost: str, now: float) -> Refusal | None:
            self.seen.append(now)
            return admit(ctx, session_id, vhost, self.now)

        admission.admit = frozen  # type: ignore[method-assign]


async def test_twenty_connections_a_second_then_the_next_is_refused_with_506(
    limited: RunningProxy,
) -> None:
    clock = FrozenClock(limited)
    assert await ctl(limited.control_socket, "LIMIT CONN_RATE VHOST / 20") == (
        "For vhost /, Allow average 20 number of connections per 1 seconds\n"
    )
    results = await asyncio.gather(*(open_client(limited) for _ in range(21)))
    assert len(clock.seen) == 21  # every Open went through the (frozen) admission
    answers = [answer for _, answer in results]
    opened = [a for a in answers if isinstance(a, ConnectionOpenOk)]
    refused = [a for a in answers if isinstance(a, ConnectionClose)]
    assert len(opened) == 20 and len(refused) == 1, answers
    assert refused[0].reply_code == 506
    assert refused[0].reply_text == "The connection for /, is limited by proxy."
    limited_sessions = [s for s in limited.ctx.sessions if s.limited]
    assert len(limited_sessions) == 1
    async with (
        aiohttp.ClientSession() as http,
        http.get(limited.admin_url + "/metrics") as response,
    ):
        assert closed_total(await response.text(), "limited") == 1
    # A second later the window is a new one: twenty more, then a refusal again.
    clock.now += 1.0
    results = await asyncio.gather(*(open_client(limited) for _ in range(21)))
    codes = [a.reply_code if isinstance(a, ConnectionClose) else 200 for _, a in results]
    assert sorted(codes) == [200] * 20 + [506], codes


async def test_alarm_only_logs_and_lets_everyone_in(
    limited: RunningProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="amqpprox")
    FrozenClock(limited)  # the four connections fall in one window, however slow the machine
    await ctl(limited.control_socket, "LIMIT CONN_RATE_ALARM DEFAULT 2")
    results = await asyncio.gather(*(open_client(limited) for _ in range(4)))
    assert all(isinstance(answer, ConnectionOpenOk) for _, answer in results)
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "AMQPPROX_CONNECTION_LIMIT" in r.getMessage()
    ]
    assert (
        warnings
        == [
            "AMQPPROX_CONNECTION_LIMIT: The connection request for / should be limited by "
            "default Allow average 2 number of connections per 1 seconds"
        ]
        * 2
    )
    assert not any(s.limited for s in limited.ctx.sessions)


async def test_concurrent_cap_refuses_the_next_and_admits_again_when_one_leaves(
    limited: RunningProxy,
) -> None:
    path = limited.control_socket
    assert await ctl(path, "LIMIT CONNECTIONS VHOST / 2") == (
        "For vhost /, allow at most 2 concurrent connections.\n"
    )
    first, answer1 = await open_client(limited)
    _, answer2 = await open_client(limited)
    assert isinstance(answer1, ConnectionOpenOk) and isinstance(answer2, ConnectionOpenOk)
    _, refused = await open_client(limited)
    assert isinstance(refused, ConnectionClose) and refused.reply_code == 530
    assert "limit of 2 concurrent connections" in refused.reply_text
    assert isinstance(await first.close(), ConnectionCloseOk)
    first.writer.close()  # as a client does after CloseOk
    admission = limited.ctx.admission
    await until(lambda: admission.live_of("/") == 1, "the closed session to leave")
    _, again = await open_client(limited)
    assert isinstance(again, ConnectionOpenOk)

    # The total cap (ours): all vhosts together; refused with 506.
    assert await ctl(path, "LIMIT DISABLE CONNECTIONS VHOST /") == (
        "Successfully disabled specific concurrent connection limit for vhost /\n"
    )
    assert await ctl(path, "LIMIT CONNECTIONS TOTAL 2") == (
        "Total limit for all vhosts, allow at most 2 concurrent connections.\n"
    )
    _, over = await open_client(limited)
    assert isinstance(over, ConnectionClose) and over.reply_code == 506
    assert "limit of 2 concurrent connections" in over.reply_text


# -- data rate --------------------------------------------------------------------------------
def _shortstr(text: str) -> bytes:
    return bytes([len(text)]) + text.encode()


def publish_frames(body: bytes, routing_key: str = "amqpprox-nowhere") -> bytes:
    """Basic.Publish to the default exchange (unroutable: the broker drops it) + header + body."""
    method = struct.pack(">HHH", 60, 40, 0) + _shortstr("") + _shortstr(routing_key) + b"\x00"
    header = struct.pack(">HHQH", 60, 0, len(body), 0)
    return encode_frame(1, 1, method) + encode_frame(2, 1, header) + encode_frame(3, 1, body)


async def publisher(proxy: RunningProxy, vhost: str) -> tuple[RawClient, asyncio.Task[None]]:
    client, answer = await open_client(proxy, vhost)
    assert isinstance(answer, ConnectionOpenOk), answer
    await client.send(CHANNEL_OPEN)
    frame = await client.read_frame()
    assert struct.unpack(">HH", frame.payload[:4]) == CHANNEL_OPEN_OK_IDS
    message = publish_frames(b"x" * 4000) * 4

    async def run() -> None:
        while True:
            await client.send(message)

    return client, asyncio.get_running_loop().create_task(run())


async def test_data_rate_holds_a_publisher_to_it_and_leaves_other_vhosts_alone(
    limited: RunningProxy,
) -> None:
    rate = 100 * 1024
    await rabbitmqctl("add_vhost", FAST_VHOST)
    try:
        await rabbitmqctl("set_permissions", "-p", FAST_VHOST, "guest", ".*", ".*", ".*")
        assert await ctl(limited.control_socket, f"LIMIT DATA_RATE VHOST / {rate}") == ""
        assert await ctl(limited.control_socket, "LIMIT PRINT /") == (
            f"For vhost /, allow max {rate} bytes per second.\n"
        )
        slow_client, slow_task = await publisher(limited, "/")
        fast_client, fast_task = await publisher(limited, FAST_VHOST)
        try:
            (slow,) = [s for s in limited.ctx.sessions.of_vhost("/") if not s.finished]
            (fast,) = [s for s in limited.ctx.sessions.of_vhost(FAST_VHOST) if not s.finished]
            loop = asyncio.get_running_loop()
            # Let the first second's allowance (the bucket starts full) run out.
            await until(lambda: slow.in_bytes > 1.2 * rate, "the first second's allowance")
            t1, slow1, fast1 = loop.time(), slow.in_bytes, fast.in_bytes
            await asyncio.sleep(2.5)  # a measuring window, not a synchronisation
            elapsed = loop.time() - t1
            slow_rate = (slow.in_bytes - slow1) / elapsed
            fast_rate = (fast.in_bytes - fast1) / elapsed
            assert abs(slow_rate - rate) <= 0.1 * rate, slow_rate
            assert fast_rate > 10 * rate, fast_rate
        finally:
            for task in (slow_task, fast_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
            slow_client.abort()
            fast_client.abort()
    finally:
        await rabbitmqctl("delete_vhost", FAST_VHOST)


async def test_out_data_rate_shapes_what_a_consumer_receives(limited: RunningProxy) -> None:
    rate = 64 * 1024
    assert await ctl(limited.control_socket, f"LIMIT OUT_DATA_RATE VHOST / {rate}") == (
        f"For vhost /, allow max {rate} bytes per second to clients.\n"
    )
    client, answer = await open_client(limited)
    assert isinstance(answer, ConnectionOpenOk)
    await client.send(CHANNEL_OPEN)
    await client.read_frame()
    queue = "amqpprox-out-rate"
    # Queue.Declare (exclusive, auto-delete), then 1 MiB of messages into it.
    declare = struct.pack(">HHH", 50, 10, 0) + _shortstr(queue) + b"\x0c" + b"\0\0\0\0"
    await client.send(encode_frame(1, 1, declare))
    await client.read_frame()
    await client.send(publish_frames(b"y" * 4000, queue) * 256)
    # Basic.Consume without acks: the broker pushes everything it has.
    consume = struct.pack(">HHH", 60, 20, 0) + _shortstr(queue) + _shortstr("c") + b"\x02"
    await client.send(encode_frame(1, 1, consume + b"\0\0\0\0"))
    (session,) = [s for s in limited.ctx.sessions.of_vhost("/") if not s.finished]

    async def drain() -> None:
        while await client.reader.read(65536):
            pass

    reading = asyncio.get_running_loop().create_task(drain())
    try:
        await until(lambda: session.out_bytes > 1.2 * rate, "the first second's allowance")
        loop = asyncio.get_running_loop()
        t1, out1 = loop.time(), session.out_bytes
        await asyncio.sleep(2.0)  # a measuring window, not a synchronisation
        measured = (session.out_bytes - out1) / (loop.time() - t1)
        assert abs(measured - rate) <= 0.1 * rate, measured
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await reading
        client.abort()
