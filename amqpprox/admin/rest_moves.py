"""REST for paced evictions and vhost migrations (``core.moves``).

``POST /api/v1/vhosts/{vhost}/migrate`` (``{"farm": ...}`` or ``{"backend": ...}``, optional
``per_second``) and ``POST /api/v1/backends/{name}/evict`` (optional ``per_second``)
start a job and answer 202 with it at once; ``GET /api/v1/migrations[/{id}]``,
``GET /api/v1/evictions[/{id}]`` show progress; ``POST .../{id}/cancel`` stops one.
Errors are ``admin.rest``'s: a bad body 400, an unknown vhost, backend or id 404, a
target that does not exist or has no ready member that is up (or a job already over)
409. These routes must be added before ``RestApi``'s (its ``/vhosts/{vhost}/{action}``
would take ``migrate``). Never imports the data plane.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from amqpprox.admin.rest import VERSION_PATH, id_of, load_body
from amqpprox.core import moves
from amqpprox.core.context import Context
from amqpprox.core.definitions import MAX_NAME, StrictInt
from amqpprox.core.eviction import MAX_PER_SECOND, Eviction
from amqpprox.core.migration import Migration
from amqpprox.core.state import Target

_PACE = {"validate": validate.Range(min=1, max=MAX_PER_SECOND)}


class EvictBody(Schema):
    per_second = StrictInt(**_PACE)


class MigrateBody(Schema):
    farm = fields.String(validate=validate.Length(min=1, max=MAX_NAME))
    backend = fields.String(validate=validate.Length(min=1, max=MAX_NAME))
    per_second = StrictInt(**_PACE)

    @validates_schema
    def _one_target(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("farm" in data) == ("backend" in data):
            raise ValidationError("give exactly one of farm and backend", "_schema")


def _target(target: Target | None) -> dict[str, str] | None:
    return None if target is None else {"kind": target.kind, "name": target.target}


def migration_json(m: Migration) -> dict[str, Any]:
    return {
        "id": m.id,
        "state": m.state.value,
        "vhost": m.vhost,
        "from": _target(m.source),
        "to": _target(m.target),
        "per_second": m.per_second,
        "sessions_total": m.sessions_total,
        "sessions_moved": m.sessions_moved,
        "started_at": m.started_at,
        "finished_at": m.finished_at,
        "error": m.error,
    }


def eviction_json(e: Eviction) -> dict[str, Any]:
    return {
        "id": e.id,
        "state": e.state.value,
        "backend": e.backend,
        "reason": e.reason.value,
        "per_second": e.per_second,
        "sessions_total": e.total,
        "sessions_done": e.done,
        "sessions_closed": e.evicted,
        "started_at": e.started_at,
        "finished_at": e.finished_at,
        "error": e.error,
    }


class MovesApi:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        p = VERSION_PATH  # relative to the REST sub-app's mount
        return [
            web.post(f"{p}/vhosts/{{vhost}}/migrate", self.migrate),
            web.get(f"{p}/migrations", self.list_migrations),
            web.get(f"{p}/migrations/{{id}}", self.get_migration),
            web.post(f"{p}/migrations/{{id}}/cancel", self.cancel_migration),
            web.post(f"{p}/backends/{{name}}/evict", self.evict),
            web.get(f"{p}/evictions", self.list_evictions),
            web.get(f"{p}/evictions/{{id}}", self.get_eviction),
            web.post(f"{p}/evictions/{{id}}/cancel", self.cancel_eviction),
        ]

    async def migrate(self, request: web.Request) -> web.Response:
        body = await load_body(request, MigrateBody())
        kind = "farm" if "farm" in body else "backend"
        migration = moves.migrate_vhost(
            self.ctx, request.match_info["vhost"], kind, body[kind], body.get("per_second")
        )
        return web.json_response(migration_json(migration), status=202)

    async def list_migrations(self, request: web.Request) -> web.Response:
        return web.json_response([migration_json(m) for m in moves.list_migrations(self.ctx)])

    async def get_migration(self, request: web.Request) -> web.Response:
        migration = moves.get_migration(self.ctx, id_of(request, "migration"))
        return web.json_response(migration_json(migration))

    async def cancel_migration(self, request: web.Request) -> web.Response:
        migration_id = id_of(request, "migration")
        await load_body(request, EvictBody(only=()), required=False)
        return web.json_response(migration_json(moves.cancel_migration(self.ctx, migration_id)))

    async def evict(self, request: web.Request) -> web.Response:
        body = await load_body(request, EvictBody(), required=False)
        eviction = moves.evict_backend(self.ctx, request.match_info["name"], body.get("per_second"))
        return web.json_response(eviction_json(eviction), status=202)

    async def list_evictions(self, request: web.Request) -> web.Response:
        return web.json_response([eviction_json(e) for e in moves.list_evictions(self.ctx)])

    async def get_eviction(self, request: web.Request) -> web.Response:
        eviction = moves.get_eviction(self.ctx, id_of(request, "eviction"))
        return web.json_response(eviction_json(eviction))

    async def cancel_eviction(self, request: web.Request) -> web.Response:
        eviction_id = id_of(request, "eviction")
        await load_body(request, EvictBody(only=()), required=False)
        return web.json_response(eviction_json(moves.cancel_eviction(self.ctx, eviction_id)))
