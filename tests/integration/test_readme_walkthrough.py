"""The seed README's walkthrough, verbatim through the ``amqpprox_ctl`` program.

BACKEND ADD rabbit1 london-az1 localhost 5672, MAP BACKEND vhost-example rabbit1, LISTEN
START <port> (an ephemeral port rather than 5673), then a real client on vhost-example.
RabbitMQ refuses a vhost it does not have, so the test creates vhost-example with
``rabbitmqctl`` (and deletes it afterwards); a second case maps a vhost the broker does
not have and checks that the client gets the broker's own 530, proving the route.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pika
import pika.exceptions
import pytest

from amqpprox.runtime import Runtime
from tests.conftest import RunningProxy, free_closed_port, make_settings

pytestmark = pytest.mark.broker

VHOST = "vhost-example"


def ctl_command() -> list[str]:
    script = Path(sys.executable).with_name("amqpprox_ctl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "amqpprox.ctl"]


async def amqpprox_ctl(socket_path: str, *args: str) -> str:
    """Run the real ``amqpprox_ctl`` program (the proxy keeps running on this loop)."""
    proc = await asyncio.create_subprocess_exec(
        *ctl_command(),
        socket_path,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def rabbitmqctl(*args: str) -> None:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        pytest.fail("rabbitmqctl is needed to create the walkthrough's vhost")
    proc = await asyncio.create_subprocess_exec(
        exe, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, (out + err).decode()


@pytest.fixture
async def vhost_example() -> AsyncIterator[str]:
    await rabbitmqctl("add_vhost", VHOST)
    try:
        await rabbitmqctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
        yield VHOST
    finally:
        await rabbitmqctl("delete_vhost", VHOST)


@pytest.fixture
async def unconfigured(tmp_socket_dir: str) -> AsyncIterator[RunningProxy]:
    """A proxy started with no simple mode: nothing configured, no listener."""
    runtime = Runtime(make_settings(tmp_socket_dir))
    await runtime.start()
    try:
        yield RunningProxy(runtime, 0, runtime.settings.control_socket)
    finally:
        await runtime.stop()


def _connect(port: int, vhost: str) -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        "127.0.0.1", port, vhost, pika.PlainCredentials("guest", "guest"), connection_attempts=1
    )
    return pika.BlockingConnection(params)


def _roundtrip(conn: pika.BlockingConnection) -> bytes:
    channel = conn.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", queue, b"hello vhost-example")
    for _ in range(100):
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return bytes(body)
        conn.process_data_events(0.05)
    raise AssertionError("the message did not come back")


async def test_readme_walkthrough(unconfigured: RunningProxy, vhost_example: str) -> None:
    path = unconfigured.control_socket
    assert (
        await amqpprox_ctl(path, "BACKEND", "ADD", "rabbit1", "london-az1", "localhost", "5672")
        == ""
    )
    assert await amqpprox_ctl(path, "BACKEND", "PRINT") == (
        "rabbit1 (london-az1): localhost 127.0.0.1:5672\n"
    )
    assert await amqpprox_ctl(path, "MAP", "BACKEND", "vhost-example", "rabbit1") == ""
    assert await amqpprox_ctl(path, "MAP", "PRINT") == '"vhost-example" => Backend:rabbit1\n'
    port = free_closed_port()
    assert await amqpprox_ctl(path, "LISTEN", "START", str(port)) == ""

    conn = await asyncio.to_thread(_connect, port, vhost_example)
    try:
        assert await asyncio.to_thread(_roundtrip, conn) == b"hello vhost-example"
        sessions = list(unconfigured.ctx.sessions)
        assert [(s.vhost, s.backend_name) for s in sessions] == [(VHOST, "rabbit1")]
        listed = await amqpprox_ctl(path, "CONN")
        assert listed.startswith(f"id={sessions[0].id} vhost={VHOST} disconnected=N paused=N ")
        assert "egressRemote=127.0.0.1:5672 " in listed
    finally:
        await asyncio.to_thread(conn.close)


async def test_a_vhost_the_broker_lacks_gets_the_brokers_530(unconfigured: RunningProxy) -> None:
    path = unconfigured.control_socket
    missing = f"apx-missing-{uuid.uuid4().hex[:8]}"
    assert (
        await amqpprox_ctl(path, "BACKEND", "ADD", "rabbit1", "london-az1", "localhost", "5672")
        == ""
    )
    assert await amqpprox_ctl(path, "MAP", "BACKEND", missing, "rabbit1") == ""
    port = free_closed_port()
    assert await amqpprox_ctl(path, "LISTEN", "START", str(port)) == ""
    with pytest.raises(pika.exceptions.AMQPConnectionError) as info:
        await asyncio.to_thread(_connect, port, missing)
    assert "530" in repr(info.value) or "NOT_ALLOWED" in repr(info.value)


def test_ctl_usage_and_unreachable_socket(tmp_socket_dir: str) -> None:
    usage = subprocess.run(
        [*ctl_command(), "/nowhere"], capture_output=True, text=True, check=False
    )
    assert usage.returncode == 1
    assert usage.stderr == "Usage: amqpprox_ctl <control_socket> ARGS\n"
    gone = subprocess.run(
        [*ctl_command(), os.path.join(tmp_socket_dir, "none"), "HELP"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert gone.returncode == 2 and gone.stderr.startswith("Exception: ")
