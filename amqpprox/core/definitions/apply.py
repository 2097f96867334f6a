"""Apply a definitions document atomically (``PUT /api/v1/definitions``, ``--definitions``).

All or nothing: after ``prepare`` the TLS contexts are swapped in and the listeners
started (both undone if one cannot bind); only then is the live state changed, in one
synchronous step (``_commit``) the event loop cannot interleave with a session. The
state file (``core.persist``) is told once, after the last listener stopped.
I/O goes through ``core.operations`` and the Context's listener and TLS controls.
Must not import ``proxy`` or ``admin``.
"""

from __future__ import annotations

from typing import Any

from amqpprox.core import operations as ops
from amqpprox.core import tls_ops
from amqpprox.core.backend_status import BackendState
from amqpprox.core.context import Context
from amqpprox.core.definitions.diff import diff
from amqpprox.core.definitions.prepare import Definitions, prepare
from amqpprox.core.model import Limits, ListenerSpec
from amqpprox.core.tls import DIRECTIONS
from amqpprox.errors import AmqpproxError, InvalidState


async def _apply_listeners(
    ctx: Context, wanted: tuple[ListenerSpec, ...]
) -> list[tuple[int, ListenerSpec | None]]:
    """Start (or switch the mode or address of) the listeners ``wanted``; returns how to
    undo it."""
    current = {s.port: s for s in ctx.listeners.specs()}
    undo: list[tuple[int, ListenerSpec | None]] = []
    try:
        for spec in wanted:
            before = current.get(spec.port)
            if before == spec:
                continue
            await ops.put_listener(
                ctx,
                spec.port,
                tls=spec.tls,
                proxy_protocol=spec.proxy_protocol,
                host=spec.host,
                notify=False,
                protocol=spec.protocol,
                node=spec.node,
                check_node=False,
            )
            undo.append((spec.port, before))
    except AmqpproxError:
        await _undo_listeners(ctx, undo)
        raise
    return undo


async def _undo_listeners(ctx: Context, undo: list[tuple[int, ListenerSpec | None]]) -> None:
    for port, before in reversed(undo):
        await ctx.listeners.stop(port)
        if before is not None:
            await ctx.listeners.start(before)


def _commit(ctx: Context, defs: Definitions) -> None:
    """Change the live state to ``defs``; synchronous, and checked by ``_check`` not to fail."""
    state = ctx.state
    if state.datacenter != defs.datacenter:
        state.set_datacenter(defs.datacenter)
    for backend in defs.backends:
        if state.backends.get(backend.name) != backend:
            state.replace_backend(backend)
    wanted_maps = {m.vhost: m for m in defs.mappings}
    for vhost in [v for v in state.mappings if v not in wanted_maps]:
        state.unmap_vhost(vhost)
    for mapping in defs.mappings:
        if state.mappings.get(mapping.vhost) != mapping:
            state.map_vhost(mapping)
    for farm in defs.farms:
        if state.farms.get(farm.name) != farm:
            state.set_farm(farm)
    wanted_farms = {f.name for f in defs.farms}
    for name in [n for n in state.farms if n not in wanted_farms]:
        state.delete_farm(name)
    if state.default_farm != defs.default_farm:
        state.set_default_farm(defs.default_farm)
    wanted_backends = {b.name for b in defs.backends}
    for name in [n for n in state.backends if n not in wanted_backends]:
        state.delete_backend(name)
    if state.default_limits != defs.default_limits:
        state.set_default_limits(defs.default_limits)
    wanted_limits = dict(defs.vhost_limits)
    for vhost in [v for v in state.vhost_limits if v not in wanted_limits]:
        state.set_vhost_limits(vhost, Limits())
    for vhost, limits in defs.vhost_limits:
        if state.vhost_limits.get(vhost) != limits:
            state.set_vhost_limits(vhost, limits)
    if state.auth != defs.auth:
        state.set_auth(defs.auth)
    _commit_health(ctx, defs)
    wanted_paused = set(defs.paused_vhosts)
    for vhost in [v for v, paused in state.paused_vhosts.items() if paused]:
        if vhost not in wanted_paused:
            ops.unpause_vhost(ctx, vhost)
    for vhost in defs.paused_vhosts:
        if not state.paused_vhosts.get(vhost, False):  # a migration's hold is not a pause
            ops.pause_vhost(ctx, vhost)


def _commit_health(ctx: Context, defs: Definitions) -> None:
    """Backend states and check settings (their backends exist by now: ``prepare``)."""
    state = ctx.state
    if state.default_health_check != defs.default_check:
        state.set_health_check(None, defs.default_check)
    checks, states = dict(defs.health_checks), dict(defs.backend_states)
    for name in state.backends:
        if state.health_checks.get(name) != checks.get(name):
            state.set_health_check(name, checks.get(name))
        wanted = states.get(name, BackendState.READY)
        if state.backend_state(name) is not wanted:
            state.set_backend_state(name, wanted)


async def apply(ctx: Context, document: object, *, dry_run: bool = False) -> dict[str, Any]:
    """Validate ``document`` and (unless ``dry_run``) make it the configuration, atomically.

    Returns ``{"dry_run": ..., "changes": diff}``. Raises ``InvalidArgument`` for an invalid
    document and ``InvalidState`` when a listener cannot bind or the configuration changed
    while the document was being prepared; nothing is changed then.
    """
    version = ctx.state.version
    defs = await prepare(ctx, document)
    changes = diff(ctx, defs)
    if dry_run:
        return {"dry_run": True, "changes": changes}
    # TLS first, so a secure listener the document starts serves with the document's
    # certificate from its first connection. Undoing it is a swap back, which cannot fail.
    tls_before = {d: tls_ops.tls_settings(ctx, d) for d in DIRECTIONS}
    wanted_tls = dict(defs.tls)
    undo_tls = ctx.tls.configure_all({d: wanted_tls[d] for d in defs.tls_given})
    try:
        undo = await _apply_listeners(ctx, defs.listeners) if defs.listeners is not None else []
    except BaseException:
        undo_tls()
        raise
    if ctx.state.version != version:
        await _undo_listeners(ctx, undo)
        undo_tls()
        ctx.state.notify()  # a change saved meanwhile may have seen this import's listeners
        raise InvalidState("the configuration changed while the document was applied; retry")
    # The state file is written once, when the whole document is in place.
    try:
        with ctx.state.batch():
            _commit(ctx, defs)
            if any(wanted_tls[d] != tls_before[d] for d in defs.tls_given):
                ctx.state.touch()
        ctx.admission.changed()  # live sessions take up the document's data rates
        if defs.listeners is not None:
            wanted_ports = {s.port for s in defs.listeners}
            for spec in ctx.listeners.specs():
                if spec.port not in wanted_ports:
                    await ctx.listeners.stop(spec.port)
    finally:
        ctx.state.notify()
    return {"dry_run": False, "changes": changes}
