"""Session control (upstream reference §7) with real clients through the proxy to RabbitMQ.

SESSION PAUSE / UNPAUSE / DISCONNECT_GRACEFUL / FORCE_DISCONNECT, VHOST PAUSE holding a
new connection at Open until VHOST UNPAUSE, VHOST BACKEND_DISCONNECT cutting only the
broker side, MAPHOSTNAME DNS in CONN, and the §7.3 migration recipe between two farms.
The proxy runs on the test's loop, so blocking pika calls go through ``asyncio.to_thread``;
every wait polls a condition with a deadline.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import socket
import termios
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import aio_pika
import aiormq.exceptions
import pika
import pika.adapters.blocking_connection
import pika.exceptions
import pytest

from amqpprox.core.sessions import CloseReason, SessionBase, SessionState
from tests.conftest import BROKER_HOST, BROKER_PORT, RunningProxy, ctl
from tests.polling import until

pytestmark = pytest.mark.broker

T = TypeVar("T")
DEADLINE = 10.0


async def until_async(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def params(port: int, vhost: str = "/", host: str = "127.0.0.1") -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        host,
        port,
        vhost,
        pika.PlainCredentials("guest", "guest"),
        connection_attempts=1,
        socket_timeout=10,
        stack_timeout=20,
        blocked_connection_timeout=20,
    )


def connect(port: int, vhost: str = "/") -> pika.BlockingConnection:
    return pika.BlockingConnection(params(port, vhost))


def session_of(
    proxy: RunningProxy, vhost: str, state: SessionState
) -> Callable[[], SessionBase | None]:
    def find() -> SessionBase | None:
        for session in proxy.ctx.sessions:
            if session.vhost == vhost and session.state is state:
                return session
        return None

    return find


def conn_line_of(reply: str, session_id: int) -> str:
    lines = [line for line in reply.splitlines() if line.startswith(f"id={session_id} ")]
    assert len(lines) == 1, reply
    return lines[0]


def unread_bytes(session: SessionBase) -> int:
    """Bytes waiting in the kernel on the proxy's side of the client socket (FIONREAD)."""
    transport = getattr(session, "client_transport", None)
    assert transport is not None
    sock = transport.get_extra_info("socket")
    buf = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
    return int(buf[0])


class Broker:
    """A direct (not proxied) connection to look at queues."""

    def __init__(self) -> None:
        self.conn = pika.BlockingConnection(params(BROKER_PORT, host=BROKER_HOST))
        self.channel = self.conn.channel()

    def count(self, queue: str) -> int:
        return int(self.channel.queue_declare(queue, passive=True).method.message_count)

    def delete(self, queue: str) -> None:
        self.channel.queue_delete(queue)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    direct = await asyncio.to_thread(Broker)
    try:
        yield direct
    finally:
        await asyncio.to_thread(direct.close)


def _quietly_drop(conn: pika.BlockingConnection) -> None:
    with contextlib.suppress(Exception):
        if conn.is_open:
            conn.close()


# -- SESSION PAUSE / UNPAUSE -------------------------------------------------------------------
async def test_session_pause_holds_client_traffic_until_unpause(
    proxy: RunningProxy, broker: Broker
) -> None:
    queue = f"apx-pause-{uuid.uuid4().hex[:8]}"
    conn = await asyncio.to_thread(connect, proxy.port)
    try:
        channel = await asyncio.to_thread(conn.channel)
        await asyncio.to_thread(channel.queue_declare, queue)
        session = await until(session_of(proxy, "/", SessionState.ACTIVE), "an active session")
        assert await ctl(proxy.control_socket, f"SESSION {session.id} PAUSE") == ""
        assert session.paused and session.state is SessionState.PAUSED
        assert "paused=Y" in conn_line_of(await ctl(proxy.control_socket, "CONN"), session.id)
        in_bytes = session.in_bytes

        await asyncio.to_thread(channel.basic_publish, "", queue, b"held while paused")
        # The publish reached the proxy's socket, which the paused session no longer reads.
        await until(lambda: unread_bytes(session) > 0, "the publish to wait at the proxy")
        assert session.in_bytes == in_bytes
        assert await asyncio.to_thread(broker.count, queue) == 0

        assert await ctl(proxy.control_socket, f"session {session.id} unpause") == ""
        assert not session.paused and session.state is SessionState.ACTIVE

        async def arrived() -> bool:
            return await asyncio.to_thread(broker.count, queue) == 1

        await until_async(arrived, "the held publish to reach the queue")
        assert session.in_bytes > in_bytes
        # The session still works both ways after the pause.
        method, _props, body = await asyncio.to_thread(channel.basic_get, queue, True)
        assert method is not None and body == b"held while paused"
    finally:
        await asyncio.to_thread(_quietly_drop, conn)
        await asyncio.to_thread(broker.delete, queue)


# -- SESSION DISCONNECT_GRACEFUL -----------------------------------------------------------------
async def test_disconnect_graceful_pika_sees_server_close_200(proxy: RunningProxy) -> None:
    conn = await asyncio.to_thread(connect, proxy.port)
    try:
        await asyncio.to_thread(conn.channel)
        session = await until(session_of(proxy, "/", SessionState.ACTIVE), "an active session")
        reply = await ctl(proxy.control_socket, f"SESSION {session.id} DISCONNECT_GRACEFUL")
        assert reply == ""
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
            await asyncio.to_thread(conn.process_data_events, 5)
        assert info.value.reply_code == 200
        assert info.value.reply_text == "OK"
        await until(lambda: session.finished, "the session to finish")
        assert session.close_reason is CloseReason.PROXY_GRACEFUL
        assert "disconnected=Y" in conn_line_of(await ctl(proxy.control_socket, "CONN"), session.id)
    finally:
        await asyncio.to_thread(_quietly_drop, conn)


async def test_disconnect_graceful_aio_pika_sees_server_close_200(proxy: RunningProxy) -> None:
    conn = await aio_pika.connect(proxy.url())
    closed: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def on_close(_conn: object, exc: BaseException | None = None) -> None:
        if not closed.done():
            closed.set_result(exc)

    conn.close_callbacks.add(on_close)
    try:
        await conn.channel()
        session = await until(session_of(proxy, "/", SessionState.ACTIVE), "an active session")
        reply = await ctl(proxy.control_socket, f"SESSION {session.id} DISCONNECT_GRACEFUL")
        assert reply == ""
        exc = await asyncio.wait_for(closed, DEADLINE)
        assert isinstance(exc, aiormq.exceptions.ConnectionClosed)
        assert exc.args[0] == 200
        await until(lambda: session.close_reason is CloseReason.PROXY_GRACEFUL, "a graceful end")
    finally:
        with contextlib.suppress(Exception):
            await conn.close()


# -- SESSION FORCE_DISCONNECT ---------------------------------------------------------------------
async def test_force_disconnect_closes_the_socket(proxy: RunningProxy) -> None:
    conn = await asyncio.to_thread(connect, proxy.port)
    try:
        await asyncio.to_thread(conn.channel)
        session = await until(session_of(proxy, "/", SessionState.ACTIVE), "an active session")
        reply = await ctl(proxy.control_socket, f"SESSION {session.id} FORCE_DISCONNECT")
        assert reply == ""
        assert session.close_reason is CloseReason.PROXY_FORCED
        # No AMQP Close: pika sees the stream end.
        with pytest.raises(pika.exceptions.StreamLostError):
            await asyncio.to_thread(conn.process_data_events, 5)
        assert await ctl(proxy.control_socket, f"SESSION {session.id} PAUSE") == ""  # still listed
        assert proxy.runtime.cleanup_once() >= 1
        assert proxy.ctx.sessions.get(session.id) is None
        reply = await ctl(proxy.control_socket, f"SESSION {session.id} PAUSE")
        assert reply == "Session not found.\n"
    finally:
        await asyncio.to_thread(_quietly_drop, conn)


async def test_session_subcommand_not_found(proxy: RunningProxy) -> None:
    conn = await asyncio.to_thread(connect, proxy.port)
    try:
        session = await until(session_of(proxy, "/", SessionState.ACTIVE), "an active session")
        assert await ctl(proxy.control_socket, f"SESSION {session.id}") == (
            "Session subcommand not found.\n"
        )
        assert await ctl(proxy.control_socket, f"SESSION {session.id} BOGUS") == (
            "Session subcommand not found.\n"
        )
        assert not session.paused and not session.finished
    finally:
        await asyncio.to_thread(_quietly_drop, conn)


# -- VHOST PAUSE / UNPAUSE holds new connections at Open -------------------------------------------
async def test_vhost_pause_holds_a_new_connection_at_open_until_unpause(
    proxy: RunningProxy,
) -> None:
    path = proxy.control_socket
    assert await ctl(path, "VHOST PAUSE /") == ""
    assert await ctl(path, "VHOST PRINT") == "/ = PAUSED\n"
    connecting = asyncio.create_task(asyncio.to_thread(connect, proxy.port))
    conn: pika.BlockingConnection | None = None
    try:
        held = await until(session_of(proxy, "/", SessionState.HELD), "a session held at Open")
        assert not connecting.done()
        line = conn_line_of(await ctl(path, "CONN"), held.id)
        assert "paused=Y" in line and "egressRemote=0.0.0.0:0" in line
        assert await ctl(path, "VHOST UNPAUSE /") == ""
        conn = await asyncio.wait_for(connecting, DEADLINE)
        assert conn.is_open
        assert held.state is SessionState.ACTIVE and not held.paused
        channel = await asyncio.to_thread(conn.channel)
        await asyncio.to_thread(channel.queue_declare, "", exclusive=True)
        assert await ctl(path, "VHOST PRINT") == "/ = UNPAUSED\n"
    finally:
        if conn is None:
            await ctl(path, "VHOST UNPAUSE /")
            with contextlib.suppress(Exception):
                conn = await asyncio.wait_for(connecting, DEADLINE)
        if conn is not None:
            await asyncio.to_thread(_quietly_drop, conn)


async def test_vhost_unpause_cuts_established_paused_sessions(proxy: RunningProxy) -> None:
    """PR #75: an established session paused by VHOST PAUSE is force-disconnected on UNPAUSE."""
    conn = await asyncio.to_thread(connect, proxy.port)
    try:
        session = await until(session_of(proxy, "/", SessionState.ACTIVE), "an active session")
        assert await ctl(proxy.control_socket, "VHOST PAUSE /") == ""
        assert session.paused
        assert await ctl(proxy.control_socket, "VHOST UNPAUSE /") == ""
        assert session.close_reason is CloseReason.PROXY_FORCED
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            await asyncio.to_thread(conn.process_data_events, 5)
    finally:
        await asyncio.to_thread(_quietly_drop, conn)


# -- VHOST BACKEND_DISCONNECT / FORCE_DISCONNECT ---------------------------------------------
async def test_vhost_backend_disconnect_closes_only_the_broker_side(proxy: RunningProxy) -> None:
    conn = await asyncio.to_thread(connect, proxy.port)
    try:
        session = await until(session_of(proxy, "/", SessionState.ACTIVE), "an active session")
        other = await asyncio.to_thread(connect, proxy.port)  # a second session of the vhost
        try:
            assert await ctl(proxy.control_socket, "VHOST BACKEND_DISCONNECT /") == ""
            sessions = [s for s in proxy.ctx.sessions if s.vhost == "/"]
            assert len(sessions) == 2
            for each in sessions:
                await until(
                    lambda each=each: getattr(each, "broker_transport", 1) is None,
                    "the broker side to close",
                )
                assert not each.finished
                client = getattr(each, "client_transport", None)
                assert client is not None and not client.is_closing()
            assert conn.is_open and other.is_open
        finally:
            await ctl(proxy.control_socket, "VHOST FORCE_DISCONNECT /")
            await asyncio.to_thread(_quietly_drop, other)
        assert session.close_reason is CloseReason.PROXY_FORCED
    finally:
        await asyncio.to_thread(_quietly_drop, conn)


async def test_vhost_force_disconnect_only_touches_that_vhost(proxy: RunningProxy) -> None:
    conn = await asyncio.to_thread(connect, proxy.port)
    try:
        session = await until(session_of(proxy, "/", SessionState.ACTIVE), "an active session")
        assert await ctl(proxy.control_socket, "VHOST FORCE_DISCONNECT other") == ""
        assert not session.finished
        assert await ctl(proxy.control_socket, "VHOST FORCE_DISCONNECT /") == ""
        assert session.close_reason is CloseReason.PROXY_FORCED
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            await asyncio.to_thread(conn.process_data_events, 5)
    finally:
        await asyncio.to_thread(_quietly_drop, conn)


# -- MAPHOSTNAME DNS ------------------------------------------------------------------------------
MAPPED_NAME = "apx-mapped.test"  # what the resolver answers for 127.0.0.1 below


@pytest.mark.parametrize("resolves", [True, False], ids=["resolves", "fails"])
async def test_maphostname_dns_names_endpoints_in_conn(
    proxy: RunningProxy,
    resolves: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The reverse lookup is the test's: a name for 127.0.0.1, or a failure, whatever this
    machine's resolver would say. A failed lookup shows the IP text itself, and is logged."""
    loop = asyncio.get_running_loop()
    asked: list[tuple[tuple[str, int], int]] = []

    async def getnameinfo(sockaddr: tuple[str, int], flags: int = 0) -> tuple[str, str]:
        asked.append((sockaddr, flags))
        if resolves and sockaddr[0] == "127.0.0.1":
            return MAPPED_NAME, str(sockaddr[1])
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(loop, "getnameinfo", getnameinfo)
    conn = await asyncio.to_thread(connect, proxy.port)
    try:
        session = await until(session_of(proxy, "/", SessionState.ACTIVE), "an active session")
        before = conn_line_of(await ctl(proxy.control_socket, "CONN"), session.id)
        assert f"ingressRemote=127.0.0.1:{session.client[1]} " in before
        reply = await ctl(proxy.control_socket, "MAPHOSTNAME DNS")
        assert reply == "Hostname mapper set for all current sessions.\n"
        after = conn_line_of(await ctl(proxy.control_socket, "CONN"), session.id)
        assert (("127.0.0.1", 0), socket.NI_NAMEREQD) in asked  # CONN looked it up
        name = MAPPED_NAME if resolves else "127.0.0.1"
        assert f"ingressRemote={name}:{session.client[1]} " in after
        assert f"ingressLocal={name} " in after
        endpoints = ("ingressRemote", "ingressLocal", "egressLocal", "egressRemote")
        shown = {k: v for k, _, v in (f.partition("=") for f in after.split()) if k in endpoints}
        assert len(shown) == 4, after
        if resolves:  # every endpoint is 127.0.0.1 here
            assert all(v.startswith(MAPPED_NAME) for v in shown.values()), shown
        else:
            assert all(v.startswith("127.0.0.1") for v in shown.values()), shown
            assert "Failed to map 127.0.0.1 to a hostname" in caplog.text
    finally:
        await asyncio.to_thread(_quietly_drop, conn)


# -- the §7.3 migration recipe -------------------------------------------------------------------
class Forwarder:
    """A plain TCP forwarder: a second address for the same RabbitMQ."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        tasks = [
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ]
        self._pipes.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pipes.difference_update(tasks)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)


@pytest.fixture
async def forwarder() -> AsyncIterator[Forwarder]:
    fwd = Forwarder(BROKER_HOST, BROKER_PORT)
    await fwd.start()
    try:
        yield fwd
    finally:
        await fwd.stop()


async def test_migration_recipe_moves_clients_to_the_new_farm(
    proxy: RunningProxy, forwarder: Forwarder
) -> None:
    path = proxy.control_socket
    for line in (
        f"BACKEND ADD old dc-a {BROKER_HOST} {BROKER_PORT}",
        f"BACKEND ADD new dc-b 127.0.0.1 {forwarder.port}",
        "FARM ADD farm-old round-robin old",
        "FARM ADD farm-new round-robin new",
        "MAP FARM / farm-old",
    ):
        assert await ctl(path, line) == "", line

    first = await asyncio.to_thread(connect, proxy.port)
    second: pika.BlockingConnection | None = None
    reconnecting: asyncio.Task[pika.BlockingConnection] | None = None
    try:
        old = await until(session_of(proxy, "/", SessionState.ACTIVE), "a session on farm-old")
        assert old.backend_name == "old" and old.farm_name == "farm-old"
        line = conn_line_of(await ctl(path, "CONN"), old.id)
        assert f"egressRemote={old.egress_remote[0]}:{BROKER_PORT} " in line

        # The recipe: pause, disconnect, remap, unpause.
        assert await ctl(path, "VHOST PAUSE /") == ""
        assert await ctl(path, "VHOST FORCE_DISCONNECT /") == ""
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            await asyncio.to_thread(first.process_data_events, 5)

        reconnecting = asyncio.create_task(asyncio.to_thread(connect, proxy.port))
        held = await until(session_of(proxy, "/", SessionState.HELD), "the reconnect held at Open")
        assert not reconnecting.done()

        assert await ctl(path, "MAP FARM / farm-new") == ""
        assert await ctl(path, "VHOST UNPAUSE /") == ""
        second = await asyncio.wait_for(reconnecting, DEADLINE)
        assert held.backend_name == "new" and held.farm_name == "farm-new"
        line = conn_line_of(await ctl(path, "CONN"), held.id)
        assert f"egressRemote=127.0.0.1:{forwarder.port} " in line

        channel = await asyncio.to_thread(second.channel)
        queue = (await asyncio.to_thread(channel.queue_declare, "", exclusive=True)).method.queue
        await asyncio.to_thread(channel.basic_publish, "", queue, b"on the new farm")
        method, _props, body = await asyncio.to_thread(channel.basic_get, queue, True)
        assert method is not None and body == b"on the new farm"
    finally:
        if reconnecting is not None and not reconnecting.done():
            await ctl(path, "VHOST UNPAUSE /")
            with contextlib.suppress(Exception):
                second = await asyncio.wait_for(reconnecting, DEADLINE)
        for conn in (first, second):
            if conn is not None:
                await asyncio.to_thread(_quietly_drop, conn)
