"""AMQP listeners: one server per port, started and stopped at run time.

Each listener binds one address (``ListenerSpec.host``: IPv4, or IPv6 with an
``AF_INET6`` socket left at the system's dual-stack default) and the listeners are keyed
by port: a port we listen on is busy whatever address is asked for. Binding a busy port
or an address this host does not have is a clear ``InvalidState`` error for the caller,
and the proxy keeps serving (the original's server loop died). Stopping a listener
leaves its sessions running.

A plain listener is an ``asyncio`` server: accepted sockets go straight to a
``ClientSide`` (the fast path). A listener that is secure (START_SECURE) or reads PROXY
headers (``LISTEN START port PROXY``) runs its own accept loop, because each accepted
socket needs work before the AMQP session sees it:

1. with PROXY: exactly the header's bytes are read (peeked, then consumed, never
   more), within ``proxy_header_timeout``; a connection without a valid v1 or v2
   header is closed and counted;
2. with TLS: the handshake runs with the ingress context *current at accept time*
   (a TLS command swaps contexts without restarting listeners), bounded by
   ``tls_handshake_timeout``; a failed handshake is logged and counted, and the
   listener carries on.

The session's client address is the header's source address when there is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from dataclasses import asdict, dataclass, replace

from amqpprox.core.model import ListenerSpec
from amqpprox.errors import InvalidState
from amqpprox.proxy.plane import DataPlane
from amqpprox.proxy.proxy_protocol import ProxyHeader, ProxyProtocolError, parse
from amqpprox.proxy.tls import contexts_of
from amqpprox.proxy.transports import ClientSide

log = logging.getLogger("amqpprox.listener")

BACKLOG = 1024
PEEK_SIZE = 4096
# As asyncio's own servers: when out of file descriptors, wait a little before accepting.
ACCEPT_RETRY_DELAY = 0.1
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass
class ListenerCounters:
    """Connections a listener turned away before they became sessions."""

    accepted: int = 0
    proxy_header_rejected: int = 0
    tls_handshake_failures: int = 0


TLS_LOG_INTERVAL = 10.0


class _Listener:
    """One listening port: an asyncio server, or a socket with our own accept loop."""

    def __init__(
        self,
        spec: ListenerSpec,
        counters: ListenerCounters,
        server: asyncio.Server | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self.spec = spec
        self.counters = counters
        self.server = server
        self.sock = sock
        self.task: asyncio.Task[None] | None = None
        # Failed TLS handshakes are logged at most once per TLS_LOG_INTERVAL (a port scan
        # must not flood the log); the counter has them all.
        self.tls_logged_at = -TLS_LOG_INTERVAL
        self.tls_unlogged = 0

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.sock is not None:
            self.sock.close()


class ListenerManager:
    """Implements ``core.context.ListenerControl`` over asyncio servers."""

    def __init__(self) -> None:
        self._plane: DataPlane | None = None
        self._listeners: dict[int, _Listener] = {}
        self.totals = ListenerCounters()
        self._counters: dict[int, ListenerCounters] = {}
        self._listened: dict[int, ListenerSpec] = {}  # the last spec of every port served

    def bind(self, plane: DataPlane) -> None:
        self._plane = plane

    async def start(self, spec: ListenerSpec) -> int:
        plane = self._plane
        assert plane is not None, "ListenerManager.bind() first"
        if spec.port and spec.port in self._listeners:
            raise InvalidState(f"Already listening on port: {spec.port}")
        if spec.tls and not contexts_of(plane.ctx).ingress_ready():
            # Not refused: the original configures TLS after LISTEN too, and each new
            # connection uses the ingress context of the moment.
            log.warning(
                "secure listener on port %d: TLS INGRESS has no certificate and key yet",
                spec.port,
            )
        family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as error:
            raise _bind_failure(spec, error) from error
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((spec.host, spec.port))
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError as error:
            sock.close()
            raise _bind_failure(spec, error) from error
        port = int(sock.getsockname()[1])
        bound = replace(spec, port=port)  # port 0 asked: the one the system chose
        counters = self._counters.setdefault(port, ListenerCounters())
        self._listened[port] = bound
        if spec.tls or spec.proxy_protocol:
            listener = _Listener(bound, counters, sock=sock)
            listener.task = asyncio.get_running_loop().create_task(
                self._accept_loop(plane, listener), name=f"accept-{port}"
            )
        else:
            server = await asyncio.get_running_loop().create_server(
                lambda: ClientSide(plane, port, False, protocol=spec.protocol, node=spec.node),
                sock=sock,
                backlog=BACKLOG,
            )
            listener = _Listener(bound, counters, server=server)
        self._listeners[port] = listener
        log.info(
            "listening on %s port %d%s%s%s",
            spec.host,
            port,
            " (TLS)" if spec.tls else "",
            " (PROXY protocol)" if spec.proxy_protocol else "",
            f" (stream{' node ' + spec.node if spec.node else ''})"
            if spec.protocol == "stream"
            else "",
        )
        return port

    async def stop(self, port: int | None = None) -> list[int]:
        ports = list(self._listeners) if port is None else [port] if port in self._listeners else []
        for each in ports:
            await self._listeners.pop(each).close()
            log.info("stopped listening on port %d", each)
        return ports

    def specs(self) -> list[ListenerSpec]:
        return [listener.spec for listener in self._listeners.values()]

    def counters(self, port: int) -> dict[str, int]:
        """What the listener on ``port`` (running or stopped) turned away, by counter name."""
        return asdict(self._counters.get(port, ListenerCounters()))

    def counted_ports(self) -> list[int]:
        return sorted(self._counters)

    def listened_specs(self) -> list[ListenerSpec]:
        return [self._listened[port] for port in sorted(self._listened)]

    # -- secure and PROXY listeners --------------------------------------------------------
    async def _accept_loop(self, plane: DataPlane, listener: _Listener) -> None:
        sock = listener.sock
        assert sock is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _address = await loop.sock_accept(sock)
            except OSError as error:
                log.error("accept on port %d failed: %s", listener.spec.port, error)
                if error.errno in _RESOURCE_ERRNOS:
                    await asyncio.sleep(ACCEPT_RETRY_DELAY)
                continue
            listener.counters.accepted += 1
            self.totals.accepted += 1
            plane.track(loop.create_task(self._admit(plane, listener, conn)))

    async def _admit(self, plane: DataPlane, listener: _Listener, conn: socket.socket) -> None:
        """PROXY header (if the listener wants one), then TLS (if secure), then a session."""
        spec, settings = listener.spec, plane.ctx.settings
        loop = asyncio.get_running_loop()
        client: tuple[str, int] | None = None
        try:
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if spec.proxy_protocol:
                header = await asyncio.wait_for(
                    read_proxy_header(loop, conn), settings.proxy_header_timeout
                )
                client = header.source
        except (ProxyProtocolError, OSError, TimeoutError) as error:
            listener.counters.proxy_header_rejected += 1
            self.totals.proxy_header_rejected += 1
            log.warning(
                "port %d: connection from %s refused, no valid PROXY header: %s",
                spec.port,
                _peer_text(conn),
                str(error) or type(error).__name__,
            )
            conn.close()
            return
        except BaseException:
            conn.close()
            raise

        def factory() -> ClientSide:
            return ClientSide(
                plane, spec.port, spec.tls, client, protocol=spec.protocol, node=spec.node
            )

        if not spec.tls:
            await loop.connect_accepted_socket(factory, conn)
            return
        peer = _peer_text(conn) if client is None else f"{client[0]}:{client[1]}"
        try:
            # The loop owns ``conn`` from here and closes it if the handshake fails.
            await loop.connect_accepted_socket(
                factory,
                conn,
                ssl=contexts_of(plane.ctx).context("INGRESS"),
                ssl_handshake_timeout=settings.tls_handshake_timeout,
            )
        except (ssl.SSLError, OSError, TimeoutError) as error:
            listener.counters.tls_handshake_failures += 1
            self.totals.tls_handshake_failures += 1
            now = loop.time()
            if now - listener.tls_logged_at < TLS_LOG_INTERVAL:
                listener.tls_unlogged += 1
                return
            more, listener.tls_unlogged, listener.tls_logged_at = listener.tls_unlogged, 0, now
            log.info(
                "port %d: TLS handshake with %s failed: %s%s",
                spec.port,
                peer,
                str(error) or type(error).__name__,
                f" (and {more} more since the last such line)" if more else "",
            )


def _bind_failure(spec: ListenerSpec, error: OSError) -> InvalidState:
    """Why ``spec`` cannot listen: the port, the reason, then the address it was bound to."""
    reason = error.strerror or str(error)
    return InvalidState(f"Failed to listen on port {spec.port}: {reason} (address {spec.host})")


def _peer_text(conn: socket.socket) -> str:
    try:
        host, port = conn.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


async def read_proxy_header(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> ProxyHeader:
    """Read one PROXY header from ``sock`` and not a byte more.

    Peeks at what has arrived; bytes the parser calls a valid but incomplete prefix are
    all header bytes, so they are consumed before waiting for more (no busy loop on a
    partial header); once complete, exactly the rest of the header is consumed.
    Raises ``ProxyProtocolError`` (also for a close before the header's end) or OSError.
    """
    seen = b""
    while True:
        await _readable(loop, sock)
        try:
            peek = sock.recv(PEEK_SIZE, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            continue
        if not peek:
            raise ProxyProtocolError("connection closed before the PROXY header ended")
        result = parse(seen + peek)
        if isinstance(result, ProxyHeader):
            _consume(sock, result.length - len(seen))
            return result
        seen += _consume(sock, len(peek))


def _consume(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes already peeked, so already in the socket's receive buffer."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ProxyProtocolError("connection closed inside the PROXY header")
        data += chunk
    return data


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
