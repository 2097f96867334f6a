"""The REST admin API under /api/v1: a second front end over ``core.operations``.

``admin.app`` mounts it as a sub-app at ``MOUNT`` (/api), with ``error_middleware`` as
its middleware; the routes here (and in ``rest_limits``, ``rest_tls``) are relative to
that mount (``VERSION_PATH`` + ...). The bearer token is checked by the root app.

Every handler validates its input with a marshmallow schema (``admin.schemas``), calls
the same operation the control socket calls and renders JSON. Errors are one JSON shape,
``{"error": code, "message": text}``: the typed errors map to their ``http_status``
(400/404/409), malformed JSON to 400, a wrong content type to 415, an oversized body to
413, an unknown route to 404 and an unexpected exception (a bug, logged) to 500. Text
must be valid Unicode (``admin.text``): a JSON string, path parameter, query parameter
or header holding a lone surrogate or a byte that is not UTF-8 is a 400
``invalid_argument``, before any handler runs. Every mutating request that gets here is
logged (``admin.audit``): who, what, and the status it got.
Configuration responses carry the configuration version as their ETag; a configuration
write whose ``If-Match`` names another version gets 412. The contract is openapi.yaml,
served at /api/v1/openapi.yaml. This module never imports the data plane.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from marshmallow import Schema, ValidationError

from amqpprox.admin import audit, schemas
from amqpprox.admin.text import first_invalid, valid_text
from amqpprox.core import definitions
from amqpprox.core import operations as ops
from amqpprox.core.context import Context
from amqpprox.core.definitions import backend_json, farm_json, listener_json, mapping_json
from amqpprox.core.digits import ascii_digits
from amqpprox.core.health_ops import backend_status_json
from amqpprox.core.model import Backend
from amqpprox.core.sessions import SessionBase
from amqpprox.errors import AmqpproxError, NotFound

log = logging.getLogger("amqpprox.rest")

MOUNT = "/api"  # the sub-app serves every path under /api/: unknown ones get JSON errors too
VERSION_PATH = "/v1"  # the sub-app's routes start here
PREFIX = MOUNT + VERSION_PATH  # the path clients and openapi.yaml see
# Resources whose responses carry the configuration version, and whose writes honour If-Match.
CONFIG_PATHS = tuple(
    f"{PREFIX}/{name}"
    for name in (
        "backends",
        "farms",
        "mappings",
        "default-farm",
        "listeners",
        "datacenter",
        "definitions",
        "limits",
        "auth",
        "tls",
        "health-checks",
    )
)
WRITE_METHODS = frozenset({"PUT", "POST", "DELETE", "PATCH"})
JSON_TYPES = frozenset({"application/json"})
HTTP_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    411: "length_required",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
INVALID_TEXT = "invalid_argument"  # a value: the same code as any other bad value


class HttpProblem(Exception):
    """A request the REST layer itself refuses (content type, JSON syntax, preconditions)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def problem(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def etag(ctx: Context) -> str:
    return f'"{ctx.state.version}"'


def _is_config(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in CONFIG_PATHS)


def _if_match_ok(header: str, current: str) -> bool:
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == current for t in tags)


def check_text(request: web.Request) -> None:
    """Path parameters, query parameters and headers must be valid Unicode (400 if not)."""
    for where, items in (
        ("path parameter", request.match_info.items()),
        ("query parameter", request.query.items()),
        ("header", request.headers.items()),
    ):
        for key, value in items:
            if not (valid_text(key) and valid_text(value)):
                name = key if valid_text(key) else "?"
                raise HttpProblem(400, INVALID_TEXT, f"the {where} {name} is not valid UTF-8 text")


def error_middleware(ctx: Context) -> Any:
    """JSON errors, ETag, If-Match and the audit line for everything under /api/ (the REST
    sub-app's)."""

    @web.middleware
    async def rest_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(MOUNT + "/"):
            return await handler(request)  # /api itself is an unknown page, not the API's
        config = _is_config(request.path)
        try:
            check_text(request)
            if config and request.method in WRITE_METHODS:
                wanted = request.headers.get("If-Match")
                if wanted is not None and not _if_match_ok(wanted, etag(ctx)):
                    raise HttpProblem(
                        412,
                        "precondition_failed",
                        f"If-Match {wanted} does not match the configuration version {etag(ctx)}",
                    )
            response = await handler(request)
        except AmqpproxError as error:
            response = problem(error.http_status, error.code, error.message)
        except HttpProblem as error:
            response = problem(error.status, error.code, error.message)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            headers = {k: v for k, v in error.headers.items() if k in ("Allow",)}
            code = HTTP_ERROR_CODES.get(error.status, "http_error")
            response = problem(error.status, code, error.reason, **headers)
        except ConnectionError:
            raise  # the client went away, or missed its body deadline (admin.deadlines)
        except UnicodeError:  # text that slipped past the checks: the input's fault
            response = problem(400, INVALID_TEXT, "the request holds text that is not valid UTF-8")
        except Exception:  # a bug: logged with its traceback; the admin plane keeps serving
            log.exception("REST %s %s failed", request.method, request.path)
            response = problem(500, "internal_error", "internal error; see the proxy's log")
        if config:
            response.headers["ETag"] = etag(ctx)
        if request.method in WRITE_METHODS:
            audit.rest_change(
                request, response.status, token_configured=bool(ctx.settings.admin_token)
            )
        return response

    return rest_errors


# -- request helpers -----------------------------------------------------------------------
NO_BODY: dict[str, Any] = {}


async def read_body(request: web.Request, *, required: bool = True) -> object:
    """The request's JSON body; ``NO_BODY`` (an empty object) when none is sent nor required."""
    raw = await request.read() if request.can_read_body else b""
    if not raw:
        if required:
            raise HttpProblem(400, "invalid_body", "a JSON request body is required")
        return NO_BODY
    if request.content_type not in JSON_TYPES and not request.content_type.endswith("+json"):
        raise HttpProblem(
            415,
            "unsupported_media_type",
            f"the body must be application/json, not {request.content_type or 'untyped'}",
        )
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise HttpProblem(400, "invalid_json", f"the body is not valid JSON: {error}") from error
    where = first_invalid(document)
    if where is not None:
        raise HttpProblem(400, INVALID_TEXT, f"{where}: not valid Unicode text (a lone surrogate)")
    request[audit.BODY_KEY] = document
    return document


async def load_body(
    request: web.Request, schema: Schema, *, required: bool = True
) -> dict[str, Any]:
    return definitions.load_schema(schema, await read_body(request, required=required))


def load_query(request: web.Request, schema: Schema) -> dict[str, Any]:
    try:
        loaded = schema.load(schemas.query_dict(request.query))
    except ValidationError as error:
        raise HttpProblem(
            400, "invalid_argument", definitions.describe_validation_error(error)
        ) from error
    assert isinstance(loaded, dict)
    return loaded


def _same_name(body: dict[str, Any], key: str, value: str) -> None:
    if key in body and body[key] != value:
        raise HttpProblem(
            400, "invalid_argument", f"the body's {key} {body[key]!r} differs from the path's"
        )


def _port(request: web.Request) -> int:
    text = request.match_info["port"]
    if not ascii_digits(text) or not 1 <= int(text) <= 65535:
        raise HttpProblem(400, "invalid_argument", f"port must be 1..65535: {text!r}")
    return int(text)


def id_of(request: web.Request, kind: str) -> int:
    """The ``{id}`` of a route of ``kind`` (session, trace, migration, eviction); 404 for
    anything that cannot be an id."""
    text = request.match_info["id"]
    if not ascii_digits(text) or len(text) > 18:
        raise NotFound(f"{kind} {text!r} not found")
    return int(text)


def session_id_of(request: web.Request) -> int:
    return id_of(request, "session")


def backend_view(ctx: Context, backend: Backend) -> dict[str, Any]:
    """A backend as REST shows it: its definition, its state and its health."""
    return {**backend_json(backend), **backend_status_json(ctx, backend.name)}


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _endpoint(endpoint: tuple[str, int]) -> dict[str, Any]:
    return {"host": endpoint[0], "port": endpoint[1]}


def identity_json(session: SessionBase) -> dict[str, Any]:
    """A session's AMQP identity (``amqp.identity``): user, client, negotiated limits."""
    identity = session.identity
    return {
        "user": identity.user,
        "mechanism": identity.mechanism,
        "client_product": identity.product,
        "client_version": identity.version,
        "client_platform": identity.platform,
        "channel_max": identity.channel_max,
        "frame_max": identity.frame_max,
        "heartbeat": identity.heartbeat,
    }


def session_json(session: SessionBase, now: float) -> dict[str, Any]:
    """A session as REST shows it; idle times are seconds since the last read of each side."""
    return {
        "id": session.id,
        "vhost": session.vhost,
        "state": session.state.value,
        "paused": session.paused,
        "finished": session.finished,
        "auth_denied": session.auth_denied,
        "secure": session.secure,
        "connection_name": session.connection_name,
        "protocol": session.protocol,
        "client": _endpoint(session.client),
        "local": _endpoint(session.local),
        "egress_local": _endpoint(session.egress_local),
        "egress_remote": _endpoint(session.egress_remote),
        "backend": session.backend_name,
        "farm": session.farm_name,
        "started_at": session.started_at,
        "opened_at": session.opened_at,
        "closed_at": session.closed_at,
        "close_reason": session.close_reason.value if session.close_reason else None,
        "in_bytes": session.in_bytes,
        "in_frames": session.in_frames,
        "in_packets": session.in_packets,
        "out_bytes": session.out_bytes,
        "out_frames": session.out_frames,
        "out_packets": session.out_packets,
        "in_coalesce_waits": session.in_coalesce_waits,
        "out_coalesce_waits": session.out_coalesce_waits,
        "idle_in_seconds": max(0.0, now - session.last_in_at),
        "idle_out_seconds": max(0.0, now - session.last_out_at),
        **identity_json(session),
    }


Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RestApi:
    """The handlers, bound to the one Context."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        """Relative to the sub-app's mount (``MOUNT``)."""
        p = VERSION_PATH
        return [
            web.get(f"{p}/openapi.yaml", self.openapi),
            web.get(f"{p}/overview", self.overview),
            web.get(f"{p}/backends", self.list_backends),
            web.get(f"{p}/backends/{{name}}", self.get_backend),
            web.put(f"{p}/backends/{{name}}", self.put_backend),
            web.delete(f"{p}/backends/{{name}}", self.delete_backend),
            web.get(f"{p}/farms", self.list_farms),
            web.get(f"{p}/farms/{{name}}", self.get_farm),
            web.put(f"{p}/farms/{{name}}", self.put_farm),
            web.delete(f"{p}/farms/{{name}}", self.delete_farm),
            web.get(f"{p}/mappings", self.list_mappings),
            web.get(f"{p}/mappings/{{vhost}}", self.get_mapping),
            web.put(f"{p}/mappings/{{vhost}}", self.put_mapping),
            web.delete(f"{p}/mappings/{{vhost}}", self.delete_mapping),
            web.get(f"{p}/default-farm", self.get_default_farm),
            web.put(f"{p}/default-farm", self.put_default_farm),
            web.delete(f"{p}/default-farm", self.delete_default_farm),
            web.get(f"{p}/listeners", self.list_listeners),
            web.put(f"{p}/listeners/{{port}}", self.put_listener),
            web.delete(f"{p}/listeners/{{port}}", self.delete_listener),
            web.get(f"{p}/sessions", self.list_sessions),
            web.get(f"{p}/sessions/{{id}}", self.get_session),
            web.post(f"{p}/sessions/{{id}}/{{action}}", self.session_action),
            web.get(f"{p}/vhosts", self.list_vhosts),
            web.post(f"{p}/vhosts/{{vhost}}/{{action}}", self.vhost_action),
            web.get(f"{p}/datacenter", self.get_datacenter),
            web.put(f"{p}/datacenter", self.put_datacenter),
            web.get(f"{p}/definitions", self.get_definitions),
            web.put(f"{p}/definitions", self.put_definitions),
        ]

    # -- contract and overview ---------------------------------------------------------
    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(text=openapi_text(), content_type="application/yaml")

    async def overview(self, request: web.Request) -> web.Response:
        o = ops.overview(self.ctx)
        return _json(
            {
                "version": o.version,
                "hostname": o.hostname,
                "datacenter": o.datacenter,
                "started_at": o.started_at,
                "uptime_seconds": o.uptime_seconds,
                "config_version": o.config_version,
                "counts": o.counts,
                "totals": o.totals,
            }
        )

    # -- backends ------------------------------------------------------------------------
    async def list_backends(self, request: web.Request) -> web.Response:
        return _json([backend_view(self.ctx, b) for b in ops.list_backends(self.ctx)])

    async def get_backend(self, request: web.Request) -> web.Response:
        return _json(backend_view(self.ctx, ops.get_backend(self.ctx, request.match_info["name"])))

    async def put_backend(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await load_body(request, schemas.BackendBody())
        _same_name(body, "name", name)
        backend, created = await ops.put_backend(
            self.ctx,
            name,
            body["datacenter"],
            body["host"],
            body["port"],
            dns=body["dns"],
            proxy_protocol=body["proxy_protocol"],
            tls=body["tls"],
            stream_port=body["stream_port"],
        )
        return _json(backend_view(self.ctx, backend), 201 if created else 200)

    async def delete_backend(self, request: web.Request) -> web.Response:
        ops.delete_backend(self.ctx, request.match_info["name"])
        return web.Response(status=204)

    # -- farms ---------------------------------------------------------------------------
    async def list_farms(self, request: web.Request) -> web.Response:
        return _json([farm_json(f) for f in ops.list_farms(self.ctx)])

    async def get_farm(self, request: web.Request) -> web.Response:
        return _json(farm_json(ops.get_farm(self.ctx, request.match_info["name"])))

    async def put_farm(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await load_body(request, schemas.FarmBody())
        _same_name(body, "name", name)
        created = name not in self.ctx.state.farms
        farm = ops.set_farm(
            self.ctx, name, body["backends"], body["selector"], tuple(body["partitions"])
        )
        return _json(farm_json(farm), 201 if created else 200)

    async def delete_farm(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not ops.delete_farm(self.ctx, name):
            raise NotFound(f"farm {name!r} not found")
        return web.Response(status=204)

    # -- mappings ------------------------------------------------------------------------
    async def list_mappings(self, request: web.Request) -> web.Response:
        return _json([mapping_json(m) for m in ops.list_mappings(self.ctx)])

    async def get_mapping(self, request: web.Request) -> web.Response:
        return _json(mapping_json(ops.get_mapping(self.ctx, request.match_info["vhost"])))

    async def put_mapping(self, request: web.Request) -> web.Response:
        vhost = request.match_info["vhost"]
        body = await load_body(request, schemas.MappingBody())
        _same_name(body, "vhost", vhost)
        created = vhost not in self.ctx.state.mappings
        if "farm" in body:
            mapping = ops.map_vhost_to_farm(self.ctx, vhost, body["farm"])
        else:
            mapping = ops.map_vhost_to_backend(self.ctx, vhost, body["backend"])
        return _json(mapping_json(mapping), 201 if created else 200)

    async def delete_mapping(self, request: web.Request) -> web.Response:
        vhost = request.match_info["vhost"]
        if not ops.unmap_vhost(self.ctx, vhost):
            raise NotFound(f"vhost {vhost!r} is not mapped")
        return web.Response(status=204)

    async def get_default_farm(self, request: web.Request) -> web.Response:
        farm = ops.get_default_farm(self.ctx)
        if farm is None:
            raise NotFound("no default farm is set")
        return _json({"farm": farm})

    async def put_default_farm(self, request: web.Request) -> web.Response:
        body = await load_body(request, schemas.DefaultFarmBody())
        created = ops.get_default_farm(self.ctx) is None
        ops.set_default_farm(self.ctx, body["farm"])
        return _json({"farm": body["farm"]}, 201 if created else 200)

    async def delete_default_farm(self, request: web.Request) -> web.Response:
        if ops.get_default_farm(self.ctx) is None:
            raise NotFound("no default farm is set")
        ops.set_default_farm(self.ctx, None)
        return web.Response(status=204)

    # -- listeners -----------------------------------------------------------------------
    async def list_listeners(self, request: web.Request) -> web.Response:
        specs = sorted(ops.list_listeners(self.ctx), key=lambda s: s.port)
        return _json([listener_json(s) for s in specs])

    async def put_listener(self, request: web.Request) -> web.Response:
        port = _port(request)
        body = await load_body(request, schemas.ListenerBody(), required=False)
        if "port" in body and body["port"] != port:
            raise HttpProblem(400, "invalid_argument", "the body's port differs from the path's")
        spec, created = await ops.put_listener(
            self.ctx,
            port,
            tls=body["tls"],
            proxy_protocol=body["proxy_protocol"],
            host=body["address"],
            protocol=body["protocol"],
            node=body["node"],
        )
        return _json(listener_json(spec), 201 if created else 200)

    async def delete_listener(self, request: web.Request) -> web.Response:
        port = _port(request)
        ops.get_listener(self.ctx, port)
        await ops.stop_listener(self.ctx, port)
        return web.Response(status=204)

    # -- sessions ------------------------------------------------------------------------
    async def list_sessions(self, request: web.Request) -> web.Response:
        query = load_query(request, schemas.SessionsQuery())
        found = ops.query_sessions(
            self.ctx,
            vhost=query.get("vhost"),
            backend=query.get("backend"),
            source=query.get("source"),
            state=query.get("state"),
            user=query.get("user"),
            sort=query["sort"],
            reverse=query["sort_reverse"],
        )
        page, size = query["page"], query["page_size"]
        items = found[(page - 1) * size : page * size]
        now = time.monotonic()
        return _json(
            {
                "items": [session_json(s, now) for s in items],
                "page": page,
                "page_size": size,
                "page_count": max(1, -(-len(found) // size)),
                "filtered_count": len(found),
                "total_count": len(self.ctx.sessions),
            }
        )

    async def get_session(self, request: web.Request) -> web.Response:
        session = ops.get_session(self.ctx, session_id_of(request))
        return _json(session_json(session, time.monotonic()))

    async def session_action(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in ("pause", "unpause", "disconnect", "force-disconnect"):
            raise NotFound(f"no session action {action!r}")
        session_id = session_id_of(request)
        if action == "disconnect":
            body = await load_body(request, schemas.DisconnectBody(), required=False)
            reason = body.get("reason") or request.headers.get("X-Reason") or "OK"
            session = ops.disconnect_session(self.ctx, session_id, reason)
        else:
            await load_body(request, schemas.DisconnectBody(only=()), required=False)
            act = {
                "pause": ops.pause_session,
                "unpause": ops.unpause_session,
                "force-disconnect": ops.force_disconnect_session,
            }[action]
            session = act(self.ctx, session_id)
        return _json(session_json(session, time.monotonic()))

    # -- vhosts --------------------------------------------------------------------------
    def _vhost_json(self, vhost: str, paused: bool) -> dict[str, Any]:
        live = [s.id for s in self.ctx.sessions.of_vhost(vhost) if not s.finished]
        return {"name": vhost, "paused": paused, "sessions": len(live)}

    async def list_vhosts(self, request: web.Request) -> web.Response:
        states = ops.vhost_states(self.ctx)
        return _json([self._vhost_json(v, paused) for v, paused in states.items()])

    async def vhost_action(self, request: web.Request) -> web.Response:
        vhost, action = request.match_info["vhost"], request.match_info["action"]
        acts: dict[str, Callable[[Context, str], list[SessionBase]]] = {
            "pause": ops.pause_vhost,
            "unpause": ops.unpause_vhost,
            "backend-disconnect": ops.backend_disconnect_vhost,
            "force-disconnect": ops.force_disconnect_vhost,
        }
        act = acts.get(action)
        if act is None:
            raise NotFound(f"no vhost action {action!r}")
        await load_body(request, schemas.DisconnectBody(only=()), required=False)
        sessions = act(self.ctx, vhost)
        paused = self.ctx.state.paused_vhosts.get(vhost, False)
        return _json({"name": vhost, "paused": paused, "affected": [s.id for s in sessions]})

    # -- datacenter ----------------------------------------------------------------------
    async def get_datacenter(self, request: web.Request) -> web.Response:
        return _json({"name": ops.get_datacenter(self.ctx)})

    async def put_datacenter(self, request: web.Request) -> web.Response:
        body = await load_body(request, schemas.DatacenterBody())
        ops.set_datacenter(self.ctx, body["name"])
        return _json({"name": ops.get_datacenter(self.ctx)})

    # -- definitions ---------------------------------------------------------------------
    async def get_definitions(self, request: web.Request) -> web.Response:
        return _json(definitions.export(self.ctx))

    async def put_definitions(self, request: web.Request) -> web.Response:
        query = load_query(request, schemas.DryRunQuery())
        document = await read_body(request)
        result = await definitions.apply(self.ctx, document, dry_run=query["dry_run"])
        if not query["dry_run"]:
            result["definitions"] = definitions.export(self.ctx)
        return _json(result)


def openapi_text() -> str:
    """The contract shipped inside the package (the top-level openapi.yaml links to it)."""
    return resources.files("amqpprox").joinpath("openapi.yaml").read_text(encoding="utf-8")
