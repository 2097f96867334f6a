"""Composition root: builds the Context and starts/stops everything in order.

Start: the state file (``core.persist``; else the definitions document), data plane,
active health checks (``proxy.health_checker``), control socket, admin HTTP app (with
the read deadlines of ``admin.deadlines``: request head, request body), cleanup job,
then (simple mode) the configuration the original applies and its listener. SIGHUP
reloads ``--definitions`` (``core.reload``), as does a change of the file with
``--watchDefinitions`` (``filewatch``).
Stop (EXIT, SIGTERM, SIGINT):
listeners close, every live session gets ``Connection.Close 320`` and up to
``drain_timeout`` to finish, the rest are cut, then the control socket and finally the
admin app stop, so operators can watch the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from dataclasses import dataclass

from aiohttp import web

from amqpprox.admin import deadlines
from amqpprox.admin.app import make_admin_app
from amqpprox.admin.control import ControlServer
from amqpprox.core import operations as ops
from amqpprox.core.context import Context, Settings
from amqpprox.core.persist import StateFile
from amqpprox.core.reload import Reloader
from amqpprox.errors import AmqpproxError
from amqpprox.filewatch import DirectoryWatcher
from amqpprox.proxy.connector import Resolver
from amqpprox.proxy.health_checker import HealthChecker
from amqpprox.proxy.listener import ListenerManager
from amqpprox.proxy.plane import DataPlane
from amqpprox.proxy.tls import TlsContexts

log = logging.getLogger("amqpprox.runtime")

GC_GEN0_THRESHOLD = 20_000
SHUTDOWN_TEXT = "CONNECTION_FORCED - amqpprox is shutting down"


@dataclass(frozen=True, slots=True)
class SimpleMode:
    """--listenPort/--destinationDNS/--destinationPort: every vhost to one DNS backend."""

    listen_port: int
    destination_dns: str
    destination_port: int
    listen_host: str = "0.0.0.0"  # --listenHost: the listener's bind address


class Runtime:
    """One running proxy: the Context plus everything serving it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.listeners = ListenerManager()
        self.ctx = Context(settings, self.listeners, tls=TlsContexts())
        self.plane = DataPlane(self.ctx)
        self.listeners.bind(self.plane)
        self.health_checker = HealthChecker(self.ctx, Resolver(settings.dns_cache_seconds))
        self.control = ControlServer(self.ctx, settings.control_socket)
        self._admin_runner: web.AppRunner | None = None
        self.admin_port: int | None = None
        self._cleanup_task: asyncio.Task[None] | None = None
        self.reloader = Reloader(self.ctx)
        self._watcher: DirectoryWatcher | None = None
        self._sighup = False

    async def start(self, simple: SimpleMode | None = None) -> None:
        state_file = StateFile(self.settings.state_file) if self.settings.state_file else None
        # Before anything serves: an invalid document stops the start, naming the problem.
        if state_file is not None and state_file.exists():
            await state_file.load(self.ctx)  # it wins: --definitions only seeds a missing one
            if self.settings.definitions_file:
                log.info("State file %s exists: --definitions not applied", state_file.path)
        elif self.settings.definitions_file:
            await self.reloader.load_at_start()
        if state_file is not None:
            state_file.attach(self.ctx)  # saved now, then after every change
        self.health_checker.start()  # active checks, where configured (off by default)
        if self.settings.definitions_file and self.settings.watch_definitions:
            self._watcher = DirectoryWatcher(self.settings.definitions_file, self.reloader.changed)
            self._watcher.start()
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reloader.on_sighup)
            self._sighup = True
        except (ValueError, RuntimeError, NotImplementedError):
            log.debug("no SIGHUP handler (not the main thread)", exc_info=True)
        await self.control.start()
        admin_app = make_admin_app(self.ctx)
        deadlines.install(admin_app, self.settings.admin_body_timeout)
        runner = web.AppRunner(
            admin_app,
            access_log=None,
            handle_signals=False,
            **deadlines.runner_options(self.settings.admin_header_timeout),
        )
        await runner.setup()
        site = web.TCPSite(runner, self.settings.admin_host, self.settings.admin_port)
        await site.start()
        self._admin_runner = runner
        self.admin_port = int(runner.addresses[0][1])
        self._cleanup_task = asyncio.create_task(self._cleanup_loop(), name="cleanup")
        if simple is not None:
            await self.configure_simple(simple)
        self.ctx.ready.set()

    async def configure_simple(self, simple: SimpleMode) -> int:
        """What the original runs in simple mode, in the same order.

        Applied over what a state file restored (the same names, the same port), so a
        restart with ``--stateFile`` ends with the command line's simple configuration.
        """
        await ops.add_backend(
            self.ctx,
            "default-backend",
            "none",
            simple.destination_dns,
            simple.destination_port,
            dns=True,
            replace=True,
        )
        ops.set_farm(self.ctx, "default", ["default-backend"])
        ops.set_default_farm(self.ctx, "default")
        port = simple.listen_port
        if port and any(spec.port == port for spec in self.ctx.listeners.specs()):
            await ops.put_listener(self.ctx, port, host=simple.listen_host)
            return port
        return await ops.start_listener(self.ctx, port, host=simple.listen_host)

    async def _cleanup_loop(self) -> None:
        interval = self.settings.cleanup_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            self.cleanup_once()

    def cleanup_once(self) -> int:
        """One cleanup interval (tests call it directly): as the original, collect the
        statistics, publish them to STAT listeners and statsd, remove finished sessions,
        then start the next interval."""
        removed = self.ctx.stats.emit(self.ctx)
        if removed:
            log.info("Cleaned up %d sessions.", len(removed))
        return len(removed)

    async def stop(self) -> None:
        """Drain sessions, then stop the control socket and the admin app."""
        self.ctx.shutdown.set()
        if self._sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        if self._watcher is not None:
            self._watcher.stop()
        await self.reloader.stop()
        await self.listeners.stop()
        await self.ctx.moves.stop()  # evictions and migrations end; the drain closes all
        live = self.ctx.sessions.live()
        for session in live:
            session.disconnect_graceful(SHUTDOWN_TEXT, 320)
        await self.plane.wait_finished(live, self.settings.drain_timeout)
        for session in self.ctx.sessions:
            # Unfinished ones are cut; finished ones still waiting for a CloseOk lose their sockets.
            session.force_disconnect()
        await self.plane.cancel_tasks()
        await self.health_checker.stop()
        await self.ctx.traces.shutdown()  # trace files flushed, live trace streams ended
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup_task
        await self.control.stop()
        self.ctx.stats.stop_senders()  # statsd sockets
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()


async def serve(settings: Settings, simple: SimpleMode | None) -> int:
    """Run until EXIT or a signal; returns the process exit code."""
    runtime = Runtime(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, runtime.ctx.shutdown.set)
    try:
        await runtime.start(simple)
    except Exception as error:
        log.debug("startup failed", exc_info=True)
        text = error.message if isinstance(error, AmqpproxError) else repr(error)
        print(f"Failed to start: {text}", flush=True)
        await runtime.stop()
        return 1
    # Startup objects live for the whole run: keep them out of every GC pass, and collect
    # the young generation less often (sessions allocate a burst of objects each).
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
    await runtime.ctx.shutdown.wait()
    print(f"Stopping amqpprox, instance: '{settings.control_socket}'", flush=True)
    await runtime.stop()
    return 0


def run(settings: Settings, simple: SimpleMode | None) -> int:
    """Run the proxy on one event loop, uvloop when it is installed."""
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.run(serve(settings, simple))
    return uvloop.run(serve(settings, simple))
