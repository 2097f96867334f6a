"""The dashboard's migrations and evictions: forms, confirmation, live progress panels.

The vhosts page gets a "Migrate a vhost" form (each row's "Migrate to…" link preselects
its vhost) and a live ``migrations`` region; the backends page an "Evict a backend" form
and a live ``evictions`` region. The regions are partial templates refreshed by the
page's script like the others (``Dashboard._render``); the pages' handlers merge
``vhosts_context`` / ``backends_context`` into theirs.

Actions are POST forms checked by the guard (CSRF, origin, login), confirmed first (the
script's dialog, or this module's confirmation page without JavaScript), audited, and
run through ``core.moves`` like every other front end. Errors are the dashboard's error
page (``Dashboard._guarded``). Must not import ``proxy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import MultiDictProxy

from amqpprox.admin.dashboard_support import ROUTE_PREFIX, route_name, route_url, safe_next
from amqpprox.admin.text import read_form
from amqpprox.core import moves
from amqpprox.core import operations as ops
from amqpprox.core.context import Context
from amqpprox.core.digits import ascii_digits
from amqpprox.core.eviction import DEFAULT_PER_SECOND

if TYPE_CHECKING:
    from amqpprox.admin.dashboard import Dashboard

RECENT = 10  # finished jobs shown under the running ones


@dataclass(frozen=True, slots=True)
class Ask:
    """A confirmation step: the question, what will happen, the button's label."""

    question: str
    explain: str
    label: str


def _recent(jobs: list[Any]) -> list[Any]:
    running = [job for job in jobs if job.running]
    finished = [job for job in jobs if not job.running]
    return list(reversed(running)) + list(reversed(finished))[:RECENT]


def vhosts_context(ctx: Context, request: web.Request) -> dict[str, Any]:
    """What the vhosts page shows of migrations: the jobs, the targets, the form's vhost."""
    targets = [("farm", f.name) for f in sorted(ops.list_farms(ctx), key=lambda f: f.name)]
    targets += [("backend", b) for b in sorted(ctx.state.backends)]
    return {
        "migrations": _recent(moves.list_migrations(ctx)),
        "move_targets": targets,
        "migrate_vhost": request.query.get("migrate", ""),
        "default_per_second": DEFAULT_PER_SECOND,
    }


def backends_context(ctx: Context, request: web.Request) -> dict[str, Any]:
    """What the backends page shows of evictions: the jobs, the form's backend."""
    return {
        "evictions": _recent(moves.list_evictions(ctx)),
        "backend_names": sorted(ctx.state.backends),
        "evict_backend": request.query.get("evict", ""),
        "default_per_second": DEFAULT_PER_SECOND,
    }


def _pace(form: MultiDictProxy[Any]) -> object:
    text = str(form.get("per_second", "")).strip()
    return int(text) if ascii_digits(text) and len(text) < 9 else text or None


class MovesViews:
    """The action handlers; pages, rendering and errors are the Dashboard's."""

    def __init__(self, pages: Dashboard) -> None:
        self.pages = pages
        self.ctx = pages.ctx
        self.guard = pages.guard

    def routes(self) -> list[web.RouteDef]:
        p = ROUTE_PREFIX
        return [
            web.post("/migrate", self.migrate, name=f"{p}migrate"),
            web.post("/migrations/{id}/cancel", self.cancel_migration, name=f"{p}migration-cancel"),
            web.post("/evict", self.evict, name=f"{p}evict"),
            web.post("/evictions/{id}/cancel", self.cancel_eviction, name=f"{p}eviction-cancel"),
        ]

    def _confirmation(
        self,
        request: web.Request,
        form: MultiDictProxy[Any],
        ask: Ask,
        next_url: str,
        *,
        fields: dict[str, str],
    ) -> web.StreamResponse | None:
        """The confirmation page, unless this POST confirms (and is authorised) already."""
        error = None
        if form.get("confirm") == "yes":
            if self.guard.signed_in(request):
                return None
            given = str(form.get("token", ""))
            if given and self.guard.token_ok(given):
                return None
            error = "That is not the admin token." if given else "The admin token is required."
        context = {
            "question": ask.question,
            "explain": ask.explain,
            "label": ask.label,
            "post_to": route_url(request.app.router, route_name(request), **request.match_info),
            "next": next_url,
            "fields": fields,
            "error": error,
        }
        return self.pages._render(
            request, "confirm_move.html", context, status=401 if error else 200
        )

    def _done(
        self, request: web.Request, form: MultiDictProxy[Any], next_url: str, text: str
    ) -> web.StreamResponse:
        return self.pages._done(request, next_url, text, login=self.pages._token_given(form))

    # -- migrations ----------------------------------------------------------------------
    async def migrate(self, request: web.Request) -> web.StreamResponse:
        return await self.pages._guarded(request, self._migrate)

    async def _migrate(self, request: web.Request) -> web.StreamResponse:
        form = await read_form(request)
        self.guard.check_post(request, form)
        vhost = str(form.get("vhost", ""))
        target = str(form.get("target", ""))
        kind, _, name = target.partition(":")
        next_url = safe_next(form.get("next"), "/vhosts")
        confirm = self._confirmation(
            request,
            form,
            Ask(
                f"Migrate vhost {vhost!r} to {kind} {name}?",
                "New connections are held, the vhost is mapped to the target, its sessions get "
                "Connection.Close 320 at the pace below and reconnect there.",
                "Migrate",
            ),
            next_url,
            fields={
                "vhost": vhost,
                "target": target,
                "per_second": str(form.get("per_second", "")),
            },
        )
        if confirm is not None:
            return confirm
        self.guard.audit(request, f"migrate vhost {vhost!r} to {kind} {name}")
        m = moves.migrate_vhost(self.ctx, vhost, kind, name, _pace(form))
        return self._done(
            request,
            form,
            next_url,
            f"Migration {m.id} started: vhost {vhost!r} to {kind} {name}, "
            f"{m.sessions_total} sessions at {m.per_second}/s.",
        )

    async def cancel_migration(self, request: web.Request) -> web.StreamResponse:
        return await self.pages._guarded(request, self._cancel_migration)

    async def _cancel_migration(self, request: web.Request) -> web.StreamResponse:
        form = await read_form(request)
        self.guard.check_post(request, form)
        migration = moves.get_migration(self.ctx, _job_id(request))
        next_url = safe_next(form.get("next"), "/vhosts")
        confirm = self._confirmation(
            request,
            form,
            Ask(
                f"Cancel migration {migration.id} of vhost {migration.vhost!r}?",
                "No more sessions are closed and the vhost is resumed; the new mapping stays.",
                "Cancel migration",
            ),
            next_url,
            fields={},
        )
        if confirm is not None:
            return confirm
        self.guard.audit(request, f"cancel migration {migration.id}")
        moves.cancel_migration(self.ctx, migration.id)
        return self._done(request, form, next_url, f"Migration {migration.id} cancelled.")

    # -- evictions -----------------------------------------------------------------------
    async def evict(self, request: web.Request) -> web.StreamResponse:
        return await self.pages._guarded(request, self._evict)

    async def _evict(self, request: web.Request) -> web.StreamResponse:
        form = await read_form(request)
        self.guard.check_post(request, form)
        backend = str(form.get("backend", ""))
        next_url = safe_next(form.get("next"), "/backends")
        confirm = self._confirmation(
            request,
            form,
            Ask(
                f"Evict the sessions of backend {backend!r}?",
                "Its sessions get Connection.Close 320 at the pace below and reconnect wherever "
                "routing sends them; drain it first so that no new ones arrive.",
                "Evict",
            ),
            next_url,
            fields={"backend": backend, "per_second": str(form.get("per_second", ""))},
        )
        if confirm is not None:
            return confirm
        self.guard.audit(request, f"evict backend {backend!r}")
        e = moves.evict_backend(self.ctx, backend, _pace(form))
        return self._done(
            request,
            form,
            next_url,
            f"Eviction {e.id} started: {e.total} sessions of backend {backend!r} "
            f"at {e.per_second}/s.",
        )

    async def cancel_eviction(self, request: web.Request) -> web.StreamResponse:
        return await self.pages._guarded(request, self._cancel_eviction)

    async def _cancel_eviction(self, request: web.Request) -> web.StreamResponse:
        form = await read_form(request)
        self.guard.check_post(request, form)
        eviction = moves.get_eviction(self.ctx, _job_id(request))
        next_url = safe_next(form.get("next"), "/backends")
        confirm = self._confirmation(
            request,
            form,
            Ask(
                f"Cancel eviction {eviction.id}?",
                "No more sessions are closed; those closed stay closed.",
                "Cancel eviction",
            ),
            next_url,
            fields={},
        )
        if confirm is not None:
            return confirm
        self.guard.audit(request, f"cancel eviction {eviction.id}")
        moves.cancel_eviction(self.ctx, eviction.id)
        return self._done(request, form, next_url, f"Eviction {eviction.id} cancelled.")


def _job_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not ascii_digits(text) or len(text) > 18:
        return 0  # no job has id 0: NotFound
    return int(text)
