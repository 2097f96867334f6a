"""The backend health and state families of ``/metrics`` (``admin.metrics`` calls them).

* ``amqpprox_backend_up{backend}``: 1 up, 0 down; only for backends with a verdict
  (actively checked, or marked down by failed session attempts).
* ``amqpprox_backend_state{backend,state}``: 1 for the backend's current state (ready,
  drain, maint), 0 for the others, every configured backend (HAProxy's style).
* ``amqpprox_backend_health_checks_total{backend,result}``: active checks, ok or failed.
* ``amqpprox_backend_health_changes_total{backend,status}``: verdict changes to up or down.

Read from ``core.health`` and ``core.state`` at scrape time; labels are configured
backend names only. Must not import ``proxy``.
"""

from __future__ import annotations

from amqpprox.admin.exposition import Exposition, labels
from amqpprox.core.backend_status import STATE_WORDS
from amqpprox.core.context import Context
from amqpprox.core.health import DOWN, UP

CHECK_RESULTS = ("ok", "failed")
VERDICTS = (UP, DOWN)


def health_families(out: Exposition, ctx: Context) -> None:
    state, health = ctx.state, ctx.health
    names = sorted(state.backends)
    entries = {name: health.entry(name) for name in names}
    out.family(
        "amqpprox_backend_up",
        "gauge",
        "1 while a backend is up, 0 while down (only backends with a verdict: checked, or "
        "failed by sessions).",
    )
    for name in names:
        entry = entries[name]
        if entry is not None and entry.status in VERDICTS:
            out.line("amqpprox_backend_up", labels(("backend",), (name,)), int(entry.status == UP))
    out.family(
        "amqpprox_backend_state",
        "gauge",
        "1 for a backend's current state (ready, drain: no new sessions, maint: maintenance).",
    )
    for name in names:
        current = state.backend_state(name).value
        for word in STATE_WORDS:
            label_set = labels(("backend", "state"), (name, word))
            out.line("amqpprox_backend_state", label_set, int(word == current))
    out.family(
        "amqpprox_backend_health_checks",
        "counter",
        "Active health checks of a backend, by result (ok: Connection.Start within the timeout).",
    )
    for name in names:
        entry = entries[name]
        if entry is None and state.effective_check(name) is None:
            continue
        for result, count in zip(
            CHECK_RESULTS,
            (0, 0) if entry is None else (entry.checks_ok, entry.checks_failed),
            strict=True,
        ):
            label_set = labels(("backend", "result"), (name, result))
            out.line("amqpprox_backend_health_checks_total", label_set, count)
    out.family(
        "amqpprox_backend_health_changes",
        "counter",
        "Changes of a backend's health verdict, by the status it changed to.",
    )
    for name in names:
        if entries[name] is None:
            continue
        for verdict in VERDICTS:
            label_set = labels(("backend", "status"), (name, verdict))
            out.line(
                "amqpprox_backend_health_changes_total",
                label_set,
                health.changes.get((name, verdict), 0),
            )
