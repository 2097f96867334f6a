"""Where stream clients are sent back to: the proxy endpoints that stand for broker nodes.

A broker names nodes in its ``Open`` response (``advertised_host``/``advertised_port``)
and in ``Metadata`` responses. ``NodeBook`` learns, from each stream session's ``Open``
response, which backend advertises which endpoint, and ``proxy_endpoint`` maps a broker
endpoint to the proxy's: the node listener of that backend (``LISTEN START_STREAM port
NODE backend``) when there is one, else the listener the client came in on (locality is
lost then, and logged once per endpoint).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amqpprox.core.context import Context

log = logging.getLogger("amqpprox.stream")

__all__ = ["NodeBook"]


class NodeBook:
    """Broker endpoints by backend, as the brokers advertise them."""

    def __init__(self) -> None:
        self._advertised: dict[tuple[str, int], str] = {}
        self._warned: set[tuple[str, int]] = set()

    def learn(self, backend: str, host: str, port: int) -> None:
        self._advertised[(host, port)] = backend

    def backend_at(self, ctx: Context, host: str, port: int) -> str | None:
        """The backend a broker endpoint belongs to: learned, or by its configured address."""
        name = self._advertised.get((host, port))
        if name is not None and name in ctx.state.backends:
            return name
        for backend in ctx.state.backends.values():
            if backend.stream_port == port and host in (backend.host, backend.ip):
                return backend.name
        return None

    def proxy_endpoint(
        self, ctx: Context, host: str, port: int, fallback: tuple[str, int]
    ) -> tuple[str, int]:
        """The proxy endpoint a client must use to reach broker endpoint ``host:port``."""
        name = self.backend_at(ctx, host, port)
        if name is not None:
            for spec in ctx.listeners.specs():
                if spec.protocol == "stream" and spec.node == name:
                    return fallback[0], spec.port
        if (host, port) not in self._warned:
            self._warned.add((host, port))
            log.warning(
                "stream: broker node %s:%d (backend %s) has no node listener: clients are "
                "sent to port %d instead, locality is lost",
                host,
                port,
                name or "unknown",
                fallback[1],
            )
        return fallback
