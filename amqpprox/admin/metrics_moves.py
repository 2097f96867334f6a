"""The metric families of evictions and migrations (``core.moves``), read at scrape time.

``admin.metrics.render`` calls ``render_moves``. Counters are cumulative since start:
``amqpprox_sessions_evicted_total`` by backend and reason (zeros for every configured
backend, so there is a series before the first eviction), ``amqpprox_migrations_total``
by result; gauges count the jobs running now. Must not import ``proxy``.
"""

from __future__ import annotations

from amqpprox.admin.exposition import Exposition, labels
from amqpprox.core.context import Context
from amqpprox.core.eviction import EvictReason
from amqpprox.core.moves import MIGRATION_RESULTS

REASONS = tuple(reason.value for reason in EvictReason)


def render_moves(out: Exposition, ctx: Context) -> None:
    moves = ctx.moves
    counts = dict(moves.evicted)
    for backend in ctx.state.backends:
        for reason in REASONS:
            counts.setdefault((backend, reason), 0)
    out.family(
        "amqpprox_sessions_evicted",
        "counter",
        "Sessions closed with Connection.Close 320 by a paced eviction, by backend and "
        "reason: evict (BACKEND EVICT), farm_change (the backend left a farm), migration "
        "(VHOST MIGRATE).",
    )
    for (backend, reason), count in sorted(counts.items()):
        label_set = labels(("backend", "reason"), (backend, reason))
        out.line("amqpprox_sessions_evicted_total", label_set, count)
    out.family(
        "amqpprox_migrations",
        "counter",
        "Vhost migrations that ended, by result: done, failed, cancelled.",
    )
    out.by_result("amqpprox_migrations_total", MIGRATION_RESULTS, moves.migration_results)
    out.family("amqpprox_evictions_running", "gauge", "Paced evictions running now.")
    out.line("amqpprox_evictions_running", "", sum(e.running for e in moves.evictions.values()))
    out.family("amqpprox_migrations_running", "gauge", "Vhost migrations running now.")
    out.line("amqpprox_migrations_running", "", sum(m.running for m in moves.migrations.values()))
