"""Prometheus exposition of amqpprox's own families, cheap enough for thousands of series.

``prometheus_client``'s encoder validates and escapes every label of every sample (some
25 µs each): with 1,000 vhosts, /metrics took a third of a second of the event loop.
Here a label set is escaped once and reused for all the samples that carry it, and the
lines are joined once. ``Exposition`` writes either format a scraper may ask for: the
text format 0.0.4 or OpenMetrics 1.0 (they differ in the counters' HELP/TYPE name and
OpenMetrics' ``# EOF``, which the caller's ``prometheus_client`` part appends).

Imports nothing of amqpprox (``admin.metrics`` decides what the families are).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

Number = int | float


def escape(value: str) -> str:
    """A label value, escaped as both formats want it."""
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def labels(names: Sequence[str], values: Sequence[str]) -> str:
    """``a="x",b="y"``: a label set without braces, to be reused by ``Exposition.line``."""
    return ",".join(f'{name}="{escape(value)}"' for name, value in zip(names, values, strict=True))


def number(value: Number) -> str:
    if isinstance(value, int):
        return str(value)
    if value == float("inf"):
        return "+Inf"
    return repr(value)


class Exposition:
    """The lines of some metric families, in one format."""

    def __init__(self, openmetrics: bool) -> None:
        self.openmetrics = openmetrics
        self.parts: list[str] = []

    def family(self, name: str, kind: str, text: str) -> None:
        """HELP and TYPE of a family; ``name`` without the counters' ``_total``."""
        head = name + "_total" if kind == "counter" and not self.openmetrics else name
        text = text.replace("\\", "\\\\").replace("\n", "\\n")
        if self.openmetrics:
            text = text.replace('"', '\\"')
        self.parts.append(f"# HELP {head} {text}\n# TYPE {head} {kind}\n")

    def line(self, name: str, label_set: str, value: Number) -> None:
        """One sample; ``label_set`` as ``labels`` made it ("" for none)."""
        if label_set:
            self.parts.append(f"{name}{{{label_set}}} {number(value)}\n")
        else:
            self.parts.append(f"{name} {number(value)}\n")

    def by_result(self, name: str, results: Sequence[str], counts: Mapping[str, int]) -> None:
        """A line for each ``result`` label, zero for a result not counted yet."""
        for result in results:
            self.line(name, labels(("result",), (result,)), counts.get(result, 0))

    def histogram(
        self, name: str, label_set: str, buckets: Iterable[tuple[str, int]], total: float
    ) -> None:
        """``_bucket`` (cumulative, ``le`` as given, ending with ``+Inf``), ``_count``, ``_sum``."""
        prefix = label_set + "," if label_set else ""
        count = 0
        for bound, count in buckets:
            self.parts.append(f'{name}_bucket{{{prefix}le="{bound}"}} {count}\n')
        self.line(name + "_count", label_set, count)
        self.line(name + "_sum", label_set, float(total))

    def text(self) -> str:
        return "".join(self.parts)
