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

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import MultiDictProxy

from amqpprox.admin.dashboard_support import ROUTE_PREFIX, safe_next
from amqpprox.admin.text import read_form
from amqpprox.core import moves
from amqpprox.core import operations as ops
from amqpprox.core.context import Context
from amqpprox.core.digits import ascii_digits
from amqpprox.core.eviction import DEFAULT_PER_SECOND

if TYPE_CHECKING:
    from amqpprox.admin.dashboard import Dashboard

RECENT = 10  # finished jobs shown under the running ones


Form = MultiDictProxy[Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Ask:
    """A confirmation step: the question, what will happen, the button's label (the
    ``action`` of confirm.html, like ``dashboard_support.Action``)."""

    question: str
    explain: str
    label: str
    danger: bool = True


@dataclass(frozen=True, slots=True)
class Step:
    """One action, read from its form: the confirmation, the fields a confirmation page
    posts back, the audit line, and what doing it says."""

    ask: Ask
    fields: dict[str, str]
    audit: str
    run: Callable[[], str]


StepOf = Callable[[web.Request, Form], Step]


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
            web.post("/migrate", self._handler("/vhosts", self._migrate), name=f"{p}migrate"),
            web.post(
                "/migrations/{id}/cancel",
                self._handler("/vhosts", self._cancel_migration),
                name=f"{p}migration-cancel",
            ),
            web.post("/evict", self._handler("/backends", self._evict), name=f"{p}evict"),
            web.post(
                "/evictions/{id}/cancel",
                self._handler("/backends", self._cancel_eviction),
                name=f"{p}eviction-cancel",
            ),
        ]

    def _handler(self, back: str, step_of: StepOf) -> Handler:
        """One action's POST handler: the form, the guard, the confirmation, the audit
        line, then the step; ``back`` is where it returns without a ``next``."""

        async def act(request: web.Request) -> web.StreamResponse:
            form = await read_form(request)
            self.guard.check_post(request, form)
            step = step_of(request, form)
            next_url = safe_next(form.get("next"), back)
            confirm = self._confirmation(request, form, step.ask, next_url, fields=step.fields)
            if confirm is not None:
                return confirm
            self.guard.audit(request, step.audit)
            return self._done(request, form, next_url, step.run())

        async def guarded(request: web.Request) -> web.StreamResponse:
            return await self.pages._guarded(request, act)

        return guarded

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
        context = {
            "action": ask,
            "question": ask.question,
            "next": next_url,
            "reason": None,
            "fields": fields,
        }
        return self.pages._confirm_page(request, form, "confirm.html", context)

    def _done(
        self, request: web.Request, form: MultiDictProxy[Any], next_url: str, text: str
    ) -> web.StreamResponse:
        return self.pages._done(request, next_url, text, login=self.pages._token_given(form))

    # -- the steps ---------------------------------------------------------------------
    def _migrate(self, request: web.Request, form: Form) -> Step:
        vhost, target = str(form.get("vhost", "")), str(form.get("target", ""))
        kind, _, name = target.partition(":")

        def run() -> str:
            m = moves.migrate_vhost(self.ctx, vhost, kind, name, _pace(form))
            return (
                f"Migration {m.id} started: vhost {vhost!r} to {kind} {name}, "
                f"{m.sessions_total} sessions at {m.per_second}/s."
            )

        ask = Ask(
            f"Migrate vhost {vhost!r} to {kind} {name}?",
            "New connections are held, the vhost is mapped to the target, its sessions get "
            "Connection.Close 320 at the pace below and reconnect there.",
            "Migrate",
        )
        fields = {"vhost": vhost, "target": target, "per_second": str(form.get("per_second", ""))}
        return Step(ask, fields, f"migrate vhost {vhost!r} to {kind} {name}", run)

    def _cancel_migration(self, request: web.Request, form: Form) -> Step:
        migration = moves.get_migration(self.ctx, _job_id(request))

        def run() -> str:
            moves.cancel_migration(self.ctx, migration.id)
            return f"Migration {migration.id} cancelled."

        ask = Ask(
            f"Cancel migration {migration.id} of vhost {migration.vhost!r}?",
            "No more sessions are closed and the vhost is resumed; the new mapping stays.",
            "Cancel migration",
        )
        return Step(ask, {}, f"cancel migration {migration.id}", run)

    def _evict(self, request: web.Request, form: Form) -> Step:
        backend = str(form.get("backend", ""))

        def run() -> str:
            e = moves.evict_backend(self.ctx, backend, _pace(form))
            return (
                f"Eviction {e.id} started: {e.total} sessions of backend {backend!r} "
                f"at {e.per_second}/s."
            )

        ask = Ask(
            f"Evict the sessions of backend {backend!r}?",
            "Its sessions get Connection.Close 320 at the pace below and reconnect wherever "
            "routing sends them; drain it first so that no new ones arrive.",
            "Evict",
        )
        fields = {"backend": backend, "per_second": str(form.get("per_second", ""))}
        return Step(ask, fields, f"evict backend {backend!r}", run)

    def _cancel_eviction(self, request: web.Request, form: Form) -> Step:
        eviction = moves.get_eviction(self.ctx, _job_id(request))

        def run() -> str:
            moves.cancel_eviction(self.ctx, eviction.id)
            return f"Eviction {eviction.id} cancelled."

        ask = Ask(
            f"Cancel eviction {eviction.id}?",
            "No more sessions are closed; those closed stay closed.",
            "Cancel eviction",
        )
        return Step(ask, {}, f"cancel eviction {eviction.id}", run)


def _job_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not ascii_digits(text) or len(text) > 18:
        return 0  # no job has id 0: NotFound
    return int(text)
