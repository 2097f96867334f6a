"""Model values <-> the definitions document's JSON, and ``export`` of the whole configuration.

Each ``*_json`` gives the JSON a REST resource and the document show for one value;
each ``*_from_json`` builds the value from a body its schema (``schema``) loaded.
Pure functions over the model and the Context; no HTTP, no I/O. Must not import
``proxy`` or ``admin``.
"""

from __future__ import annotations

from collections.abc import Mapping as AbstractMapping
from typing import Any

from amqpprox import __version__
from amqpprox.core import tls_ops
from amqpprox.core.backend_status import BackendState
from amqpprox.core.context import Context
from amqpprox.core.health import CheckSettings
from amqpprox.core.model import (
    LIMIT_FIELDS,
    AuthConfig,
    Backend,
    Farm,
    Limits,
    ListenerSpec,
    Mapping,
)
from amqpprox.core.tls import DIRECTIONS, FILE_FIELDS, VERIFY_MODES, VERIFY_NONE, TlsSettings


def proxy_protocol_json(version: int) -> bool | int:
    """Off and v1 as the booleans clients have always seen; v2 as ``2``."""
    return version if version == 2 else version == 1


def backend_json(backend: Backend) -> dict[str, Any]:
    return {
        "name": backend.name,
        "datacenter": backend.datacenter,
        "host": backend.host,
        "port": backend.port,
        "dns": backend.dns,
        "proxy_protocol": proxy_protocol_json(backend.proxy_protocol),
        "tls": backend.tls,
        "stream_port": backend.stream_port,
    }


def farm_json(farm: Farm) -> dict[str, Any]:
    return {
        "name": farm.name,
        "selector": farm.selector,
        "backends": list(farm.members),
        "partitions": list(farm.partitions),
    }


def mapping_json(mapping: Mapping) -> dict[str, Any]:
    return {"vhost": mapping.vhost, mapping.kind: mapping.target}


def listener_json(spec: ListenerSpec) -> dict[str, Any]:
    return {
        "port": spec.port,
        "address": spec.host,
        "tls": spec.tls,
        "proxy_protocol": spec.proxy_protocol,
        "protocol": spec.protocol,
        "node": spec.node,
    }


def tls_json(settings: TlsSettings) -> dict[str, Any]:
    """One direction's settings; ``verify_mode`` in the original's order, ``[]`` for NONE."""
    return {
        **{name: getattr(settings, name) for name in FILE_FIELDS},
        "verify_mode": [mode for mode in VERIFY_MODES if mode in settings.verify_mode],
        "ciphers": settings.ciphers,
    }


def tls_from_json(data: AbstractMapping[str, Any]) -> TlsSettings:
    """Settings from a loaded ``TlsFields`` body (NONE among the modes means nothing)."""
    return TlsSettings(
        **{name: data.get(name) for name in FILE_FIELDS},
        verify_mode=frozenset(data.get("verify_mode", ())) - {VERIFY_NONE},
        ciphers=data.get("ciphers"),
    )


def all_tls_json(ctx: Context) -> dict[str, Any]:
    return {d.lower(): tls_json(tls_ops.tls_settings(ctx, d)) for d in DIRECTIONS}


def limits_json(limits: Limits, *, vhost: bool = False) -> dict[str, Any]:
    """Every limit, null when not set (a vhost's have no total_connections)."""
    return {
        name: getattr(limits, name)
        for name in LIMIT_FIELDS
        if not (vhost and name == "total_connections")
    }


def limits_from_json(data: AbstractMapping[str, Any]) -> Limits:
    return Limits(**{name: data.get(name) for name in LIMIT_FIELDS})


def all_limits_json(default: Limits, vhosts: AbstractMapping[str, Limits]) -> dict[str, Any]:
    return {
        "default": limits_json(default),
        "vhosts": {v: limits_json(vhosts[v], vhost=True) for v in sorted(vhosts)},
    }


def auth_json(auth: AuthConfig) -> dict[str, Any]:
    if not auth.service:
        return {"mode": "always_allow"}
    return {
        "mode": "service",
        "host": auth.host,
        "port": auth.port,
        "target": auth.target,
        "format": auth.format,
        "url": auth.url,
    }


def auth_from_json(data: AbstractMapping[str, Any]) -> AuthConfig:
    if data["mode"] != "service":
        return AuthConfig()
    return AuthConfig(data["host"], data["port"], data["target"], data.get("format", "protobuf"))


def export(ctx: Context) -> dict[str, Any]:
    """The whole configuration, canonically ordered (by name, vhost, port)."""
    state = ctx.state
    return {
        "amqpprox_version": __version__,
        "datacenter": state.datacenter,
        "backends": [backend_json(state.backends[n]) for n in sorted(state.backends)],
        "farms": [farm_json(state.farms[n]) for n in sorted(state.farms)],
        "mappings": [mapping_json(state.mappings[v]) for v in sorted(state.mappings)],
        "default_farm": state.default_farm,
        "listeners": [
            listener_json(s) for s in sorted(ctx.listeners.specs(), key=lambda s: s.port)
        ],
        "limits": all_limits_json(state.default_limits, state.vhost_limits),
        "auth": auth_json(state.auth),
        "tls": all_tls_json(ctx),
        "paused_vhosts": paused_vhosts_json(state.paused_vhosts),
        "health": health_json(
            state.default_health_check, state.health_checks, state.backend_states
        ),
    }


def paused_vhosts_json(paused: AbstractMapping[str, bool]) -> list[str]:
    """The vhosts paused (VHOST PAUSE), sorted; unpaused and merely opened ones are not."""
    return sorted(v for v, is_paused in paused.items() if is_paused)


def check_from_json(data: AbstractMapping[str, Any]) -> CheckSettings:
    """Check settings from a loaded ``HealthCheckFields`` body (left-out values default)."""
    return CheckSettings.given(
        data["interval_ms"], data.get("timeout_ms"), data.get("rise"), data.get("fall")
    )


def health_json(
    default: CheckSettings | None,
    checks: AbstractMapping[str, CheckSettings],
    states: AbstractMapping[str, BackendState],
) -> dict[str, Any]:
    """Backend states other than ready and check settings, by backend name."""
    return {
        "default_check": None if default is None else default.as_dict(),
        "checks": {name: checks[name].as_dict() for name in sorted(checks)},
        "states": {
            name: states[name].value
            for name in sorted(states)
            if states[name] is not BackendState.READY
        },
    }
