"""The commands of the proxy, as plain functions over the Context.

The control socket, REST and the dashboard all call these, so they can never disagree.
They validate through ``core.model``, raise the typed errors of ``amqpprox.errors`` and
return plain values; rendering (the original's text, JSON, HTML) is each front end's job.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amqpprox import __version__, logsetup
from amqpprox.core.context import Context
from amqpprox.core.model import (
    ALL_INTERFACES,
    ROUND_ROBIN,
    Backend,
    Farm,
    ListenerSpec,
    Mapping,
    validate_name,
    validate_port,
)
from amqpprox.core.sessions import SessionBase, SessionState
from amqpprox.errors import AmqpproxError, InvalidArgument, NotFound

RESOLVE_TIMEOUT = 10.0
# The original answers this for an unknown session id and, oddly, for a VHOST command
# without a vhost; front ends other than the control socket use the error's message.
SESSION_NOT_FOUND = "Session not found.\n"
LOG_SINKS = ("console", "file")

log = logging.getLogger("amqpprox.operations")


# -- backends ------------------------------------------------------------------------------
async def add_backend(
    ctx: Context,
    name: str,
    datacenter: str,
    host: str,
    port: int,
    *,
    dns: bool = False,
    proxy_protocol: int = 0,
    tls: bool = False,
    replace: bool = False,
    stream_port: int = 5552,
) -> Backend:
    """BACKEND ADD (resolved now, first address kept) or ADD_DNS (resolved at each connect)."""
    ip: str | None = None
    # Validate before resolving, so a bad name or port never waits on DNS.
    Backend(name, datacenter, host, port, "0.0.0.0", proxy_protocol, tls, stream_port)
    if not dns:
        ip = await resolve_first(host, port)
    backend = Backend(name, datacenter, host, port, ip, proxy_protocol, tls, stream_port)
    if replace:
        ctx.state.replace_backend(backend)
    else:
        ctx.state.add_backend(backend)
    return backend


async def resolve_first(host: str, port: int) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT
        )
    except (OSError, TimeoutError, UnicodeError) as error:
        # UnicodeError: the IDNA codec refuses the name (an empty or over-long label).
        code = getattr(error, "errno", None)
        raise InvalidArgument(
            f"failed to resolve {host!r}: {error}",
            legacy_text=f"Failed to resolve '{host}', error code: asio.netdb:{_netdb_code(code)}",
        ) from error
    if not infos:
        raise InvalidArgument(
            f"failed to resolve {host!r}",
            legacy_text=f"Failed to resolve '{host}', error code: asio.netdb:1",
        )
    return str(infos[0][4][0])


def _netdb_code(errno: int | None) -> int:
    # asio's netdb category: 1 host not found, 2 try again (a temporary failure).
    return 2 if errno == socket.EAI_AGAIN else 1


def set_backend_stream_port(ctx: Context, name: str, port: int) -> Backend:
    """BACKEND STREAM_PORT: where the backend's broker serves RabbitMQ Streams."""
    backend = dataclasses.replace(get_backend(ctx, name), stream_port=port)
    ctx.state.replace_backend(backend)
    return backend


def delete_backend(ctx: Context, name: str) -> None:
    ctx.state.delete_backend(name)


def get_backend(ctx: Context, name: str) -> Backend:
    backend = ctx.state.backends.get(name)
    if backend is None:
        raise NotFound(f"backend {name!r} not found")
    return backend


def list_backends(ctx: Context) -> list[Backend]:
    return list(ctx.state.backends.values())


# -- farms ---------------------------------------------------------------------------------
def set_farm(
    ctx: Context,
    name: str,
    members: list[str],
    selector: str = ROUND_ROBIN,
    partitions: tuple[str, ...] = (),
) -> Farm:
    farm = Farm(name, tuple(members), selector, partitions)
    ctx.state.set_farm(farm)
    return farm


def add_partition_policy(ctx: Context, name: str, policy: str) -> Farm:
    Farm("probe", ("probe",), ROUND_ROBIN, (policy,))  # validates the policy name
    ctx.state.add_partition_policy(name, policy)
    return ctx.state.farms[name]


def delete_farm(ctx: Context, name: str) -> bool:
    return ctx.state.delete_farm(name)


def list_farms(ctx: Context) -> list[Farm]:
    return list(ctx.state.farms.values())


# -- mappings ------------------------------------------------------------------------------
def map_vhost_to_farm(ctx: Context, vhost: str, farm: str) -> Mapping:
    mapping = Mapping(vhost, "farm", validate_name("farm", farm))
    ctx.state.map_vhost(mapping)
    return mapping


def map_vhost_to_backend(ctx: Context, vhost: str, backend: str) -> Mapping:
    mapping = Mapping(vhost, "backend", validate_name("backend", backend))
    ctx.state.map_vhost(mapping)
    return mapping


def unmap_vhost(ctx: Context, vhost: str) -> bool:
    return ctx.state.unmap_vhost(vhost)


def set_default_farm(ctx: Context, farm: str | None) -> None:
    if farm is not None:
        validate_name("farm", farm)
    ctx.state.set_default_farm(farm)


def list_mappings(ctx: Context) -> list[Mapping]:
    """Every explicit mapping, sorted by vhost (the default farm is not one)."""
    return [ctx.state.mappings[v] for v in sorted(ctx.state.mappings)]


# -- datacenter ----------------------------------------------------------------------------
def set_datacenter(ctx: Context, name: str) -> None:
    ctx.state.set_datacenter(name)


def get_datacenter(ctx: Context) -> str:
    return ctx.state.datacenter


# -- listeners -----------------------------------------------------------------------------
async def start_listener(
    ctx: Context,
    port: int,
    *,
    tls: bool = False,
    proxy_protocol: bool = False,
    host: str = ALL_INTERFACES,
    protocol: str = "amqp",
    node: str | None = None,
) -> int:
    """LISTEN START / START_SECURE; ``proxy_protocol``: clients come through a PROXY sender.

    ``protocol`` "stream" (LISTEN START_STREAM) serves RabbitMQ Streams clients; ``node``
    makes it a node listener that sends every connection to that backend.

    ``host``: the bind address (``model.listen_address``); a port we already listen on is
    busy whatever its address.
    """
    spec = ListenerSpec(port, tls, host, proxy_protocol, protocol, node)
    if node is not None:
        get_backend(ctx, node)  # a node listener names a known backend
    bound = await ctx.listeners.start(spec)
    ctx.state.notify()  # listeners live outside ProxyState: tell the state file
    return bound


async def stop_listener(ctx: Context, port: int | None = None) -> list[int]:
    stopped = await ctx.listeners.stop(port)
    if stopped:
        ctx.state.notify()
    return stopped


def list_listeners(ctx: Context) -> list[ListenerSpec]:
    return ctx.listeners.specs()


# -- sessions ------------------------------------------------------------------------------
def list_sessions(ctx: Context) -> list[SessionBase]:
    return sorted(ctx.sessions, key=lambda s: s.id)


def get_session(ctx: Context, session_id: int) -> SessionBase:
    session = ctx.sessions.get(session_id)
    if session is None:
        raise NotFound(f"session {session_id} not found", legacy_text=SESSION_NOT_FOUND)
    return session


def _audit(session: SessionBase, action: str) -> None:
    adapter = logsetup.SessionLogAdapter(log, session)
    adapter.info("Control action %s on session %d", action, session.id)


def pause_session(ctx: Context, session_id: int) -> SessionBase:
    """Stop relaying the client's frames to the broker (broker->client keeps flowing)."""
    session = get_session(ctx, session_id)
    _audit(session, "PAUSE")
    session.pause()
    return session


def unpause_session(ctx: Context, session_id: int) -> SessionBase:
    """Resume a paused session (our addition: the original had no per-session UNPAUSE)."""
    session = get_session(ctx, session_id)
    _audit(session, "UNPAUSE")
    session.unpause()
    return session


def disconnect_session(ctx: Context, session_id: int, reason: str = "OK") -> SessionBase:
    """Connection.Close 200 to the client, then to the broker, each waiting for CloseOk."""
    session = get_session(ctx, session_id)
    _audit(session, "DISCONNECT_GRACEFUL")
    session.disconnect_graceful(reason)
    return session


def force_disconnect_session(ctx: Context, session_id: int) -> SessionBase:
    """Close both sockets at once, without an AMQP Close."""
    session = get_session(ctx, session_id)
    _audit(session, "FORCE_DISCONNECT")
    session.force_disconnect()
    return session


# -- vhosts --------------------------------------------------------------------------------
def pause_vhost(ctx: Context, vhost: str) -> list[SessionBase]:
    ctx.state.set_vhost_paused(vhost, True)
    sessions = ctx.sessions.of_vhost(vhost)
    for session in sessions:
        session.pause()
    return sessions


def unpause_vhost(ctx: Context, vhost: str) -> list[SessionBase]:
    """Held sessions connect out; established paused ones are cut so they reconnect (PR #75).

    While the vhost migrates, the sessions held at Open stay held: the migration
    releases them, to the new mapping, when its evictions are over (core.migration).
    """
    ctx.state.set_vhost_paused(vhost, False)
    migrating = vhost in ctx.state.migrating_vhosts
    sessions = ctx.sessions.of_vhost(vhost)
    for session in sessions:
        if not session.paused or session.finished:
            continue
        if session.opened_at is None:
            if not migrating:
                session.release_held()
        else:
            session.force_disconnect()
    return sessions


def _sessions_of_named_vhost(ctx: Context, vhost: str) -> list[SessionBase]:
    if not vhost:
        raise InvalidArgument("vhost must be given", legacy_text=SESSION_NOT_FOUND)
    return ctx.sessions.of_vhost(vhost)


def backend_disconnect_vhost(ctx: Context, vhost: str) -> list[SessionBase]:
    sessions = _sessions_of_named_vhost(ctx, vhost)
    for session in sessions:
        session.backend_disconnect()
    return sessions


def force_disconnect_vhost(ctx: Context, vhost: str) -> list[SessionBase]:
    sessions = _sessions_of_named_vhost(ctx, vhost)
    for session in sessions:
        session.force_disconnect()
    return sessions


def vhost_states(ctx: Context) -> dict[str, bool]:
    """Every vhost paused, unpaused or opened by a client, sorted, with its paused flag."""
    return {v: ctx.state.paused_vhosts[v] for v in sorted(ctx.state.paused_vhosts)}


# -- logging and hostnames -----------------------------------------------------------------
def set_log_verbosity(ctx: Context, sink: str, verbosity: int) -> None:
    """LOG CONSOLE|FILE n: 0 FATAL .. 5 TRACE, applied at once (no range check, as upstream)."""
    if sink == "console":
        logsetup.set_console_verbosity(verbosity)
    elif sink == "file":
        logsetup.set_file_verbosity(verbosity)
    else:
        raise InvalidArgument(f"log sink must be one of {', '.join(LOG_SINKS)}: {sink!r}")


def enable_hostname_mapping(ctx: Context) -> None:
    """MAPHOSTNAME DNS: endpoints are shown by reverse-DNS name from now on."""
    ctx.hostnames.enable()


async def session_endpoint_names(ctx: Context, sessions: list[SessionBase]) -> None:
    """Look up (once) the names of every endpoint of ``sessions`` when mapping is on."""
    ips: list[str] = []
    for s in sessions:
        ips += [s.client[0], s.local[0], s.egress_local[0], s.egress_remote[0]]
    await ctx.hostnames.resolve_all(ips)


# -- create-or-replace and queries (REST, definitions) ------------------------------------
async def put_backend(
    ctx: Context,
    name: str,
    datacenter: str,
    host: str,
    port: int,
    *,
    dns: bool = False,
    proxy_protocol: int = 0,
    tls: bool = False,
    stream_port: int = 5552,
) -> tuple[Backend, bool]:
    """Create or replace a backend (farms using it are repartitioned); True when created."""
    created = name not in ctx.state.backends
    backend = await add_backend(
        ctx,
        name,
        datacenter,
        host,
        port,
        dns=dns,
        proxy_protocol=proxy_protocol,
        tls=tls,
        replace=True,
        stream_port=stream_port,
    )
    return backend, created


def get_farm(ctx: Context, name: str) -> Farm:
    farm = ctx.state.farms.get(name)
    if farm is None:
        raise NotFound(f"farm {name!r} not found", legacy_text=f"Farm '{name}' not found\n")
    return farm


def get_mapping(ctx: Context, vhost: str) -> Mapping:
    mapping = ctx.state.mappings.get(vhost)
    if mapping is None:
        raise NotFound(f"vhost {vhost!r} is not mapped")
    return mapping


def get_default_farm(ctx: Context) -> str | None:
    return ctx.state.default_farm


def get_listener(ctx: Context, port: int) -> ListenerSpec:
    for spec in ctx.listeners.specs():
        if spec.port == port:
            return spec
    raise NotFound(f"not listening on port {port}")


async def put_listener(
    ctx: Context,
    port: int,
    *,
    tls: bool = False,
    proxy_protocol: bool = False,
    host: str = ALL_INTERFACES,
    notify: bool = True,
    protocol: str = "amqp",
    node: str | None = None,
    check_node: bool = True,
) -> tuple[ListenerSpec, bool]:
    """Listen on ``port`` (idempotent); a listener in another mode (TLS, PROXY) or on
    another address is replaced.

    True when a listener was started where none was. If the replacement cannot bind,
    the previous listener is restored and the error raised. ``notify`` False: the caller
    (a definitions import) tells the state file once its whole change is done.
    """
    validate_port(port)
    wanted = ListenerSpec(port, tls, host, proxy_protocol, protocol, node)
    if node is not None and check_node:  # a definitions import checked its own backends
        get_backend(ctx, node)
    current = next((s for s in ctx.listeners.specs() if s.port == port), None)
    if current is not None and current == wanted:
        return current, False
    if current is not None:
        await ctx.listeners.stop(port)
    try:
        await ctx.listeners.start(wanted)
    except AmqpproxError:
        if current is not None:
            await ctx.listeners.start(current)
        raise
    if notify:
        ctx.state.notify()
    return get_listener(ctx, port), current is None


@dataclass(frozen=True, slots=True)
class Overview:
    """The proxy at a glance (REST overview, dashboard)."""

    version: str
    hostname: str
    datacenter: str
    started_at: float
    uptime_seconds: float
    config_version: int
    counts: dict[str, int]
    totals: dict[str, int]


def overview(ctx: Context) -> Overview:
    """Counts of configured things and live sessions; traffic totals that never go backwards."""
    live = ctx.sessions.live()
    removed = ctx.sessions.removed
    totals = {
        "sessions_opened": ctx.sessions.opened_total,
        "sessions_closed": removed.sessions,
        "in_bytes": removed.in_bytes,
        "in_frames": removed.in_frames,
        "in_packets": removed.in_packets,
        "out_bytes": removed.out_bytes,
        "out_frames": removed.out_frames,
        "out_packets": removed.out_packets,
    }
    for s in ctx.sessions:
        totals["in_bytes"] += s.in_bytes
        totals["in_frames"] += s.in_frames
        totals["in_packets"] += s.in_packets
        totals["out_bytes"] += s.out_bytes
        totals["out_frames"] += s.out_frames
        totals["out_packets"] += s.out_packets
    counts = {
        "sessions": len(live),
        "backends": len(ctx.state.backends),
        "farms": len(ctx.state.farms),
        "mappings": len(ctx.state.mappings),
        "listeners": len(ctx.listeners.specs()),
        "vhosts": len(ctx.state.paused_vhosts),
    }
    return Overview(
        version=__version__,
        hostname=ctx.settings.hostname,
        datacenter=ctx.state.datacenter,
        started_at=ctx.started_at,
        uptime_seconds=max(0.0, time.time() - ctx.started_at),
        config_version=ctx.state.version,
        counts=counts,
        totals=totals,
    )


SESSION_SORT_KEYS: dict[str, Callable[[SessionBase], Any]] = {
    "id": lambda s: s.id,
    "vhost": lambda s: (s.vhost, s.id),
    "backend": lambda s: (s.backend_name or "", s.id),
    "source": lambda s: (s.client, s.id),
    "state": lambda s: (s.state.value, s.id),
    "started_at": lambda s: (s.started_at, s.id),
    "in_bytes": lambda s: (s.in_bytes, s.id),
    "out_bytes": lambda s: (s.out_bytes, s.id),
}


def query_sessions(
    ctx: Context,
    *,
    vhost: str | None = None,
    backend: str | None = None,
    source: str | None = None,
    state: str | None = None,
    user: str | None = None,
    sort: str = "id",
    reverse: bool = False,
) -> list[SessionBase]:
    """Sessions matching every given filter, sorted.

    ``source`` is the client's address, with or without its port (``10.0.0.1`` or
    ``10.0.0.1:40000``); ``state`` a ``SessionState`` value; ``user`` the user name the
    client authenticated as.
    """
    key = SESSION_SORT_KEYS.get(sort)
    if key is None:
        raise InvalidArgument(f"sort must be one of {', '.join(SESSION_SORT_KEYS)}: {sort!r}")
    if state is not None and state not in {s.value for s in SessionState}:
        raise InvalidArgument(f"unknown session state {state!r}")
    found = [
        s
        for s in ctx.sessions
        if (vhost is None or s.vhost == vhost)
        and (backend is None or s.backend_name == backend)
        and (source is None or source in (s.client[0], f"{s.client[0]}:{s.client[1]}"))
        and (state is None or s.state.value == state)
        and (user is None or s.identity.user == user)
    ]
    return sorted(found, key=key, reverse=reverse)


# -- process -------------------------------------------------------------------------------
def request_exit(ctx: Context) -> None:
    ctx.shutdown.set()
