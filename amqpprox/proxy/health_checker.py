"""Active AMQP health checks: one task per checked backend, owned by ``HealthChecker``.

A check round resolves the backend (every address of a DNS backend), and probes each
address at once: connect (a PROXY header of this connection's own addresses first when
the backend is flagged SEND-PROXY[-V2], then TLS when it is flagged TLS), send the AMQP
0-9-1 protocol header, and succeed only when a ``Connection.Start`` frame arrives within
``timeout_ms``; then close. The round succeeds when any address does. Results go to
``core.health.HealthBook`` (``ctx.health``), which decides up and down (rise, fall).

The checker follows the configuration: it is woken by every ``ProxyState`` change and
starts, restarts (new settings, a changed backend) or stops the per-backend tasks; a
backend whose checks stop is forgotten by the book (its status is ``unknown`` again).
Nothing here runs on the relay's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from amqpprox.amqp import NEED_DATA, PROTOCOL_HEADER, FrameReader, ProtocolError, decode_method
from amqpprox.amqp.methods import ConnectionStart
from amqpprox.proxy import proxy_protocol
from amqpprox.proxy.connector import Resolver, open_connection
from amqpprox.proxy.tls import contexts_of

if TYPE_CHECKING:
    from amqpprox.core.context import Context
    from amqpprox.core.health import CheckSettings
    from amqpprox.core.model import Backend

log = logging.getLogger("amqpprox.health")


class _Probe(asyncio.Protocol):
    """``answer`` settles with None (a Connection.Start came) or the reason it did not."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._reader = FrameReader()

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            return
        if data.startswith(b"AMQP"):
            self.answer.set_result(f"protocol header {data[:8]!r} instead of Connection.Start")
            return
        self._reader.feed(data)
        try:
            frame = self._reader.next_frame()
            if frame is NEED_DATA:
                return
            method = decode_method(frame.payload) if frame.type == 1 else None
        except ProtocolError as error:
            self.answer.set_result(f"not AMQP: {error.reply_text}")
            return
        if isinstance(method, ConnectionStart) and frame.channel == 0:
            self.answer.set_result(None)
        else:
            self.answer.set_result("first frame is not Connection.Start")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_result(f"closed before Connection.Start{f': {exc}' if exc else ''}")


async def probe(ctx: Context, backend: Backend, host: str, port: int, timeout: float) -> str | None:
    """One AMQP check of one address: None when it answered, else the reason."""
    version, tls = backend.proxy_protocol, backend.tls
    transport: asyncio.Transport | None = None
    try:
        async with asyncio.timeout(timeout):
            transport, prober = await open_connection(
                _Probe,
                host,
                port,
                proxy_header=(lambda own, dst: proxy_protocol.encode(version, own, dst))
                if version
                else None,
                ssl_context=contexts_of(ctx).context("EGRESS") if tls else None,
                server_hostname=backend.host if tls else None,
                ssl_handshake_timeout=timeout if tls else None,
            )
            transport.write(PROTOCOL_HEADER)
            return await prober.answer
    except TimeoutError:
        return f"timed out after {int(timeout * 1000)} ms"
    except OSError as error:
        return f"{type(error).__name__}: {error}"
    finally:
        if transport is not None:
            transport.abort()


class HealthChecker:
    """Runs the active checks the configuration asks for, until ``stop``."""

    def __init__(self, ctx: Context, resolver: Resolver | None = None) -> None:
        self.ctx = ctx
        self.resolver = resolver if resolver is not None else Resolver(0.0)
        # Per checked backend: what it is checked with, and its task.
        self._tasks: dict[str, tuple[tuple[Backend, CheckSettings], asyncio.Task[None]]] = {}
        self._wake = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.ctx.state.observers.append(self._wake.set)
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name="health-checks"
        )

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.ctx.state.observers.remove(self._wake.set)
        tasks = [task for _, task in self._tasks.values()]
        if self._supervisor is not None:
            tasks.append(self._supervisor)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._supervisor = None

    async def _supervise(self) -> None:
        while True:
            self._wake.clear()
            try:
                self.reconcile()
            except Exception:  # a bug: say so, and follow the next change
                log.exception("health checks could not follow the configuration")
            await self._wake.wait()

    def reconcile(self) -> None:
        """Start, restart or stop per-backend tasks to match the configuration."""
        state, health = self.ctx.state, self.ctx.health
        health.prune(set(state.backends))
        wanted: dict[str, tuple[Backend, CheckSettings]] = {}
        for name, backend in state.backends.items():
            settings = state.effective_check(name)
            if settings is not None:
                wanted[name] = (backend, settings)
        for name, (key, task) in list(self._tasks.items()):
            if wanted.get(name) != key or task.done():
                task.cancel()
                del self._tasks[name]
                if name not in wanted:
                    health.forget(name)
        loop = asyncio.get_running_loop()
        for name, key in wanted.items():
            if name not in self._tasks:
                backend, settings = key
                task = loop.create_task(self._check_loop(name, backend, settings))
                self._tasks[name] = (key, task)

    async def _check_loop(self, name: str, backend: Backend, settings: CheckSettings) -> None:
        interval = settings.interval_ms / 1000
        while True:
            started = time.monotonic()
            try:
                await self.check_once(name, backend, settings)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: keep checking, say so
                log.exception("health check of %s failed unexpectedly", name)
            # The interval runs from the start of one round to the start of the next.
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def check_once(self, name: str, backend: Backend, settings: CheckSettings) -> bool:
        """One round: every address of ``backend``; the book records the result."""
        timeout = settings.timeout_ms / 1000
        try:
            addresses = await self.resolver.resolve(backend, timeout)
        except (OSError, TimeoutError) as error:
            self.ctx.health.record_check(name, False, f"dns: {error or 'timed out'}")
            return False
        results = await asyncio.gather(
            *(probe(self.ctx, backend, host, port, timeout) for host, port in addresses)
        )
        per_address = {
            host: result is None for (host, _), result in zip(addresses, results, strict=True)
        }
        ok = any(per_address.values())
        errors = [
            f"{_address(host, port)}: {result}"
            for (host, port), result in zip(addresses, results, strict=True)
            if result is not None
        ]
        self.ctx.health.record_check(name, ok, None if ok else "; ".join(errors), per_address)
        return ok


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
