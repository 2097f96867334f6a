"""AMQP listeners: one asyncio server per port, started and stopped at run time.

Binding a busy port is a clear ``InvalidState`` error for the caller, and the proxy
keeps serving (the original's server loop died). Stopping a listener leaves its
sessions running.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from amqpprox.core.model import ListenerSpec
from amqpprox.errors import InvalidState
from amqpprox.proxy.plane import DataPlane
from amqpprox.proxy.session import ClientSide

log = logging.getLogger("amqpprox.listener")


class ListenerManager:
    """Implements ``core.context.ListenerControl`` over asyncio servers."""

    def __init__(self) -> None:
        self._plane: DataPlane | None = None
        self._servers: dict[int, tuple[ListenerSpec, asyncio.Server]] = {}

    def bind(self, plane: DataPlane) -> None:
        self._plane = plane

    async def start(self, spec: ListenerSpec) -> int:
        plane = self._plane
        assert plane is not None, "ListenerManager.bind() first"
        if spec.port and spec.port in self._servers:
            raise InvalidState(f"Already listening on port: {spec.port}")
        if spec.tls:
            raise InvalidState("TLS listeners are not available yet", legacy_text="")
        loop = asyncio.get_running_loop()
        holder: dict[str, int] = {}

        def factory() -> ClientSide:
            return ClientSide(plane, holder["port"], spec.tls)

        try:
            server = await loop.create_server(
                factory,
                spec.host,
                spec.port,
                family=socket.AF_INET,
                reuse_address=True,
                backlog=1024,
            )
        except OSError as error:
            raise InvalidState(
                f"Failed to listen on port {spec.port}: {error.strerror or error}"
            ) from error
        port = int(server.sockets[0].getsockname()[1])
        holder["port"] = port
        self._servers[port] = (ListenerSpec(port, spec.tls, spec.host), server)
        log.info("listening on %s:%d%s", spec.host, port, " (TLS)" if spec.tls else "")
        return port

    async def stop(self, port: int | None = None) -> list[int]:
        ports = list(self._servers) if port is None else [port] if port in self._servers else []
        for each in ports:
            _spec, server = self._servers.pop(each)
            server.close()
            log.info("stopped listening on port %d", each)
        return ports

    def specs(self) -> list[ListenerSpec]:
        return [spec for spec, _server in self._servers.values()]
