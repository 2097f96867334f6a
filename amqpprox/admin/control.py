"""The original's Unix-socket text protocol: one line in, the reply text out, then close.

The first token of the line is the verb (case-insensitive); the rest is handed to the
command, which splits it on white space. An unknown or empty verb answers with HELP.
The end of a reply is marked only by closing the connection, so a command that
streams (STAT LISTEN) keeps writing until the client goes away. Commands parse tokens,
call ``core.operations`` and render the original's text; they keep no state of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from amqpprox.core import operations as ops
from amqpprox.core.context import Context
from amqpprox.core.sessions import SessionBase
from amqpprox.errors import AmqpproxError

log = logging.getLogger("amqpprox.control")

MAX_LINE = 65536


class ControlOutput:
    """Where a command writes its reply; ``closed`` turns true when the reader has gone."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    @property
    def closed(self) -> bool:
        return False

    async def write(self, text: str) -> None:
        self.parts.append(text)


class StreamOutput(ControlOutput):
    """A reply written straight to a control-socket client."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        super().__init__()
        self._writer = writer

    @property
    def closed(self) -> bool:
        return self._writer.is_closing()

    async def write(self, text: str) -> None:
        if text and not self._writer.is_closing():
            self._writer.write(text.encode())
            await self._writer.drain()


Handler = Callable[[Context, list[str], ControlOutput], Awaitable[None]]


@dataclass(frozen=True)
class Command:
    verb: str
    help: str
    handler: Handler


COMMANDS: dict[str, Command] = {}


def command(verb: str, help_text: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        COMMANDS[verb] = Command(verb, help_text, handler)
        return handler

    return register


def help_text() -> str:
    return "".join(f"{verb} {COMMANDS[verb].help}\n" for verb in sorted(COMMANDS))


async def execute(ctx: Context, line: str, out: ControlOutput) -> None:
    """Run one command line, writing its reply to ``out``."""
    verb, _, rest = line.strip("\r\n").lstrip(" ").partition(" ")
    cmd = COMMANDS.get(verb.upper())
    if cmd is None:
        await out.write(help_text())
        return
    try:
        await cmd.handler(ctx, rest.split(), out)
    except AmqpproxError as error:
        await out.write(error.legacy_text)
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception:  # a bug: logged with its traceback, the control socket keeps serving
        log.exception("control command %r failed", line)
        await out.write("Internal error; see the proxy's log.\n")


async def run_line(ctx: Context, line: str) -> str:
    """Run a non-streaming command and return its whole reply (startup, tests)."""
    out = ControlOutput()
    await execute(ctx, line, out)
    return "".join(out.parts)


class ControlServer:
    """Serves the control socket file: mode 0600, stale file replaced, removed on stop."""

    def __init__(self, ctx: Context, path: str) -> None:
        self._ctx = ctx
        self.path = path
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await _remove_stale_socket(self.path)
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, self.path, limit=MAX_LINE)
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
            line = await reader.readline()
            if line:
                text = line.decode(errors="replace").rstrip("\r\n")
                log.info("Control '%s'", text)
                await execute(self._ctx, text, StreamOutput(writer))
        except (ConnectionError, ValueError, asyncio.LimitOverrunError) as error:
            log.info("control client went away: %s", error)
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            log.debug("control command served in %.3f s", time.monotonic() - started)


async def _remove_stale_socket(path: str) -> None:
    """Unlink a socket file left by a dead process; refuse to steal a live one."""
    if not os.path.exists(path):
        return
    try:
        _r, w = await asyncio.wait_for(asyncio.open_unix_connection(path), 1.0)
    except (OSError, TimeoutError):
        os.unlink(path)
        return
    w.close()
    raise OSError(f"another process serves the control socket {path}")


def _yn(flag: bool) -> str:
    return "Y" if flag else "N"


def conn_line(session: SessionBase, now: float) -> str:
    """CONN's key=value line for one session (PR #120 layout)."""
    ih, ip = session.client
    eh, ep = session.egress_local
    rh, rp = session.egress_remote
    return (
        f"id={session.id} vhost={session.vhost} disconnected={_yn(session.finished)} "
        f"paused={_yn(session.paused)} authDenied={_yn(session.auth_denied)} "
        f"ingressRemote={ih}:{ip} ingressLocal={session.local[0]} "
        f"egressLocal={eh}:{ep} egressRemote={rh}:{rp} "
        f"inBytes={session.in_bytes} inFrames={session.in_frames} inPackets={session.in_packets} "
        f"outBytes={session.out_bytes} outFrames={session.out_frames} outPackets={session.out_packets} "
        f"{now - session.last_in_at:g}:{now - session.last_out_at:g}"
    )


# -- the commands of the core proxy --------------------------------------------------------
@command("HELP", "Print this help text.")
async def _help(ctx: Context, args: list[str], out: ControlOutput) -> None:
    await out.write(help_text())


@command("EXIT", "Exit the program gracefully.")
async def _exit(ctx: Context, args: list[str], out: ControlOutput) -> None:
    await out.write("Exiting.\n")
    ops.request_exit(ctx)


@command("CONN", "Print the connected sessions")
async def _conn(ctx: Context, args: list[str], out: ControlOutput) -> None:
    now = time.monotonic()
    await out.write("".join(conn_line(s, now) + "\n" for s in ops.list_sessions(ctx)))


@command(
    "BACKEND",
    "(ADD name datacenter host port [SEND-PROXY] [TLS] | ADD_DNS name datacenter address port "
    "[SEND-PROXY] [TLS] | DELETE name | PRINT) - Change backend servers",
)
async def _backend(ctx: Context, args: list[str], out: ControlOutput) -> None:
    sub = args[0].upper() if args else ""
    if sub == "PRINT":
        await out.write("".join(b.describe() + "\n" for b in ops.list_backends(ctx)))
        return
    await out.write(f"Subcommand '{sub}' not recognized.")


@command(
    "MAP",
    "(BACKEND vhost backend | FARM vhost name | UNMAP vhost | DEFAULT farmName | REMOVE_DEFAULT | "
    "PRINT) - Change mappings of resources to servers",
)
async def _map(ctx: Context, args: list[str], out: ControlOutput) -> None:
    sub = args[0].upper() if args else ""
    if sub == "PRINT":
        await out.write("".join(m.describe() + "\n" for m in ops.list_mappings(ctx)))
        return
    await out.write("Unrecognized subcommand.")
