"""The definitions document's structure: marshmallow schemas and strict JSON field types.

The REST front end reuses the parts (``BackendFields``, ``TlsFields``, ...) for its
request bodies. ``load_schema`` turns a problem into an ``InvalidArgument`` naming its
path. Only the shape is checked here; the values are validated by ``core.model``.
Imports nothing of ours but ``core.model``, ``core.tls`` and ``errors``.
"""

from __future__ import annotations

from collections.abc import Mapping as AbstractMapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from amqpprox.core.model import (
    ALL_INTERFACES,
    LISTENER_PROTOCOLS,
    MAX_BYTES_PER_SECOND,
    MAX_COUNT,
    ROUND_ROBIN,
)
from amqpprox.core.tls import VERIFY_MODES
from amqpprox.errors import InvalidArgument

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
    # RabbitMQ Streams: the broker's rabbitmq_stream port (stream listeners connect there).
    stream_port = StrictInt(load_default=5552, validate=validate.Range(min=1, max=65535))


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
    # The bind address (validated by ``model.listen_address``); every interface if left out.
    address = fields.String(load_default=ALL_INTERFACES, validate=validate.Length(max=MAX_NAME))
    # "stream": RabbitMQ Streams clients; ``node``: a stream node listener's backend.
    protocol = fields.String(load_default="amqp", validate=validate.OneOf(LISTENER_PROTOCOLS))
    node = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=MAX_NAME)
    )


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


class HealthCheckFields(Schema):
    """Active health check settings (core.health.CheckSettings); left-out values default."""

    interval_ms = StrictInt(required=True, validate=validate.Range(min=10, max=3_600_000))
    timeout_ms = StrictInt(validate=validate.Range(min=1, max=600_000))
    rise = StrictInt(validate=validate.Range(min=1, max=1000))
    fall = StrictInt(validate=validate.Range(min=1, max=1000))


class BackendStateFields(Schema):
    state = fields.String(required=True, validate=validate.OneOf(["ready", "drain", "maint"]))


class HealthDef(Schema):
    """Backend states and check settings; a backend left out is ready / not checked."""

    default_check = fields.Nested(HealthCheckFields, allow_none=True, load_default=None)
    checks = fields.Dict(keys=_name(), values=fields.Nested(HealthCheckFields), load_default=dict)
    states = fields.Dict(
        keys=_name(),
        values=fields.String(validate=validate.OneOf(["ready", "drain", "maint"])),
        load_default=dict,
    )


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
    # The vhosts whose new sessions are held (VHOST PAUSE); every other vhost is unpaused.
    paused_vhosts = fields.List(fields.String(validate=validate.Length(min=1, max=MAX_NAME)))
    # Backend states and active health check settings (core.backend_status, core.health).
    health = fields.Nested(HealthDef)


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
