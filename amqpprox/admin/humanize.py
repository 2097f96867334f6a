"""Numbers, durations and charts as the dashboard shows them.

Pure functions (no I/O, no aiohttp): byte sizes in binary units (``1.2 KiB``), counts
with SI suffixes (``1.2k``), rates, ages, timestamps, and the small inline-SVG
time-series chart of the overview page, rendered on the server so that the page is
complete without JavaScript. Must not import ``proxy``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
COUNT_UNITS = ("", "k", "M", "G", "T")


def _scaled(value: float, base: float, units: Sequence[str]) -> tuple[float, str]:
    unit = 0
    while abs(value) >= base and unit < len(units) - 1:
        value /= base
        unit += 1
    return value, units[unit]


def _digits(value: float) -> str:
    """Three significant figures at most: 1.23, 12.3, 123."""
    if value == int(value) and abs(value) < 1000:
        return str(int(value))
    if abs(value) < 10:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if abs(value) < 100:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.0f}"


def bytes_(value: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    if value < 1024:
        return f"{int(value)} B"
    scaled, unit = _scaled(float(value), 1024, BYTE_UNITS)
    return f"{_digits(scaled)} {unit}"


def count(value: float) -> str:
    """``1234`` -> ``1.23k``; small numbers as they are."""
    if abs(value) < 1000:
        return _digits(round(value, 1)) if value != int(value) else str(int(value))
    scaled, unit = _scaled(float(value), 1000, COUNT_UNITS)
    return f"{_digits(scaled)}{unit}"


def byte_rate(value: float) -> str:
    """Bytes per second: ``2048.0`` -> ``2 KiB/s``."""
    if value < 1024:
        return f"{_digits(round(value, 1)) if value < 10 else str(round(value))} B/s"
    return f"{bytes_(value)}/s"


def rate(value: float, unit: str = "/s") -> str:
    """A per-second count: ``1234.5`` -> ``1.23k/s``."""
    return f"{count(value)}{unit}"


def grouped(value: int) -> str:
    """``5000`` -> ``5,000`` (exact figures, e.g. counters on a detail page)."""
    return f"{value:,}"


def duration(seconds: float | None) -> str:
    """``4000`` -> ``1h 06m``; at most two units, the larger first."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds > 0 else "0 s"
    s = int(seconds)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def latency(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def timestamp(unix: float | None) -> str:
    """A Unix time as local ``YYYY-MM-DD HH:MM:SS``."""
    if unix is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))


def age(unix: float | None, now: float | None = None) -> str:
    if unix is None:
        return "—"
    return duration(max(0.0, (time.time() if now is None else now) - unix))


# -- the time-series chart -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Series:
    """One line of a chart: a label, a CSS class for its colour, and (time, value) points."""

    label: str
    css: str
    points: Sequence[tuple[float, float]]


CHART_W = 600
CHART_H = 120


def nice_ceiling(value: float) -> float:
    """The smallest 1/2/5 x 10^n at or above ``value`` (the chart's top gridline)."""
    if value <= 0:
        return 1.0
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    while magnitude > value:
        magnitude /= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def chart_svg(series: Sequence[Series], *, now: float, window: float, fmt: str, title: str) -> str:
    """An inline SVG line chart of the last ``window`` seconds, newest on the right.

    ``fmt`` names how the axis labels are written: ``bytes`` (KiB/s) or ``count`` (k/s).
    The SVG scales to its container's width; strokes keep their width as it stretches.
    """
    peak = max((v for s in series for _, v in s.points), default=0.0)
    if fmt == "bytes":  # round in the unit the label will use: 338 KiB -> 500 KiB
        scale = 1.0
        while peak >= scale * 1024:
            scale *= 1024
        top = nice_ceiling(peak / scale) * scale
    else:
        top = nice_ceiling(peak)
    label = byte_rate if fmt == "bytes" else rate
    parts = [
        f'<svg class="chart-svg" viewBox="0 0 {CHART_W} {CHART_H}" preserveAspectRatio="none" '
        f'role="img" aria-label="{escape(title)}">'
    ]
    for fraction in (0.25, 0.5, 0.75):
        y = CHART_H * fraction
        parts.append(
            f'<line class="grid" x1="0" y1="{y:.0f}" x2="{CHART_W}" y2="{y:.0f}" '
            'vector-effect="non-scaling-stroke"/>'
        )
    for s in series:
        coords = []
        for t, v in s.points:
            x = CHART_W * (1 - (now - t) / window)
            if x < 0:
                continue
            y = CHART_H - min(v, top) / top * (CHART_H - 2) - 1
            coords.append(f"{x:.1f},{y:.1f}")
        if len(coords) >= 2:
            parts.append(
                f'<polyline class="line {escape(s.css)}" points="{" ".join(coords)}" '
                'vector-effect="non-scaling-stroke"/>'
            )
    parts.append("</svg>")
    axis = (
        f'<div class="chart-axis" aria-hidden="true"><span class="top">{escape(label(top))}'
        f'</span><span class="mid">{escape(label(top / 2))}</span></div>'
    )
    return axis + "".join(parts)
