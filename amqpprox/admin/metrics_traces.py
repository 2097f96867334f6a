"""The trace families of /metrics: traces running, events recorded, events readers lost.

Read from ``core.traces.TraceRegistry`` at scrape time (plain ints the frame taps keep).
Imports ``core`` and ``admin.exposition`` only.
"""

from __future__ import annotations

from amqpprox.admin.exposition import Exposition
from amqpprox.core.traces import TraceRegistry


def trace_families(out: Exposition, traces: TraceRegistry) -> None:
    out.family("amqpprox_traces_active", "gauge", "AMQP traces running (TRACE, /api/v1/traces).")
    out.line("amqpprox_traces_active", "", traces.active)
    out.family(
        "amqpprox_trace_events",
        "counter",
        "Frames recorded by AMQP traces (one per frame per trace following its session).",
    )
    out.line("amqpprox_trace_events_total", "", traces.events_total)
    out.family(
        "amqpprox_trace_events_dropped",
        "counter",
        "Trace events a live reader (SSE stream, trace file) lost because it fell behind; "
        "the traced sessions' bytes are never held up.",
    )
    out.line("amqpprox_trace_events_dropped_total", "", traces.dropped_total)
