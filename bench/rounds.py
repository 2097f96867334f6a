"""Repeated, alternating runs and their medians (pure functions).

Each scenario runs ``repeat`` rounds; every round runs every target once, in an
order rotated by one each round, so no target always runs first (or right after
the broker warmed up for another one).
"""

from __future__ import annotations

import statistics
from typing import Any

Metrics = dict[str, Any]  # metric key -> float, or {"error": str}
Runs = dict[str, dict[str, list[Metrics]]]  # scenario -> target -> one entry per round
Medians = dict[str, dict[str, Metrics]]  # scenario -> target -> metric key -> median

# Memory growth of a long-lived process: a later round reuses what an earlier round
# freed, so only the first (successful) round measures growth; it is reported as is.
FIRST_ROUND_KEYS = frozenset({"kib_per_session", "rss_before_kib", "rss_held_kib"})


def round_order(names: list[str], round_index: int) -> list[str]:
    """Targets of round ``round_index``: start at ``round_index mod len(names)``."""
    if not names:
        return []
    start = round_index % len(names)
    return names[start:] + names[:start]


def median_metrics(runs: list[Metrics]) -> Metrics:
    """Per-metric median over the runs that succeeded.

    Numeric metrics only; a metric missing from some successful runs is the median
    of the runs that have it. :data:`FIRST_ROUND_KEYS` take the first successful
    run's value instead. No successful run: ``{"error": <first error>}``.
    ``runs_ok`` says how many runs the medians are taken over.
    """
    ok = [r for r in runs if "error" not in r]
    if not ok:
        first = next((r["error"] for r in runs), "no runs")
        return {"error": first}
    keys: list[str] = []
    for r in ok:
        keys += [k for k, v in r.items() if _is_number(v) and k not in keys]
    out: Metrics = {}
    for key in keys:
        values = [float(r[key]) for r in ok if _is_number(r.get(key))]
        out[key] = values[0] if key in FIRST_ROUND_KEYS else statistics.median(values)
    out["runs_ok"] = float(len(ok))
    return out


def medians(runs: Runs) -> Medians:
    """:func:`median_metrics` for every (scenario, target)."""
    return {
        scenario: {target: median_metrics(rs) for target, rs in per_target.items()}
        for scenario, per_target in runs.items()
    }


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
