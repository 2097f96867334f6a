"""The control socket file: serve one command line per connection, reply, then close.

The end of a reply is marked only by closing the connection, so a streaming command
(STAT LISTEN) keeps writing until the client goes away. The socket file is mode 0600.

What may already be at the path: nothing; or a socket of this user left by a dead
process, which is replaced. Anything else refuses the start (``ControlSocketRefused``,
naming the path): a live socket (another instance serves it), a file that is not a
socket (never deleted), a socket owned by another user. On stop only the socket this
server created is removed, and only while it is still that file.

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
from amqpprox.errors import AmqpproxError

log = logging.getLogger("amqpprox.control")

MAX_LINE = 65536
# Pending connections the control socket queues: bursts of scripted clients must not be reset
# (asyncio's default is 100).
BACKLOG = 1024


class ControlSocketRefused(AmqpproxError):
    """The control socket's path is taken by something this proxy must not replace."""

    code = "control_socket_refused"


class ControlServer:
    """Serves the control socket file: mode 0600, stale file replaced, removed on stop."""

    def __init__(self, ctx: Context, path: str) -> None:
        self._ctx = ctx
        self.path = path
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._created: tuple[int, int] | None = None  # (st_dev, st_ino) of our socket file

    async def start(self) -> None:
        await remove_stale_socket(self.path)
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, self.path, limit=MAX_LINE, backlog=BACKLOG
            )
        finally:
            os.umask(old_umask)
        made = os.lstat(self.path)
        self._created = (made.st_dev, made.st_ino)
        os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        created, self._created = self._created, None
        if created is None:
            return  # never bound: whatever is at the path is someone else's
        with contextlib.suppress(FileNotFoundError):
            now = os.lstat(self.path)
            if (now.st_dev, now.st_ino) == created:
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


def check_socket_path(path: str) -> bool:
    """Whether a socket of this user is at ``path`` (False: nothing is); refuse anything else."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(found.st_mode):
        raise ControlSocketRefused(
            f"control socket path {path} exists and is not a socket; not replacing it"
        )
    if found.st_uid != os.geteuid():
        raise ControlSocketRefused(
            f"control socket {path} is owned by uid {found.st_uid}, not by this user "
            f"(uid {os.geteuid()}); not replacing it"
        )
    return True


async def remove_stale_socket(path: str) -> None:
    """Unlink a socket of ours left by a dead process; refuse a live one or a foreign file."""
    if not check_socket_path(path):
        return
    try:
        _r, w = await asyncio.wait_for(asyncio.open_unix_connection(path), 1.0)
    except FileNotFoundError:
        return
    except TimeoutError:
        # A dead socket refuses at once; one that keeps us waiting has a busy owner.
        raise ControlSocketRefused(
            f"another process serves the control socket {path} (it did not answer)"
        ) from None
    except OSError:
        os.unlink(path)  # nobody accepts on it: left by a dead process
        return
    w.close()
    raise ControlSocketRefused(f"another process serves the control socket {path}")
