"""Validate a definitions document into ``Definitions``, a configuration ready to apply.

``prepare`` loads the document with ``schema.DefinitionsSchema``, builds the model values
(resolving non-DNS backends, building and discarding TLS contexts) and checks the result
on a scratch ``ProxyState``, so that applying it to the live state cannot fail half-way.
A top-level key the document leaves out keeps that part of the configuration as it is.
Changes nothing; I/O only through ``core.operations``. Must not import ``proxy`` or ``admin``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from amqpprox.core import operations as ops
from amqpprox.core import tls_ops
from amqpprox.core.backend_status import BackendState
from amqpprox.core.context import Context
from amqpprox.core.definitions.codec import (
    all_limits_json,
    auth_from_json,
    auth_json,
    backend_json,
    check_from_json,
    farm_json,
    health_json,
    limits_from_json,
    mapping_json,
    paused_vhosts_json,
    tls_from_json,
    tls_json,
)
from amqpprox.core.definitions.schema import DefinitionsSchema, load_schema
from amqpprox.core.health import CheckSettings
from amqpprox.core.model import AuthConfig, Backend, Farm, Limits, ListenerSpec, Mapping
from amqpprox.core.state import ProxyState
from amqpprox.core.tls import DIRECTIONS, Direction, TlsSettings
from amqpprox.errors import AmqpproxError, InvalidArgument


@dataclass(frozen=True, slots=True)
class Definitions:
    """A validated configuration, ready to apply; ``listeners`` None keeps the current ones."""

    datacenter: str
    backends: tuple[Backend, ...]
    farms: tuple[Farm, ...]
    mappings: tuple[Mapping, ...]
    default_farm: str | None
    listeners: tuple[ListenerSpec, ...] | None
    default_limits: Limits = field(default_factory=Limits)
    vhost_limits: tuple[tuple[str, Limits], ...] = ()
    auth: AuthConfig = field(default_factory=AuthConfig)
    # Both directions' settings after the apply, and the directions the document gives
    # (those are rebuilt from their files, so an apply picks up rotated certificates).
    tls: tuple[tuple[Direction, TlsSettings], ...] = ()
    tls_given: tuple[Direction, ...] = ()
    paused_vhosts: tuple[str, ...] = ()
    default_check: CheckSettings | None = None
    health_checks: tuple[tuple[str, CheckSettings], ...] = ()
    backend_states: tuple[tuple[str, BackendState], ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "datacenter": self.datacenter,
            "backends": [backend_json(b) for b in sorted(self.backends, key=lambda b: b.name)],
            "farms": [farm_json(f) for f in sorted(self.farms, key=lambda f: f.name)],
            "mappings": [mapping_json(m) for m in sorted(self.mappings, key=lambda m: m.vhost)],
            "default_farm": self.default_farm,
            "limits": all_limits_json(self.default_limits, dict(self.vhost_limits)),
            "auth": auth_json(self.auth),
            "tls": {d.lower(): tls_json(settings) for d, settings in self.tls},
            "paused_vhosts": sorted(self.paused_vhosts),
            "health": health_json(
                self.default_check, dict(self.health_checks), dict(self.backend_states)
            ),
        }


def _unique(items: list[dict[str, Any]], key: str, section: str) -> None:
    seen: set[object] = set()
    for index, item in enumerate(items):
        if item[key] in seen:
            raise InvalidArgument(f"{section}.{index}: {key} {item[key]!r} appears twice")
        seen.add(item[key])


async def prepare(ctx: Context, document: object) -> Definitions:
    """Parse and check ``document`` against nothing but itself; resolves non-DNS backends."""
    doc = load_schema(DefinitionsSchema(), document)
    state = ctx.state
    backends: list[Backend] = []
    if "backends" in doc:
        _unique(doc["backends"], "name", "backends")
        for index, item in enumerate(doc["backends"]):
            try:
                ip = None if item["dns"] else "0.0.0.0"
                probe = Backend(
                    item["name"],
                    item["datacenter"],
                    item["host"],
                    item["port"],
                    ip,
                    item["proxy_protocol"],
                    item["tls"],
                    item["stream_port"],
                )
                if not item["dns"]:
                    ip = await ops.resolve_first(item["host"], item["port"])
                    probe = Backend(
                        probe.name, probe.datacenter, probe.host, probe.port, ip,
                        probe.proxy_protocol, probe.tls, probe.stream_port,
                    )  # fmt: skip
            except AmqpproxError as error:
                raise InvalidArgument(f"backends.{index}: {error.message}") from error
            backends.append(probe)
    else:
        backends = list(state.backends.values())

    farms: list[Farm] = []
    if "farms" in doc:
        _unique(doc["farms"], "name", "farms")
        for index, item in enumerate(doc["farms"]):
            try:
                farm = Farm(
                    item["name"],
                    tuple(item["backends"]),
                    item["selector"],
                    tuple(item["partitions"]),
                )
            except AmqpproxError as error:
                raise InvalidArgument(f"farms.{index}: {error.message}") from error
            farms.append(farm)
    else:
        farms = list(state.farms.values())

    if "mappings" in doc:
        _unique(doc["mappings"], "vhost", "mappings")
        mappings = [
            Mapping(m["vhost"], "farm", m["farm"])
            if "farm" in m
            else Mapping(m["vhost"], "backend", m["backend"])
            for m in doc["mappings"]
        ]
    else:
        mappings = list(state.mappings.values())

    listeners: tuple[ListenerSpec, ...] | None = None
    if "listeners" in doc:
        _unique(doc["listeners"], "port", "listeners")
        listeners = tuple(
            ListenerSpec(
                item["port"],
                item["tls"],
                item["address"],
                item["proxy_protocol"],
                item["protocol"],
                item["node"],
            )
            for item in doc["listeners"]
        )
        names = {backend.name for backend in backends}
        for index, spec in enumerate(listeners):
            if spec.node is not None and spec.node not in names:
                raise InvalidArgument(
                    f"listeners.{index}: node {spec.node!r} is not one of the backends"
                )

    default_limits, vhost_limits = state.default_limits, tuple(state.vhost_limits.items())
    if "limits" in doc:
        try:
            default_limits = limits_from_json(doc["limits"]["default"])
            vhost_limits = tuple(
                (vhost, limits_from_json(item))
                for vhost, item in sorted(doc["limits"]["vhosts"].items())
                if not limits_from_json(item).empty
            )
        except AmqpproxError as error:
            raise InvalidArgument(f"limits: {error.message}") from error
    auth = state.auth
    if "auth" in doc:
        try:
            auth = auth_from_json(doc["auth"])
        except AmqpproxError as error:
            raise InvalidArgument(f"auth: {error.message}") from error

    tls = {d: tls_ops.tls_settings(ctx, d) for d in DIRECTIONS}
    given: list[Direction] = []
    for direction in DIRECTIONS:
        part = doc.get("tls", {}).get(direction.lower())
        if part is None:
            continue
        label = f"tls.{direction.lower()}"
        try:
            tls[direction] = tls_from_json(part)
            # Built now (and thrown away): a TLS part that does not build fails the document.
            ctx.tls.check(direction, tls[direction])
        except AmqpproxError as error:
            raise InvalidArgument(f"{label}: {error.message}") from error
        given.append(direction)

    paused = doc.get("paused_vhosts", paused_vhosts_json(state.paused_vhosts))
    default_check, checks, states = _health(ctx, doc, {b.name for b in backends})
    result = Definitions(
        default_check=default_check,
        health_checks=checks,
        backend_states=states,
        paused_vhosts=tuple(sorted(set(paused))),
        tls=tuple(tls.items()),
        tls_given=tuple(given),
        default_limits=default_limits,
        vhost_limits=vhost_limits,
        auth=auth,
        datacenter=doc.get("datacenter", state.datacenter),
        backends=tuple(backends),
        farms=tuple(farms),
        mappings=tuple(mappings),
        default_farm=doc.get("default_farm", state.default_farm),
        listeners=listeners,
    )
    _check(ctx, result)
    return result


def _health(
    ctx: Context, doc: dict[str, Any], backends: set[str]
) -> tuple[
    CheckSettings | None,
    tuple[tuple[str, CheckSettings], ...],
    tuple[tuple[str, BackendState], ...],
]:
    """The document's health part (else the current one, less the backends it removes)."""
    state = ctx.state
    if "health" not in doc:
        return (
            state.default_health_check,
            tuple((n, c) for n, c in sorted(state.health_checks.items()) if n in backends),
            tuple((n, s) for n, s in sorted(state.backend_states.items()) if n in backends),
        )
    part = doc["health"]
    for section in ("checks", "states"):
        for name in part[section]:
            if name not in backends:
                raise InvalidArgument(f"health.{section}: backend {name!r} is not defined")
    try:
        default = None if part["default_check"] is None else check_from_json(part["default_check"])
        checks = tuple((n, check_from_json(c)) for n, c in sorted(part["checks"].items()))
    except AmqpproxError as error:
        raise InvalidArgument(f"health: {error.message}") from error
    states = tuple(
        (n, BackendState(word))
        for n, word in sorted(part["states"].items())
        if word != BackendState.READY.value
    )
    return default, checks, states


def _check(ctx: Context, defs: Definitions) -> None:
    """Build ``defs`` on a scratch state, so that applying it to the live one cannot fail."""
    scratch = ProxyState()
    scratch.set_datacenter(defs.datacenter)
    for backend in defs.backends:
        scratch.add_backend(backend)
    for index, farm in enumerate(defs.farms):
        try:
            scratch.set_farm(farm)
        except AmqpproxError as error:
            raise InvalidArgument(f"farm {farm.name!r} (farms.{index}): {error.message}") from error
    # As MAP BACKEND, a mapping may name a backend that does not exist (it routes nowhere);
    # but one the document deletes while a mapping keeps it would be refused half-way.
    kept = {b.name for b in defs.backends}
    for mapping in defs.mappings:
        if (
            mapping.kind == "backend"
            and mapping.target not in kept
            and mapping.target in ctx.state.backends
        ):
            raise InvalidArgument(
                f"mapping {mapping.vhost!r} names backend {mapping.target!r}, "
                "which the document removes"
            )
