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

from amqpprox.admin import control_limits
from amqpprox.admin import stats as statfmt
from amqpprox.core import operations as ops
from amqpprox.core.context import Context
from amqpprox.core.digits import ascii_digits
from amqpprox.core.sessions import SessionBase
from amqpprox.core.stats import stats_of
from amqpprox.core.tls import parse_direction
from amqpprox.errors import AmqpproxError, InvalidArgument

log = logging.getLogger("amqpprox.control")

MAX_LINE = 65536
# Pending connections the control socket queues: bursts of scripted clients must not be reset
# (asyncio's default is 100).
BACKLOG = 1024


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

    def __init__(self, writer: asyncio.StreamWriter, write_timeout: float) -> None:
        super().__init__()
        self._writer = writer
        self._write_timeout = write_timeout

    @property
    def closed(self) -> bool:
        return self._writer.is_closing()

    async def write(self, text: str) -> None:
        if text and not self._writer.is_closing():
            self._writer.write(text.encode())
            try:
                # A reader that stops reading (say, a stalled STAT LISTEN) is dropped.
                await asyncio.wait_for(self._writer.drain(), self._write_timeout)
            except TimeoutError:
                log.info("control client stopped reading its reply; dropping it")
                self._writer.transport.abort()


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


async def _remove_stale_socket(path: str) -> None:
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


def _yn(flag: bool) -> str:
    return "Y" if flag else "N"


def conn_line(session: SessionBase, now: float, name: Callable[[str], str] = str) -> str:
    """CONN's key=value line for one session (PR #120 layout); ``name`` maps IPs (MAPHOSTNAME)."""
    ih, ip = session.client
    eh, ep = session.egress_local
    rh, rp = session.egress_remote
    return (
        f"id={session.id} vhost={session.vhost} disconnected={_yn(session.finished)} "
        f"paused={_yn(session.paused)} authDenied={_yn(session.auth_denied)} "
        f"ingressRemote={name(ih)}:{ip} ingressLocal={name(session.local[0])} "
        f"egressLocal={name(eh)}:{ep} egressRemote={name(rh)}:{rp} "
        f"inBytes={session.in_bytes} inFrames={session.in_frames} inPackets={session.in_packets} "
        f"outBytes={session.out_bytes} outFrames={session.out_frames} "
        f"outPackets={session.out_packets} "
        f"{now - session.last_in_at:g}:{now - session.last_out_at:g}"
    )


def _port(text: str | None) -> int | None:
    """A TCP port 1..65535 given as decimal digits, else None."""
    if text is None or not ascii_digits(text):
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


def _arg(args: list[str], index: int) -> str | None:
    return args[index] if len(args) > index else None


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
    sessions = ops.list_sessions(ctx)
    await ops.session_endpoint_names(ctx, sessions)
    now = time.monotonic()
    name = ctx.hostnames.cached
    await out.write("".join(conn_line(s, now, name) + "\n" for s in sessions))


# -- BACKEND -------------------------------------------------------------------------------
@command(
    "BACKEND",
    "(ADD name datacenter host port [SEND-PROXY] [TLS] | ADD_DNS name datacenter address port "
    "[SEND-PROXY] [TLS] | DELETE name | PRINT) - Change backend servers",
)
async def _backend(ctx: Context, args: list[str], out: ControlOutput) -> None:
    sub = args[0].upper() if args else ""
    if sub in ("ADD", "ADD_DNS"):
        await _backend_add(ctx, args[1:], out, dns=sub == "ADD_DNS")
    elif sub == "DELETE":
        name = _arg(args, 1)
        if name is None:
            await out.write("DELETE requires a name argument")
            return
        ops.delete_backend(ctx, name)
    elif sub == "PRINT":
        await out.write("".join(b.describe() + "\n" for b in ops.list_backends(ctx)))
    else:
        await out.write(f"Subcommand '{sub}' not recognized.")


async def _backend_add(ctx: Context, args: list[str], out: ControlOutput, *, dns: bool) -> None:
    bad_arguments = "Arguments not correctly provided"
    if len(args) < 4:
        await out.write(bad_arguments)
        return
    name, datacenter, host, port_text = args[:4]
    port = _port(port_text)
    if port is None:
        await out.write(bad_arguments)
        return
    # As upstream, only the two tokens after the port are looked at, in either order.
    # SEND-PROXY-V2 (ours) asks for the binary PROXY header instead of the v1 text line.
    flags = {flag.upper() for flag in args[4:6]}
    proxy_protocol = 2 if "SEND-PROXY-V2" in flags else 1 if "SEND-PROXY" in flags else 0
    try:
        await ops.add_backend(
            ctx,
            name,
            datacenter,
            host,
            port,
            dns=dns,
            proxy_protocol=proxy_protocol,
            tls="TLS" in flags,
        )
    except InvalidArgument as error:
        # Validation of the values themselves (a name too long, say) reads as the original's
        # argument error; a resolution failure carries the original's own text.
        await out.write(error.legacy_text if error.legacy_text != error.message else bad_arguments)


# -- FARM ----------------------------------------------------------------------------------
@command(
    "FARM",
    "(ADD name selector backend* | PARTITION name policy | DELETE name | PRINT) - Change farms",
)
async def _farm(ctx: Context, args: list[str], out: ControlOutput) -> None:
    sub = args[0].upper() if args else ""
    if sub in ("ADD", "ADD_MANUAL"):
        if len(args) < 4:
            await out.write("Farm name and selector must be provided.\n")
            return
        # The original keeps the members in a set: a repeated name counts once.
        members = list(dict.fromkeys(args[3:]))
        ops.set_farm(ctx, args[1], members, args[2])
    elif sub == "PARTITION":
        if len(args) < 3:
            await out.write("Farm name and policy must be provided.\n")
            return
        ops.add_partition_policy(ctx, args[1], args[2])
    elif sub == "DELETE":
        name = _arg(args, 1)
        if name is None:
            await out.write("Farm name not provided.")
            return
        ops.delete_farm(ctx, name)
    elif sub == "PRINT":
        await out.write(
            "".join(
                f"{f.name}: " + "".join(m + " " for m in f.members) + "\n"
                for f in ops.list_farms(ctx)
            )
        )
    else:
        await out.write(f"Subcommand '{sub}' not recognized.")


# -- MAP -----------------------------------------------------------------------------------
@command(
    "MAP",
    "(BACKEND vhost backend | FARM vhost name | UNMAP vhost | DEFAULT farmName | REMOVE_DEFAULT | "
    "PRINT) - Change mappings of resources to servers",
)
async def _map(ctx: Context, args: list[str], out: ControlOutput) -> None:
    sub = args[0].upper() if args else ""
    if sub == "BACKEND":
        if len(args) < 3:
            await out.write("Vhost and backend must be provided")
            return
        ops.map_vhost_to_backend(ctx, args[1], args[2])
    elif sub == "FARM":
        if len(args) < 3:
            await out.write("Vhost and farm name must be provided")
            return
        ops.map_vhost_to_farm(ctx, args[1], args[2])
    elif sub == "UNMAP":
        vhost = _arg(args, 1)
        if vhost is None:
            await out.write("Vhost not provided.")
            return
        ops.unmap_vhost(ctx, vhost)
    elif sub == "DEFAULT":
        farm = _arg(args, 1)
        if farm is None:
            await out.write("Farm name for default must be provided")
            return
        ops.set_default_farm(ctx, farm)
    elif sub == "REMOVE_DEFAULT":
        ops.set_default_farm(ctx, None)
    elif sub == "PRINT":
        await out.write("".join(m.describe() + "\n" for m in ops.list_mappings(ctx)))
    else:
        await out.write("Unrecognized subcommand.")


# -- DATACENTER ----------------------------------------------------------------------------
@command("DATACENTER", "SET name | PRINT")
async def _datacenter(ctx: Context, args: list[str], out: ControlOutput) -> None:
    if not args:
        await out.write("No subcommand provided.\n")
        return
    sub = args[0].upper()
    if sub == "SET":
        ops.set_datacenter(ctx, _arg(args, 1) or "")
    elif sub == "PRINT":
        await out.write(ops.get_datacenter(ctx) + "\n")
    else:
        await out.write("Unknown subcommand.\n")


# -- LISTEN --------------------------------------------------------------------------------
@command("LISTEN", "START port | START_SECURE port | STOP [port]")
async def _listen(ctx: Context, args: list[str], out: ControlOutput) -> None:
    if not args:
        await out.write("No subcommand provided.\n")
        return
    sub = args[0].upper()
    port = _port(_arg(args, 1))
    if sub in ("START", "START_SECURE"):
        if port is None:
            await out.write("Invalid port provided.\n")
            return
        # Ours: "LISTEN START port PROXY" reads a PROXY protocol header from each client.
        accept_proxy = (_arg(args, 2) or "").upper() == "PROXY"
        try:
            await ops.start_listener(
                ctx, port, tls=sub == "START_SECURE", proxy_protocol=accept_proxy
            )
        except AmqpproxError as error:
            # Deliberate difference: the original printed nothing (and, for a busy port,
            # its server loop died); we say why and keep serving.
            await out.write(f"{error.message}\n")
    elif sub == "STOP":
        await ops.stop_listener(ctx, port)  # no or an invalid port: every listener
    else:
        await out.write("Unknown subcommand.\n")


# -- LOG -----------------------------------------------------------------------------------
@command("LOG", "CONSOLE verbosity | FILE verbosity")
async def _log(ctx: Context, args: list[str], out: ControlOutput) -> None:
    level = _arg(args, 1)
    if level is None or not ascii_digits(level.lstrip("-")):
        await out.write("Command or verbosity not found.\n")
        return
    sink = args[0].upper()
    if sink not in ("CONSOLE", "FILE"):
        await out.write("Type to verb is not known.\n")
        return
    ops.set_log_verbosity(ctx, sink.lower(), int(level))


# -- MAPHOSTNAME ---------------------------------------------------------------------------
@command("MAPHOSTNAME", "DNS - Set up mapping of IPs to hostnames")
async def _maphostname(ctx: Context, args: list[str], out: ControlOutput) -> None:
    if not args:
        await out.write("No subcommand specified.\n")
        return
    if args[0].upper() != "DNS":
        await out.write("Only DNS subcommand is supported.\n")
        return
    ops.enable_hostname_mapping(ctx)
    await out.write("Hostname mapper set for all current sessions.\n")


# -- SESSION -------------------------------------------------------------------------------
_SESSION_ACTIONS: dict[str, Callable[[Context, int], SessionBase]] = {
    "PAUSE": ops.pause_session,
    "UNPAUSE": ops.unpause_session,  # our addition; not in HELP, which stays the original's
    "DISCONNECT_GRACEFUL": ops.disconnect_session,
    "FORCE_DISCONNECT": ops.force_disconnect_session,
}


@command(
    "SESSION", " id# (PAUSE|DISCONNECT_GRACEFUL|FORCE_DISCONNECT) - Control a particular session"
)
async def _session(ctx: Context, args: list[str], out: ControlOutput) -> None:
    id_text = _arg(args, 0)
    if id_text is None or not ascii_digits(id_text):
        await out.write(ops.SESSION_NOT_FOUND)
        return
    session = ops.get_session(ctx, int(id_text))
    action = _SESSION_ACTIONS.get((_arg(args, 1) or "").upper())
    if action is None:
        await out.write("Session subcommand not found.\n")
        return
    action(ctx, session.id)


# -- VHOST ---------------------------------------------------------------------------------
_VHOST_ACTIONS: dict[str, Callable[[Context, str], object]] = {
    "PAUSE": ops.pause_vhost,
    "UNPAUSE": ops.unpause_vhost,
    "BACKEND_DISCONNECT": ops.backend_disconnect_vhost,
    "FORCE_DISCONNECT": ops.force_disconnect_vhost,
}


@command(
    "VHOST",
    "PAUSE vhost | UNPAUSE vhost | PRINT | BACKEND_DISCONNECT vhost | FORCE_DISCONNECT vhost",
)
async def _vhost(ctx: Context, args: list[str], out: ControlOutput) -> None:
    sub = args[0].upper() if args else ""
    if sub == "PRINT":
        states = ops.vhost_states(ctx)
        await out.write(
            "".join(f"{v} = {'PAUSED' if paused else 'UNPAUSED'}\n" for v, paused in states.items())
        )
        return
    vhost = _arg(args, 1)
    if vhost is None:
        await out.write(ops.SESSION_NOT_FOUND)  # sic: the original's text for a missing vhost
        return
    action = _VHOST_ACTIONS.get(sub)
    if action is None:
        await out.write("Subcommand not recognised.\n")
        return
    action(ctx, vhost)


# -- STAT ----------------------------------------------------------------------------------
_STAT_SUBCOMMANDS = "Only LISTEN, SEND, STOP, ENABLE, and DISABLE subcommands are supported.\n"


@command(
    "STAT",
    "(STOP SEND | SEND <host> <port> | (LISTEN (json|human) (overall|vhost=foo|backend=bar|"
    "source=baz|all|all-except-per-source|process|bufferpool)) - Output statistics\n"
    "STAT (DISABLE|ENABLE) per-source - Enable/Disable internal collection of per-source "
    "statistics. Applies to all send/listeners",
)
async def _stat(ctx: Context, args: list[str], out: ControlOutput) -> None:
    hub = stats_of(ctx)
    sub = args[0].upper() if args else ""
    if sub == "LISTEN":
        output = _arg(args, 1)
        if output is None:
            await out.write("No output type specified.\n")
            return
        output = output.upper()
        if output not in ("JSON", "HUMAN"):
            await out.write("json or human must be the type of output\n")
            return
        await _stat_listen(ctx, output, statfmt.parse_filter(_arg(args, 2)), out)
    elif sub == "SEND":
        host, port_text = _arg(args, 1), _arg(args, 2)
        if host is None:
            await out.write("No output host specified.\n")
            return
        if port_text is None or not ascii_digits(port_text):
            await out.write("No output port specified.\n")
            return
        if statfmt.parse_filter(_arg(args, 3)).kind != "ALL":
            await out.write("Filters aren't supported when sending metrics.\n")
            return
        port = _port(port_text)
        if port is None:
            await out.write(f"Invalid port: {port_text}\n")
            return
        try:
            sender = await statfmt.StatsdSender.open(host, port)
        except InvalidArgument as error:
            # Deliberate difference: the original's control loop died here (§12.9).
            await out.write(error.message + "\n")
            return
        hub.add_sender(sender)
        await out.write(f"Sending stats on {host}:{port}\n")
    elif sub == "STOP":
        kind = _arg(args, 1)
        if kind is None:
            await out.write("Missing stop type.\n")
        elif kind == "SEND":  # case-sensitive, as the original
            hub.stop_senders()
            await out.write("Stopped sending stats.\n")
        else:
            await out.write(f'Unrecognized argument for STOP: "{kind}".\n')
    elif sub in ("ENABLE", "DISABLE"):
        kind = _arg(args, 1)
        if kind is None:
            await out.write("Missing enable/disable type.\n")
        elif kind.lower() == "per-source":
            hub.per_source = sub == "ENABLE"
            await out.write(f"{sub} per-source applied.\n")
        else:
            await out.write(_STAT_SUBCOMMANDS)
    else:
        await out.write(_STAT_SUBCOMMANDS)


async def _stat_listen(
    ctx: Context, output: str, flt: statfmt.StatFilter, out: ControlOutput
) -> None:
    """Stream one report per cleanup interval until the reader goes away."""
    hub = stats_of(ctx)
    if type(out).closed is ControlOutput.closed:
        # Not a socket (a startup script, say): nothing could stop a stream; one report.
        snapshot = hub.last or hub.collect(ctx.sessions, ctx.hostnames.cached, commit=False)
        await out.write(statfmt.render(snapshot, output, flt))
        return
    # Wake up now and then even without reports, to notice a reader that has gone; the
    # stream ends (and the connection closes) when the proxy shuts down.
    idle = max(1.0, 4 * ctx.settings.cleanup_interval_ms / 1000)
    listener = hub.listen()
    stopping = asyncio.ensure_future(ctx.shutdown.wait())
    try:
        while not out.closed and not stopping.done():
            report = asyncio.ensure_future(listener.queue.get())
            await asyncio.wait({report, stopping}, timeout=idle, return_when="FIRST_COMPLETED")
            if not report.done():
                report.cancel()
                continue
            await out.write(statfmt.render(report.result(), output, flt))
    finally:
        stopping.cancel()
        hub.unlisten(listener)


# -- TLS -----------------------------------------------------------------------------------
@command(
    "TLS",
    "(INGRESS | EGRESS) (KEY_FILE file | CERT_CHAIN_FILE file | RSA_KEY_FILE file | "
    "TMP_DH_FILE file | CA_CERT_FILE file | VERIFY_MODE mode* | CIPHERS (PRINT | SET "
    "ciphersuite(:ciphersuite)*))",
)
async def _tls(ctx: Context, args: list[str], out: ControlOutput) -> None:
    direction = parse_direction(_arg(args, 0) or "")
    if direction is None:
        await out.write("Direction must be INGRESS or EGRESS\n")
        return
    sub, value = (_arg(args, 1) or "").upper(), _arg(args, 2)
    if value is None:
        await out.write("File must be specified\n")
        return
    if sub in ops.TLS_FILE_COMMANDS:
        try:
            ops.set_tls_file(ctx, direction, sub, value)
        except InvalidArgument as error:
            await out.write(error.legacy_text)
    elif sub == "VERIFY_MODE":
        ops.set_tls_verify_mode(ctx, direction, args[2:])
    elif sub == "CIPHERS" and value == "PRINT":  # PRINT and SET are case-sensitive upstream
        await out.write("Ciphers:\n" + "".join(f"{c}\n" for c in ops.tls_ciphers(ctx, direction)))
    elif sub == "CIPHERS" and value == "SET":
        text = ""
        try:
            ciphers = ops.set_tls_ciphers(ctx, direction, _arg(args, 3) or "")
        except InvalidArgument:
            text, ciphers = "Failed to set cipher suite. ", ops.tls_ciphers(ctx, direction)
        await out.write(text + "Updated cipher list:\n" + "".join(f"{c}\n" for c in ciphers))
    # As upstream, an unknown command is silently a no-op.


# -- LIMIT and AUTH (admin.control_limits) -------------------------------------------------
@command("LIMIT", control_limits.LIMIT_HELP)
async def _limit(ctx: Context, args: list[str], out: ControlOutput) -> None:
    await control_limits.limit(ctx, args, out)


@command("AUTH", control_limits.AUTH_HELP)
async def _auth(ctx: Context, args: list[str], out: ControlOutput) -> None:
    await control_limits.auth(ctx, args, out)


# -- commands that belong to other features ------------------------------------------------
NOT_YET_TEXT = "{verb} is not available in this build yet.\n"
PENDING: set[str] = set()


def _pending(verb: str, help_line: str) -> None:
    """Register ``verb`` (so HELP lists it) with a handler saying it is not there yet."""

    async def handler(ctx: Context, args: list[str], out: ControlOutput) -> None:
        await out.write(NOT_YET_TEXT.format(verb=verb))

    PENDING.add(verb)
    COMMANDS[verb] = Command(verb, help_line, handler)


def register_pending() -> None:
    """Placeholders for AUTH, LIMIT, STAT and TLS; a real registration replaces them."""
    for verb, help_line in _PENDING_HELP.items():
        if verb not in COMMANDS:
            _pending(verb, help_line)


_PENDING_HELP = {
    "STAT": "(STOP SEND | SEND <host> <port> | (LISTEN (json|human) (overall|vhost=foo|backend=bar|"
    "source=baz|all|all-except-per-source|process|bufferpool)) - Output statistics\n"
    "STAT (DISABLE|ENABLE) per-source - Enable/Disable internal collection of per-source "
    "statistics. Applies to all send/listeners",
    "TLS": "(INGRESS | EGRESS) (KEY_FILE file | CERT_CHAIN_FILE file | RSA_KEY_FILE file | "
    "TMP_DH_FILE file | CA_CERT_FILE file | VERIFY_MODE mode* | CIPHERS (PRINT | SET "
    "ciphersuite(:ciphersuite)*))",
}

register_pending()
