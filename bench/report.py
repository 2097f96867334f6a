"""Machine description, result table and JSON summary."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shlex
import sys
from typing import Any

Results = dict[str, dict[str, dict[str, Any]]]  # scenario -> target -> metrics | {"error": ...}

# scenario -> [(row label, metric key, higher_is_better)]
ROWS: dict[str, list[tuple[str, str, bool]]] = {
    "msgs": [("msgs/s (100 B, 1p/1c)", "msgs_per_s", True)],
    "mib": [("MiB/s (1 MiB msgs, 1p/1c)", "mib_per_s", True)],
    "conn": [("conn/s (open+close)", "conn_per_s", True)],
    "latency": [("rtt p50 (µs)", "p50_us", False), ("rtt p99 (µs)", "p99_us", False)],
}


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
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def table_text(results: Results, target_names: list[str]) -> str:
    """Scenario | direct | proxy | ratio | [forwarder | ratio] | added (latency)."""
    others = [t for t in target_names if t != "direct"]
    head = ["scenario", "direct"]
    for t in others:
        head += [t, f"{t}/direct"]
    with_added = bool(others) and "latency" in results
    if with_added:
        head.append("added (µs)")
    rows: list[list[str]] = []
    for scenario, specs in ROWS.items():
        if scenario not in results:
            continue
        per_target = results[scenario]
        for label, key, _higher in specs:
            direct = per_target.get("direct", {}).get(key)
            row = [label, _fmt(direct) if direct is not None else "ERROR"]
            added = []
            for t in others:
                val = per_target.get(t, {}).get(key)
                row.append(_fmt(val) if val is not None else "ERROR")
                row.append(f"{val / direct:.2f}" if val is not None and direct else "-")
                if scenario == "latency" and val is not None and direct is not None:
                    added.append(f"{t} {val - direct:+,.0f}")
            if with_added:
                row.append(", ".join(added))
            rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    out = []
    for i, r in enumerate([head, *rows]):
        cells = [r[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        out.append("| " + " | ".join(cells) + " |")
        if i == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def added_latency_text(results: Results, target_names: list[str]) -> list[str]:
    """``added p50/p99`` lines (target minus direct) for the latency scenario."""
    lat = results.get("latency", {})
    direct = lat.get("direct", {})
    lines = []
    for t in target_names:
        if t == "direct":
            continue
        other = lat.get(t, {})
        if "p50_us" in direct and "p50_us" in other:
            lines.append(
                f"{t}: added p50/p99 = {other['p50_us'] - direct['p50_us']:+,.0f} / "
                f"{other['p99_us'] - direct['p99_us']:+,.0f} µs"
            )
    return lines


def tls_cost_text(results: Results, target_names: list[str]) -> list[str]:
    """With a ``proxy-tls`` column: what TLS ingress costs on top of the plain proxy."""
    if "proxy-tls" not in target_names or "proxy" not in target_names:
        return []
    parts = []
    for scenario, specs in ROWS.items():
        per_target = results.get(scenario, {})
        for _label, key, _higher in specs:
            plain = per_target.get("proxy", {}).get(key)
            tls = per_target.get("proxy-tls", {}).get(key)
            if plain and tls is not None:
                parts.append(f"{key} {tls / plain:.2f}")
    return ["proxy-tls/proxy (TLS ingress vs plain, same process): " + ", ".join(parts)]


def errors_text(results: Results) -> list[str]:
    """One line per failed (scenario, target)."""
    return [
        f"ERROR {scenario}/{target}: {metrics['error']}"
        for scenario, per_target in results.items()
        for target, metrics in per_target.items()
        if "error" in metrics
    ]


def json_text(info: dict[str, Any], targets: dict[str, str], results: Results) -> str:
    """Machine-readable summary including ratios."""
    ratios: dict[str, dict[str, float]] = {}
    for scenario, specs in ROWS.items():
        per_target = results.get(scenario, {})
        for _label, key, _higher in specs:
            direct = per_target.get("direct", {}).get(key)
            for t, metrics in per_target.items():
                val = metrics.get(key)
                if t != "direct" and direct and val is not None:
                    ratios.setdefault(scenario, {})[f"{t}/{key}"] = val / direct
                    if scenario == "latency":
                        ratios[scenario][f"{t}/added_{key}"] = val - direct
    return json.dumps(
        {"machine": info, "targets": targets, "results": results, "ratios": ratios}, indent=2
    )
