"""Resolving backends to socket addresses, with a short-lived cache.

A backend added with BACKEND ADD carries the address resolved at command time; a DNS
backend (ADD_DNS) is resolved at each connection attempt, and the results are reused
for ``dns_cache_seconds`` (the original wiped its cache every second). Every resolved
address is returned, in the resolver's order, so the session can try each in turn.

``open_connection`` opens a broker connection the way a backend's flags ask: a PROXY
protocol header first (SEND-PROXY, SEND-PROXY-V2), then TLS (the backend's TLS flag).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from amqpprox.core.model import Backend


class Resolver:
    """Backend -> list of (ip, port), cached per (host, port) for a short time."""

    def __init__(self, cache_seconds: float = 1.0) -> None:
        self._cache_seconds = cache_seconds
        self._cache: dict[tuple[str, int], tuple[float, list[tuple[str, int]]]] = {}

    def known(self, backend: Backend) -> list[tuple[str, int]] | None:
        """The addresses of ``backend`` if no resolver need be asked (an IP address, or a
        fresh cache entry): the usual case, answered without a coroutine."""
        if backend.ip is not None:
            return [(backend.ip, backend.port)]
        cached = self._cache.get((backend.host, backend.port))
        if cached is not None and time.monotonic() - cached[0] < self._cache_seconds:
            return cached[1]
        return None

    async def resolve(self, backend: Backend, timeout: float) -> list[tuple[str, int]]:
        known = self.known(backend)
        if known is not None:
            return known
        now = time.monotonic()
        addresses = await resolve_host(backend.host, backend.port, timeout)
        self._cache[(backend.host, backend.port)] = (now, addresses)
        return addresses


# getaddrinfo blocks a thread: give it threads of its own, so that nothing else that uses
# the loop's default executor can starve name resolution (and the reverse).
_RESOLVER_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="amqpprox-dns")


async def resolve_host(host: str, port: int, timeout: float) -> list[tuple[str, int]]:
    """Every stream address of ``host``, deduplicated, in the resolver's order.

    Raises OSError when the name does not resolve.
    """
    try:
        return [(str(ipaddress.ip_address(host)), port)]  # a literal needs no resolver
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.run_in_executor(
            _RESOLVER_THREADS,
            lambda: socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            ),
        ),
        timeout,
    )
    seen: list[tuple[str, int]] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = (str(sockaddr[0]), int(sockaddr[1]))
        if address not in seen:
            seen.append(address)
    if not seen:
        raise OSError(f"no address for {host}")
    return seen


_Proto = TypeVar("_Proto", bound=asyncio.Protocol)


async def open_connection(
    factory: Callable[[], _Proto],
    host: str,
    port: int,
    *,
    proxy_header: Callable[[tuple[str, int], tuple[str, int]], bytes] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
) -> tuple[asyncio.Transport, _Proto]:
    """Connect to ``host:port`` (an IP address), optionally PROXY header first, then TLS.

    ``proxy_header`` gets this connection's own address and the address actually
    connected to, and returns the header, which is the first thing on the wire: before
    the TLS ClientHello, before the AMQP header.
    Raises OSError (ssl.SSLError included) or TimeoutError; the caller bounds the time.
    """
    loop = asyncio.get_running_loop()
    if ssl_context is None:
        transport, protocol = await loop.create_connection(factory, host, port)
        if proxy_header is not None:
            own = _address(transport.get_extra_info("sockname"), "0.0.0.0", 0)
            dst = _address(transport.get_extra_info("peername"), host, port)
            transport.write(proxy_header(own, dst))
        return transport, protocol
    if proxy_header is None:
        return await loop.create_connection(
            factory,
            host,
            port,
            ssl=ssl_context,
            server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
        )
    # The header must precede the TLS handshake: connect a socket, write it, then TLS.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        own = _address(sock.getsockname(), "0.0.0.0", 0)
        await loop.sock_sendall(sock, proxy_header(own, _address(sock.getpeername(), host, port)))
    except BaseException:
        sock.close()
        raise
    # From here the loop owns the socket: it closes it if the handshake fails.
    return await loop.create_connection(
        factory,
        sock=sock,
        ssl=ssl_context,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
    )


def _address(address: object, host: str, port: int) -> tuple[str, int]:
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return host, port
