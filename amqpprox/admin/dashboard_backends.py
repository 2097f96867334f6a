"""The dashboard's backend actions (drain, maintenance, ready) and the backend health view.

Adds to ``admin.dashboard``: the ``POST /backends/{backend}/{action}`` route, with the
same confirmation step, CSRF and origin checks, admin-token login and audit line as the
session and vhost actions (the ``Dashboard``'s own helpers), and two template globals
the backends table uses: ``backend_health(name)`` (``core.health_ops.health_row``) and
``backend_actions`` (the ``Action`` table). Actions call ``core.health_ops``, as REST and
the control socket do. Must not import ``proxy``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp_jinja2
from aiohttp import web

from amqpprox.admin.dashboard_support import ROUTE_PREFIX, Action, safe_next
from amqpprox.admin.text import read_form
from amqpprox.core import health_ops
from amqpprox.core.backend_status import BackendState
from amqpprox.errors import NotFound

if TYPE_CHECKING:
    from amqpprox.admin.dashboard import Dashboard

# Part B adds "evict" here (and its button in _backends_table.html).
BACKEND_ACTIONS: dict[str, Action] = {
    "drain": Action(
        "Drain",
        "Drain backend {target}?",
        "No new session is sent to it; its sessions continue until their clients leave.",
    ),
    "maint": Action(
        "Maintenance",
        "Put backend {target} in maintenance?",
        "No new session is sent to it, and it is shown as in maintenance; its sessions continue.",
        danger=True,
    ),
    "ready": Action(
        "Ready",
        "Make backend {target} ready?",
        "New sessions may be sent to it again (unless its health checks say it is down).",
    ),
}
STATE_OF = {
    "drain": BackendState.DRAIN,
    "maint": BackendState.MAINT,
    "ready": BackendState.READY,
}


class BackendActions:
    """The backend action route, using the dashboard's confirmation and guard."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.ctx = dashboard.ctx

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(
                "/backends/{backend}/{action}",
                self.backend_action,
                name=f"{ROUTE_PREFIX}backend-action",
            )
        ]

    async def backend_action(self, request: web.Request) -> web.StreamResponse:
        return await self.dashboard._guarded(request, self._backend_action)

    async def _backend_action(self, request: web.Request) -> web.StreamResponse:
        dash = self.dashboard
        form = await read_form(request)
        dash.guard.check_post(request, form)
        name, action_name = request.match_info["backend"], request.match_info["action"]
        action = BACKEND_ACTIONS.get(action_name)
        if action is None:
            raise NotFound(f"no backend action {action_name!r}")
        if name not in self.ctx.state.backends:
            raise NotFound(f"backend {name!r} not found")
        next_url = safe_next(form.get("next"), "/backends")
        confirm = dash._confirmation(request, form, action, repr(name), next_url)
        if confirm is not None:
            return confirm
        dash.guard.audit(request, f"{action_name} backend {name!r}")
        state = health_ops.set_backend_state(self.ctx, name, STATE_OF[action_name])
        return dash._done(
            request,
            next_url,
            f"{action.label}: backend {name!r} is {state.value} now.",
            login=dash._token_given(form),
        )


def setup(app: web.Application, dashboard: Dashboard) -> None:
    """The route and the template globals (after ``aiohttp_jinja2.setup``)."""
    app.router.add_routes(BackendActions(dashboard).routes())
    env = aiohttp_jinja2.get_env(app)
    env.globals["backend_actions"] = BACKEND_ACTIONS
    env.globals["backend_health"] = lambda name: health_ops.health_row(dashboard.ctx, name)
