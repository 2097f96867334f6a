"""marshmallow schemas for every REST request body and query (mirrors openapi.yaml).

The item schemas of the definitions document (``core.definitions``) are the bodies of
the single-resource PUTs, with the name optional (the path carries it; if the body
repeats it, it must agree). Unknown fields are refused. A PUT replaces the whole
resource: an optional field left out takes its default, it is not kept from the resource
replaced; a field without a safe default (a listener's ``tls``) is required. Values are
validated again by ``core.model`` when the operation builds its objects, as for every
front end.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from amqpprox.core.definitions import (
    MAX_NAME,
    BackendFields,
    FarmFields,
    ListenerFields,
    StrictInt,
    TargetFields,
)
from amqpprox.core.definitions.schema import StrictBool
from amqpprox.core.operations import SESSION_SORT_KEYS
from amqpprox.core.sessions import SessionState

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100


class BackendBody(BackendFields):
    name = fields.String(validate=validate.Length(min=1, max=MAX_NAME))


class FarmBody(FarmFields):
    name = fields.String(validate=validate.Length(min=1, max=MAX_NAME))


class MappingBody(TargetFields):
    vhost = fields.String(validate=validate.Length(min=1, max=MAX_NAME))


class DefaultFarmBody(Schema):
    farm = fields.String(required=True, validate=validate.Length(min=1, max=MAX_NAME))


class ListenerBody(ListenerFields):
    """A PUT states the listener whole: ``tls`` (LISTEN START or START_SECURE) has no
    default, so a body that leaves it out cannot turn a TLS listener plain by accident;
    ``proxy_protocol`` left out is false (LISTEN START[_SECURE] without PROXY)."""

    port = StrictInt(validate=validate.Range(min=1, max=65535))
    tls = StrictBool(required=True)


class DatacenterBody(Schema):
    name = fields.String(required=True, validate=validate.Length(max=MAX_NAME))


class DisconnectBody(Schema):
    reason = fields.String(validate=validate.Length(max=MAX_NAME))


class _QueryBool(fields.Boolean):
    truthy = {"true", "1"}
    falsy = {"false", "0"}


class SessionsQuery(Schema):
    """Filters, sorting and paging of GET /api/v1/sessions (RabbitMQ's parameter names)."""

    vhost = fields.String()
    backend = fields.String()
    source = fields.String()
    user = fields.String()
    state = fields.String(validate=validate.OneOf([s.value for s in SessionState]))
    sort = fields.String(load_default="id", validate=validate.OneOf(list(SESSION_SORT_KEYS)))
    sort_reverse = _QueryBool(load_default=False)
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    page_size = fields.Integer(
        load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(min=1, max=MAX_PAGE_SIZE)
    )


class DryRunQuery(Schema):
    dry_run = _QueryBool(load_default=False)


def query_dict(query: Any) -> dict[str, str]:
    """A MultiDict of query parameters as a plain dict (the last value of a repeated key)."""
    return {key: query.getall(key)[-1] for key in query}
