"""A trace under load: a live reader that never reads loses events (``dropped``), the
traced client's throughput stays within 10 % of an untraced one's, and an SSE reader
that does read sees the frames live."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import RunningProxy, pika_round_trip
from tests.polling import until
from tests.trace.helpers import rest

pytestmark = pytest.mark.broker

PUBLISHER = Path(__file__).with_name("publisher.py")
MESSAGES = 20_000
ROUNDS = 5


async def _publish(port: int) -> float:
    """Seconds a pika client in its own process takes to publish MESSAGES through ``port``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PUBLISHER),
        str(port),
        str(MESSAGES),
        "512",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    return float(out)


def _stalled_reader(port: int, trace_id: int) -> socket.socket:
    """An SSE client that asks for the events and never reads them."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    request = f"GET /api/v1/traces/{trace_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    sock.sendall(request.encode())
    return sock


async def _traced_publish(proxy: RunningProxy) -> float:
    """A publish run while a vhost trace follows it, its one reader never reading."""
    body = {"vhost": "/", "max_frames": 1_000_000}
    started = await rest(proxy, "POST", "/traces", body, status=201)
    trace = proxy.ctx.traces.get(started["id"])
    reader = _stalled_reader(proxy.runtime.admin_port, trace.id)
    try:
        await until(lambda: trace.readers, "the stalled reader attached")
        seconds = await _publish(proxy.port)
        state = await rest(proxy, "DELETE", f"/traces/{trace.id}")
    finally:
        reader.close()
    # Every frame was recorded; the reader fell behind and lost most of them.
    assert state["frames"] >= 3 * MESSAGES
    assert state["dropped"] > MESSAGES
    return seconds


@pytest.mark.timeout(180)
async def test_a_reader_that_never_reads_drops_events_not_throughput(proxy: RunningProxy) -> None:
    untraced: list[float] = []
    traced: list[float] = []
    for n in range(ROUNDS):  # alternated, each going first in turn, so load hits both alike
        for kind in ("untraced", "traced") if n % 2 == 0 else ("traced", "untraced"):
            if kind == "traced":
                traced.append(await _traced_publish(proxy))
            else:
                untraced.append(await _publish(proxy.port))
    # The machine is shared: other load only ever adds time, so the best round of each
    # kind is compared.
    print(f"untraced {sorted(untraced)} traced {sorted(traced)}")
    assert min(traced) <= 1.10 * min(untraced), (untraced, traced)
    assert not proxy.runtime.plane.taps
    assert await asyncio.to_thread(pika_round_trip, proxy.port, b"after") == b"after"


async def test_sse_streams_frames_live_and_ends_with_the_trace(proxy: RunningProxy) -> None:
    started = await rest(proxy, "POST", "/traces", {"vhost": "/"}, status=201)
    url = f"{proxy.admin_url}/api/v1/traces/{started['id']}/events"
    seen: list[dict[str, object]] = []
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        first = await response.content.readline()
        assert first == b"event: trace\n"
        publish = asyncio.create_task(asyncio.to_thread(pika_round_trip, proxy.port, b"live"))
        event = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "":
                seen.append(json.loads(line[6:]))
                if any(e.get("method") == "Basic.Publish" for e in seen):
                    await rest(proxy, "DELETE", f"/traces/{started['id']}")
            elif line.startswith("data: ") and event == "end":
                assert json.loads(line[6:])["stop_reason"] == "requested"
                break
            elif not line:
                event = ""
        assert await publish == b"live"
    publish_event = next(e for e in seen if e.get("method") == "Basic.Publish")
    assert publish_event["direction"] == "client_to_broker"
