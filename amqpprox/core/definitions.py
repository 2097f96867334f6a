"""The whole configuration as one JSON document: export, validate, diff and apply atomically.

A definitions document holds the datacenter, backends, farms, vhost mappings, the
default farm, the listeners (with their TLS and PROXY modes), the limits, the auth
service and the TLS settings of both directions (``GET /api/v1/definitions``,
``amqpprox --definitions``).
Applying one is all or nothing: the document is parsed, its backends resolved, its TLS
contexts built (and thrown away) and the resulting configuration checked on a scratch
``ProxyState`` first; then the TLS contexts are swapped in and listeners started (both
undone if one cannot bind); only then is the live state changed, in one synchronous
step the event loop cannot interleave with a session. A top-level key the
document leaves out keeps that part of the configuration as it is.

The document's structure is described by marshmallow schemas here (the REST front end
reuses them for its request bodies); the values are validated by ``core.model``.
No HTTP and no sockets here: I/O goes through ``core.operations``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping as AbstractMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from amqpprox import __version__
from amqpprox.core import operations as ops
from amqpprox.core.context import Context
from amqpprox.core.limits import limits_of
from amqpprox.core.model import (
    LIMIT_FIELDS,
    MAX_BYTES_PER_SECOND,
    MAX_COUNT,
    ROUND_ROBIN,
    AuthConfig,
    Backend,
    Farm,
    Limits,
    ListenerSpec,
    Mapping,
)
from amqpprox.core.state import ProxyState
from amqpprox.core.tls import (
    DIRECTIONS,
    FILE_FIELDS,
    VERIFY_MODES,
    VERIFY_NONE,
    Direction,
    TlsSettings,
)
from amqpprox.errors import AmqpproxError, InvalidArgument, InvalidState

MAX_NAME = 255


# -- strict JSON fields (marshmallow would otherwise take "true", 1 or 5.0) ----------------
class StrictBool(fields.Boolean):
    """A JSON boolean and nothing else."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StrictInt(fields.Integer):
    """A JSON integer (not a boolean, a float or a string)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return value


class ProxyProtocolVersion(fields.Field[int]):
    """A backend's SEND-PROXY setting: ``false``/``true`` (off / v1, the first form) or ``1``/``2``.

    Loads as the model's int (0, 1, 2); ``0`` is accepted as off too.
    """

    default_error_messages = {"invalid": "Must be false, true (PROXY v1), 1 or 2."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            return 1 if value else 0
        if isinstance(value, int) and value in (0, 1, 2):
            return value
        raise self.make_error("invalid")


def proxy_protocol_json(version: int) -> bool | int:
    """Off and v1 as the booleans clients have always seen; v2 as ``2``."""
    return version if version == 2 else version == 1


def _name(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Length(min=1, max=MAX_NAME), **kwargs)


# -- the document's parts --------------------------------------------------------------------
class BackendFields(Schema):
    datacenter = fields.String(required=True, validate=validate.Length(max=MAX_NAME))
    host = fields.String(required=True, validate=validate.Length(min=1, max=MAX_NAME))
    port = StrictInt(required=True, validate=validate.Range(min=1, max=65535))
    dns = StrictBool(load_default=False)
    proxy_protocol = ProxyProtocolVersion(load_default=0)
    tls = StrictBool(load_default=False)


class BackendDef(BackendFields):
    name = _name(required=True)


class FarmFields(Schema):
    selector = fields.String(load_default=ROUND_ROBIN)
    backends = fields.List(_name(), required=True, validate=validate.Length(min=1))
    partitions = fields.List(fields.String(), load_default=list)


class FarmDef(FarmFields):
    name = _name(required=True)


class TargetFields(Schema):
    """A vhost's target: exactly one of a farm or a backend."""

    farm = _name()
    backend = _name()

    @validates_schema
    def _one_target(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("farm" in data) == ("backend" in data):
            raise ValidationError("give exactly one of farm or backend", "_schema")


class MappingDef(TargetFields):
    vhost = fields.String(required=True, validate=validate.Length(min=1, max=MAX_NAME))


class ListenerFields(Schema):
    tls = StrictBool(load_default=False)
    proxy_protocol = StrictBool(load_default=False)  # clients send a PROXY header first


class ListenerDef(ListenerFields):
    port = StrictInt(required=True, validate=validate.Range(min=1, max=65535))


def _count(**kwargs: Any) -> StrictInt:
    return StrictInt(allow_none=True, validate=validate.Range(min=0, max=MAX_COUNT), **kwargs)


def _rate(**kwargs: Any) -> StrictInt:
    return StrictInt(
        allow_none=True, validate=validate.Range(min=1, max=MAX_BYTES_PER_SECOND), **kwargs
    )


class VhostLimitsFields(Schema):
    """A vhost's own limits; a field left out or null is not set (the default applies)."""

    conn_rate = _count()
    conn_rate_alarm = _count()
    data_rate = _rate()
    data_rate_alarm = _rate()
    connections = _count()
    out_data_rate = _rate()


class DefaultLimitsFields(VhostLimitsFields):
    total_connections = _count()


class LimitsDef(Schema):
    default = fields.Nested(DefaultLimitsFields, load_default=dict)
    vhosts = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=MAX_NAME)),
        values=fields.Nested(VhostLimitsFields),
        load_default=dict,
    )


class AuthFields(Schema):
    """AUTH: ``always_allow``, or ``service`` with where to POST and in which format."""

    mode = fields.String(required=True, validate=validate.OneOf(["always_allow", "service"]))
    host = fields.String(validate=validate.Length(min=1, max=MAX_NAME))
    port = StrictInt(validate=validate.Range(min=1, max=65535))
    target = fields.String(validate=validate.Length(min=1, max=2048))
    format = fields.String(load_default="protobuf", validate=validate.OneOf(["protobuf", "json"]))
    url = fields.String()  # informational (as GET shows it); ignored

    @validates_schema
    def _service_needs_address(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["mode"] == "service":
            missing = [k for k in ("host", "port", "target") if k not in data]
            if missing:
                raise ValidationError(f"mode service needs {', '.join(missing)}", "_schema")


def _tls_path() -> fields.String:
    return fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1))


class TlsFields(Schema):
    """One direction's TLS settings, whole: a file left out or null is not used."""

    key_file = _tls_path()
    cert_chain_file = _tls_path()
    rsa_key_file = _tls_path()
    tmp_dh_file = _tls_path()
    ca_cert_file = _tls_path()
    verify_mode = fields.List(
        fields.String(validate=validate.OneOf(VERIFY_MODES)), load_default=list
    )
    ciphers = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1))


class TlsDef(Schema):
    """Both directions; one left out keeps its settings."""

    ingress = fields.Nested(TlsFields)
    egress = fields.Nested(TlsFields)


class DefinitionsSchema(Schema):
    amqpprox_version = fields.String()  # informational; ignored on import
    datacenter = fields.String(validate=validate.Length(max=MAX_NAME))
    backends = fields.List(fields.Nested(BackendDef))
    farms = fields.List(fields.Nested(FarmDef))
    mappings = fields.List(fields.Nested(MappingDef))
    default_farm = _name(allow_none=True)
    listeners = fields.List(fields.Nested(ListenerDef))
    limits = fields.Nested(LimitsDef)
    auth = fields.Nested(AuthFields)
    tls = fields.Nested(TlsDef)


def describe_validation_error(error: ValidationError) -> str:
    """marshmallow's nested messages as ``path: problem`` lines (``backends.0.port: ...``)."""
    parts: list[str] = []

    def walk(prefix: str, messages: Any) -> None:
        if isinstance(messages, AbstractMapping):
            for key, value in messages.items():
                label = prefix if key == "_schema" else f"{prefix}.{key}" if prefix else str(key)
                walk(label, value)
        elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
            parts.append(f"{prefix or 'document'}: {' '.join(messages)}")
        elif isinstance(messages, list):
            for index, value in enumerate(messages):
                walk(f"{prefix}.{index}", value)
        else:
            parts.append(f"{prefix or 'document'}: {messages}")

    walk("", error.messages)
    return "; ".join(parts)


def load_schema(schema: Schema, data: object) -> dict[str, Any]:
    """Validate ``data`` against ``schema``; a problem is an ``InvalidArgument`` naming it."""
    if not isinstance(data, dict):
        raise InvalidArgument("the body must be a JSON object")
    try:
        loaded = schema.load(data)
    except ValidationError as error:
        raise InvalidArgument(describe_validation_error(error)) from error
    assert isinstance(loaded, dict)
    return loaded


# -- export ----------------------------------------------------------------------------------
def backend_json(backend: Backend) -> dict[str, Any]:
    return {
        "name": backend.name,
        "datacenter": backend.datacenter,
        "host": backend.host,
        "port": backend.port,
        "dns": backend.dns,
        "proxy_protocol": proxy_protocol_json(backend.proxy_protocol),
        "tls": backend.tls,
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
    return {"port": spec.port, "tls": spec.tls, "proxy_protocol": spec.proxy_protocol}


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
    return {d.lower(): tls_json(ops.tls_settings(ctx, d)) for d in DIRECTIONS}


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
    }


# -- validate --------------------------------------------------------------------------------
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
                )
                if not item["dns"]:
                    ip = await ops.resolve_first(item["host"], item["port"])
                    probe = Backend(
                        probe.name, probe.datacenter, probe.host, probe.port, ip,
                        probe.proxy_protocol, probe.tls,
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
            ListenerSpec(item["port"], item["tls"], proxy_protocol=item["proxy_protocol"])
            for item in doc["listeners"]
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

    tls = {d: ops.tls_settings(ctx, d) for d in DIRECTIONS}
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

    result = Definitions(
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


# -- diff --------------------------------------------------------------------------------------
def _section_diff(
    old: list[dict[str, Any]], new: list[dict[str, Any]], key: str
) -> dict[str, list[str]]:
    before = {str(item[key]): item for item in old}
    after = {str(item[key]): item for item in new}
    return {
        "added": sorted(k for k in after if k not in before),
        "removed": sorted(k for k in before if k not in after),
        "changed": sorted(k for k in after if k in before and after[k] != before[k]),
    }


def diff(ctx: Context, defs: Definitions) -> dict[str, Any]:
    """What applying ``defs`` would change, section by section."""
    current = export(ctx)
    target = defs.as_json()
    listeners = (
        current["listeners"]
        if defs.listeners is None
        else [listener_json(s) for s in sorted(defs.listeners, key=lambda s: s.port)]
    )
    changes: dict[str, Any] = {
        "backends": _section_diff(current["backends"], target["backends"], "name"),
        "farms": _section_diff(current["farms"], target["farms"], "name"),
        "mappings": _section_diff(current["mappings"], target["mappings"], "vhost"),
        "listeners": _section_diff(current["listeners"], listeners, "port"),
    }
    for scalar in ("datacenter", "default_farm", "limits", "auth", "tls"):
        changes[scalar] = (
            None
            if current[scalar] == target[scalar]
            else {"from": current[scalar], "to": target[scalar]}
        )
    return changes


# -- apply -------------------------------------------------------------------------------------
async def _apply_listeners(
    ctx: Context, wanted: tuple[ListenerSpec, ...]
) -> list[tuple[int, ListenerSpec | None]]:
    """Start (or switch the mode of) the listeners ``wanted``; returns how to undo it."""
    current = {s.port: s for s in ctx.listeners.specs()}
    undo: list[tuple[int, ListenerSpec | None]] = []
    try:
        for spec in wanted:
            before = current.get(spec.port)
            if before is not None and (before.tls, before.proxy_protocol) == (
                spec.tls,
                spec.proxy_protocol,
            ):
                continue
            await ops.put_listener(ctx, spec.port, tls=spec.tls, proxy_protocol=spec.proxy_protocol)
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
    tls_before = {d: ops.tls_settings(ctx, d) for d in DIRECTIONS}
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
        raise InvalidState("the configuration changed while the document was applied; retry")
    _commit(ctx, defs)
    if any(wanted_tls[d] != tls_before[d] for d in defs.tls_given):
        ctx.state.touch()
    limits_of(ctx).changed()  # live sessions take up the document's data rates
    if defs.listeners is not None:
        wanted_ports = {s.port for s in defs.listeners}
        for spec in ctx.listeners.specs():
            if spec.port not in wanted_ports:
                await ctx.listeners.stop(spec.port)
    return {"dry_run": False, "changes": changes}


async def load_file(ctx: Context, path: str) -> dict[str, Any]:
    """Apply a definitions file (``amqpprox --definitions``); problems name the file."""
    try:
        text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
        document = json.loads(text)
    except OSError as error:
        raise InvalidArgument(f"definitions file {path}: {error.strerror or error}") from error
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"definitions file {path}: not valid JSON: {error}") from error
    try:
        return await apply(ctx, document)
    except AmqpproxError as error:
        raise type(error)(f"definitions file {path}: {error.message}") from error
