"""The control socket file: serve one command line per connection, reply, then close.

The end of a reply is marked only by closing the connection, so a streaming command
(STAT LISTEN) keeps writing until the client goes away. The socket file is mode 0600; a
stale file left by a dead process is replaced, a live one is never stolen.

Imports the registry and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time

from amqpprox.admin.control.output import StreamOutput
from amqpprox.admin.control.registry import execute
from amqpprox.core.context import Context

log = logging.getLogger("amqpprox.control")

MAX_LINE = 65536
# Pending connections the control socket queues: bursts of scripted clients must not be reset
# (asyncio's default is 100).
BACKLOG = 1024


class ControlServer:
    """Serves the control socket file: mode 0600, stale file replaced, removed on stop."""

    def __init__(self, ctx: Context, path: str) -> None:
        self._ctx = ctx
        self.path = path
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await remove_stale_socket(self.path)
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, self.path, limit=MAX_LINE, backlog=BACKLOG
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        started = time.monotonic()
        try:
            timeout = self._ctx.settings.control_client_timeout
            line = await asyncio.wait_for(reader.readline(), timeout)
            if line:
                text = line.decode(errors="replace").rstrip("\r\n")
                log.info("Control '%s'", text)
                await execute(self._ctx, text, StreamOutput(writer, timeout))
        except TimeoutError:
            log.info("control client sent no command line in time")
        except (ConnectionError, ValueError, asyncio.LimitOverrunError) as error:
            log.info("control client went away: %s", error)
        finally:
            writer.close()
            try:
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
            finally:
                self._clients.discard(task)  # only once the socket is really closed
            log.debug("control command served in %.3f s", time.monotonic() - started)


async def remove_stale_socket(path: str) -> None:
    """Unlink a socket file left by a dead process; refuse to steal a live one."""
    try:
        _r, w = await asyncio.wait_for(asyncio.open_unix_connection(path), 1.0)
    except FileNotFoundError:
        return
    except (OSError, TimeoutError):
        os.unlink(path)
        return
    w.close()
    raise OSError(f"another process serves the control socket {path}")
