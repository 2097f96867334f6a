"""MAPHOSTNAME DNS: show endpoints by their reverse-DNS name instead of the IP text.

Off until enabled (there is no way back, as upstream). Each IP is looked up once and
cached; a failed lookup caches the IP text itself (and is logged). The lookups are
asynchronous with a deadline, so the event loop never blocks on DNS (the original
resolved synchronously on its control thread).
"""

from __future__ import annotations

import asyncio
import logging
import socket

log = logging.getLogger("amqpprox.hostnames")

LOOKUP_TIMEOUT = 2.0
CACHE_WARN_SIZE = 50_000


class HostnameMapper:
    """Reverse-DNS names of endpoint IPs, cached forever once looked up."""

    def __init__(self) -> None:
        self.enabled = False
        self._names: dict[str, str] = {}

    def enable(self) -> None:
        self.enabled = True

    def cached(self, ip: str) -> str:
        """The name for ``ip`` if known (or mapping is off: the IP itself)."""
        if not self.enabled:
            return ip
        return self._names.get(ip, ip)

    async def resolve(self, ip: str) -> str:
        if not self.enabled or ip in self._names or ip in ("", "0.0.0.0"):
            return self.cached(ip)
        loop = asyncio.get_running_loop()
        try:
            host, _port = await asyncio.wait_for(
                loop.getnameinfo((ip, 0), socket.NI_NAMEREQD), LOOKUP_TIMEOUT
            )
        except (OSError, TimeoutError) as error:
            log.error("Failed to map %s to a hostname: %s", ip, error)
            host = ip
        self._names[ip] = host
        if len(self._names) == CACHE_WARN_SIZE:
            log.warning("Hostname cache holds %d entries", CACHE_WARN_SIZE)
        return host

    async def resolve_all(self, ips: list[str]) -> None:
        todo = sorted({ip for ip in ips if ip not in self._names})
        if self.enabled and todo:
            await asyncio.gather(*(self.resolve(ip) for ip in todo))
