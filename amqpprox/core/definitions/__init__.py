"""The whole configuration as one JSON document: export, validate, diff and apply atomically.

A definitions document holds the datacenter, backends, farms, vhost mappings, the
default farm, the listeners (with their addresses, TLS and PROXY modes), the limits, the auth
service, the TLS settings of both directions, and the backend states and health checks
(``GET /api/v1/definitions``, ``amqpprox --definitions``). A top-level key the document
leaves out keeps that part of the configuration as it is.

One module per job: ``schema`` (the document's marshmallow schemas, reused by REST for
request bodies), ``codec`` (model values <-> JSON, ``export``), ``prepare`` (a document
to a checked ``Definitions``), ``diff`` (what applying it would change) and ``apply``
(all or nothing; ``core.reload`` reads the file). This package re-exports what other
modules use.
No HTTP and no sockets here: I/O goes through ``core.operations``.
"""

from __future__ import annotations

from amqpprox.core.definitions.apply import apply
from amqpprox.core.definitions.codec import (
    auth_from_json,
    auth_json,
    backend_json,
    export,
    farm_json,
    limits_from_json,
    limits_json,
    listener_json,
    mapping_json,
    tls_from_json,
    tls_json,
)
from amqpprox.core.definitions.diff import diff
from amqpprox.core.definitions.prepare import Definitions, prepare
from amqpprox.core.definitions.schema import (
    MAX_NAME,
    AuthFields,
    BackendFields,
    BackendStateFields,
    DefaultLimitsFields,
    DefinitionsSchema,
    FarmFields,
    HealthCheckFields,
    ListenerFields,
    StrictInt,
    TargetFields,
    TlsFields,
    VhostLimitsFields,
    describe_validation_error,
    load_schema,
)

__all__ = [
    "MAX_NAME",
    "AuthFields",
    "BackendFields",
    "BackendStateFields",
    "DefaultLimitsFields",
    "Definitions",
    "DefinitionsSchema",
    "FarmFields",
    "HealthCheckFields",
    "ListenerFields",
    "StrictInt",
    "TargetFields",
    "TlsFields",
    "VhostLimitsFields",
    "apply",
    "auth_from_json",
    "auth_json",
    "backend_json",
    "describe_validation_error",
    "diff",
    "export",
    "farm_json",
    "limits_from_json",
    "limits_json",
    "listener_json",
    "load_schema",
    "mapping_json",
    "prepare",
    "tls_from_json",
    "tls_json",
]
