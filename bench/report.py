"""Machine description, result table and JSON summary."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shlex
import sys
from dataclasses import dataclass
from typing import Any

Results = dict[str, dict[str, dict[str, Any]]]  # scenario -> target -> metrics | {"error": ...}


@dataclass(frozen=True)
class Row:
    """One table row: a metric of one scenario.

    ``intermediary`` rows describe the process in the middle (its CPU, its memory, its
    admin API): ``n/a`` for ``direct`` and no ratio to direct.
    """

    label: str
    key: str
    intermediary: bool = False


# scenario -> rows, in table order
ROWS: dict[str, list[Row]] = {
    "msgs": [
        Row("msgs/s (100 B, 1p/1c)", "msgs_per_s"),
        Row("proxy CPU s / M msgs", "cpu_s_per_million_msgs", intermediary=True),
    ],
    "mib": [
        Row("MiB/s (1 MiB msgs, 1p/1c)", "mib_per_s"),
        Row("proxy CPU s / GiB", "cpu_s_per_gib", intermediary=True),
    ],
    "conn": [
        Row("conn/s (open+close)", "conn_per_s"),
        Row("proxy CPU µs / conn", "cpu_us_per_conn", intermediary=True),
    ],
    "latency": [Row("rtt p50 (µs)", "p50_us"), Row("rtt p99 (µs)", "p99_us")],
    "go-msgs": [
        Row("amqpperf msgs/s (100 B, 1p/1c)", "msgs_per_s"),
        Row("amqpperf proxy CPU s / M msgs", "cpu_s_per_million_msgs", intermediary=True),
    ],
    "go-mib": [
        Row("amqpperf MiB/s (1 MiB msgs)", "mib_per_s"),
        Row("amqpperf proxy CPU s / GiB", "cpu_s_per_gib", intermediary=True),
    ],
    "go-conn": [
        Row("amqpperf conn/s (Dial+Close)", "conn_per_s"),
        Row("amqpperf proxy CPU µs / conn", "cpu_us_per_conn", intermediary=True),
    ],
    "go-latency": [
        Row("amqpperf rtt p50 (µs)", "p50_us"),
        Row("amqpperf rtt p99 (µs)", "p99_us"),
    ],
    "idle": [
        Row("idle: open N conns (s)", "open_s"),
        Row("idle: KiB RSS / session (round 1)", "kib_per_session", intermediary=True),
        Row("idle: GET /api/v1/sessions p50 ms", "admin_sessions_p50_ms", intermediary=True),
        Row("idle: GET /api/v1/sessions max ms", "admin_sessions_max_ms", intermediary=True),
        Row("idle: GET /readyz p50 ms", "admin_readyz_p50_ms", intermediary=True),
        Row("idle: GET /readyz max ms", "admin_readyz_max_ms", intermediary=True),
    ],
}


LATENCY = ("latency", "go-latency")  # scenarios whose "added" column is target - direct
CPU_KEYS = ("cpu_s_per_million_msgs", "cpu_s_per_gib", "cpu_us_per_conn")
CPU_SCENARIOS = {s for s, rows in ROWS.items() if any(r.key in CPU_KEYS for r in rows)}


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "uvloop_importable": importlib.util.find_spec("uvloop") is not None,
        "platform": platform.platform(),
        "command": shlex.join(getattr(sys, "orig_argv", sys.argv)),
    }


def header_text(info: dict[str, Any]) -> str:
    """Command line and machine, printed before anything else."""
    return "\n".join(
        [
            f"command: {info['command']}",
            (
                f"machine: nproc={info['nproc']} cpu_count={info['cpu_count']} "
                f"python={info['implementation']} {info['python']} "
                f"uvloop_importable={'yes' if info['uvloop_importable'] else 'no'}"
            ),
            f"platform: {info['platform']}",
        ]
    )


def targets_text(targets: dict[str, str]) -> str:
    """Where each column's traffic went."""
    return "targets: " + ", ".join(f"{name}={addr}" for name, addr in targets.items())


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def _cell(metrics: dict[str, Any], row: Row, target: str) -> tuple[str, float | None]:
    """The shown text and the value of one (row, target) cell."""
    if row.intermediary and target == "direct":
        return "n/a", None
    if "error" in metrics or not metrics:
        return "ERROR", None
    val = metrics.get(row.key)
    if not isinstance(val, int | float):
        return "n/a", None
    return _fmt(val), float(val)


def _table_rows(results: Results, others: list[str], with_added: bool) -> list[list[str]]:
    rows: list[list[str]] = []
    for scenario, specs in ROWS.items():
        if scenario not in results:
            continue
        per_target = results[scenario]
        for row in specs:
            text, direct = _cell(per_target.get("direct", {}), row, "direct")
            cells = [row.label, text]
            added = []
            for t in others:
                text, val = _cell(per_target.get(t, {}), row, t)
                cells.append(text)
                if row.intermediary or val is None or not direct:
                    cells.append("-")
                else:
                    cells.append(f"{val / direct:.2f}")
                if scenario in LATENCY and val is not None and direct is not None:
                    added.append(f"{t} {val - direct:+,.0f}")
            if with_added:
                cells.append(", ".join(added))
            rows.append(cells)
    return rows


def table_text(results: Results, target_names: list[str]) -> str:
    """Scenario | direct | target | ratio | ... | added (latency); ``results`` = medians."""
    others = [t for t in target_names if t != "direct"]
    head = ["scenario", "direct"]
    for t in others:
        head += [t, f"{t}/direct"]
    with_added = bool(others) and any(s in results for s in LATENCY)
    if with_added:
        head.append("added (µs)")
    rows = _table_rows(results, others, with_added)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    out = []
    for i, r in enumerate([head, *rows]):
        cells = [r[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        out.append("| " + " | ".join(cells) + " |")
        if i == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def notes_text(repeat: int, target_names: list[str], results: Results) -> list[str]:
    """How to read the table."""
    lines = [
        f"values: median of {repeat} round(s) per target (except as noted); each round runs "
        "every target once, the order rotated by one per round"
    ]
    if any(s in results for s in CPU_SCENARIOS):
        lines.append(
            "proxy CPU rows: utime+stime of the intermediary's process (/proc/<pid>/stat) "
            f"across each run (resolution {1000 / os.sysconf('SC_CLK_TCK'):.0f} ms, coarse for "
            "short runs), n/a for direct (and for a --proxy the bench did not start)"
            + ("; proxy-tls shares the proxy's process" if "proxy-tls" in target_names else "")
        )
    if "idle" in results:
        held = _distinct(results["idle"], "connections")
        gets = _distinct(results["idle"], "admin_requests")
        admin = (
            f"; the admin rows time {gets} sequential GETs (fresh HTTP connection each) "
            "while they are held"
            if gets != "?"
            else ""
        )
        lines.append(f"idle: N = {held} connections held per target (heartbeat 0){admin}")
        lines.append(
            "idle: KiB RSS / session = (VmRSS with N held - VmRSS after a warm-up) / N, from "
            "each target's first round: later rounds reuse memory the earlier ones freed "
            "and read near 0 (every round is in --json)"
        )
    return lines


def _distinct(per_target: dict[str, dict[str, Any]], key: str) -> str:
    """The distinct values of ``key`` across targets, formatted (``?`` if none)."""
    values = sorted({m[key] for m in per_target.values() if isinstance(m.get(key), float)})
    return ", ".join(f"{v:,.0f}" for v in values) or "?"


def added_latency_text(results: Results, target_names: list[str]) -> list[str]:
    """``added p50/p99`` lines (target minus direct) for the latency scenarios."""
    lines = []
    for scenario in LATENCY:
        lat = results.get(scenario, {})
        direct = lat.get("direct", {})
        for t in target_names:
            other = lat.get(t, {})
            if t != "direct" and "p50_us" in direct and "p50_us" in other:
                lines.append(
                    f"{t}: added p50/p99 ({scenario}) = "
                    f"{other['p50_us'] - direct['p50_us']:+,.0f} / "
                    f"{other['p99_us'] - direct['p99_us']:+,.0f} µs"
                )
    return lines


def cpu_vs_haproxy_text(results: Results, target_names: list[str]) -> list[str]:
    """Each amqpprox column's CPU per unit of work as a multiple of HAProxy's."""
    if "haproxy" not in target_names:
        return []
    lines = []
    for t in target_names:
        if t == "direct" or t.startswith("haproxy"):
            continue
        parts = []
        for scenario, specs in ROWS.items():
            per_target = results.get(scenario, {})
            for row in specs:
                mine = per_target.get(t, {}).get(row.key)
                theirs = per_target.get("haproxy", {}).get(row.key)
                if row.key in CPU_KEYS and mine is not None and theirs:
                    parts.append(f"{scenario} {mine / theirs:.2f}")
        if parts:
            lines.append(f"{t} CPU per unit of work / haproxy's: " + ", ".join(parts))
    return lines


def tls_cost_text(results: Results, target_names: list[str]) -> list[str]:
    """With a ``proxy-tls`` column: what TLS ingress costs on top of the plain proxy."""
    if "proxy-tls" not in target_names or "proxy" not in target_names:
        return []
    parts = []
    for scenario, specs in ROWS.items():
        per_target = results.get(scenario, {})
        for row in specs:
            if row.key.startswith("admin_"):
                continue
            plain = per_target.get("proxy", {}).get(row.key)
            tls = per_target.get("proxy-tls", {}).get(row.key)
            if plain and tls is not None:
                parts.append(f"{row.key} {tls / plain:.2f}")
    return ["proxy-tls/proxy (TLS ingress vs plain, same process): " + ", ".join(parts)]


def load_generator_text(results: Results) -> list[str]:
    """CPU the load generator's two worker processes used for ``msgs`` against direct."""
    m = results.get("msgs", {}).get("direct", {})
    keys = ("gen_producer_cpu_s", "gen_producer_wall_s", "gen_consumer_cpu_s")
    if not all(k in m for k in (*keys, "gen_consumer_wall_s", "messages")):
        return []

    def share(role: str) -> str:
        cpu, wall = m[f"gen_{role}_cpu_s"], m[f"gen_{role}_wall_s"]
        pct = 100.0 * cpu / wall if wall > 0 else 0.0
        return f"{role} {cpu:.2f} s CPU / {wall:.2f} s wall ({pct:.0f}% of one core)"

    return [
        f"load generator CPU (msgs vs direct, medians, {m['messages']:,.0f} messages at "
        f"{m['msgs_per_s']:,.0f} msgs/s): {share('producer')}, {share('consumer')}"
    ]


def errors_text(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    """One line per failed run (scenario, target, round)."""
    return [
        f"ERROR {scenario}/{target} round {i + 1}: {metrics['error']}"
        for scenario, per_target in runs.items()
        for target, rounds in per_target.items()
        for i, metrics in enumerate(rounds)
        if "error" in metrics
    ]


def ratios(results: Results) -> dict[str, dict[str, float]]:
    """Target/direct ratios of the medians (and added latency)."""
    out: dict[str, dict[str, float]] = {}
    for scenario, specs in ROWS.items():
        per_target = results.get(scenario, {})
        for row in specs:
            if row.intermediary:
                continue
            direct = per_target.get("direct", {}).get(row.key)
            for t, metrics in per_target.items():
                val = metrics.get(row.key)
                if t != "direct" and direct and val is not None:
                    out.setdefault(scenario, {})[f"{t}/{row.key}"] = val / direct
                    if scenario in LATENCY:
                        out[scenario][f"{t}/added_{row.key}"] = val - direct
    return out


def json_text(summary: dict[str, Any], medians: Results) -> str:
    """Machine-readable summary: ``summary`` (machine, targets, runs, ...) + medians + ratios."""
    return json.dumps({**summary, "medians": medians, "ratios": ratios(medians)}, indent=2)
