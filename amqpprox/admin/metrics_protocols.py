"""The per-protocol families of /metrics: AMQP 0-9-1 and RabbitMQ Streams side by side.

The route families (``admin.metrics``) keep their (vhost, backend) labels; these add the
one split that matters once stream listeners exist: live sessions, opened sessions,
bytes and frames by ``protocol``. Read from ``core.totals.protocol_totals`` at scrape
time, never per frame.
"""

from __future__ import annotations

from amqpprox.admin.exposition import Exposition, labels
from amqpprox.core.model import ListenerSpec
from amqpprox.core.totals import SESSION_STATES, RouteTotals

__all__ = ["listener_protocols", "protocol_families"]

_TRAFFIC = (
    ("amqpprox_protocol_bytes", "Bytes relayed after the handshake, by protocol.", "in_bytes",
     "out_bytes"),
    ("amqpprox_protocol_frames", "Frames relayed after the handshake, by protocol.", "in_frames",
     "out_frames"),
)  # fmt: skip


def protocol_families(out: Exposition, totals: dict[str, RouteTotals]) -> None:
    protocols = sorted(totals)
    out.family(
        "amqpprox_protocol_sessions",
        "gauge",
        "Live sessions by protocol (amqp: AMQP 0-9-1, stream: RabbitMQ Streams) and state.",
    )
    for protocol in protocols:
        states = totals[protocol].states
        for state in SESSION_STATES:
            label_set = labels(("protocol", "state"), (protocol, state))
            out.line("amqpprox_protocol_sessions", label_set, states.get(state, 0))
    out.family(
        "amqpprox_protocol_sessions_opened",
        "counter",
        "Sessions that completed the broker handshake, by protocol.",
    )
    for protocol in protocols:
        label_set = labels(("protocol",), (protocol,))
        out.line("amqpprox_protocol_sessions_opened_total", label_set, totals[protocol].opened)
    for name, text, inbound, outbound in _TRAFFIC:
        out.family(name, "counter", text)
        for protocol in protocols:
            each = totals[protocol]
            for direction, attribute in (
                ("client_to_broker", inbound),
                ("broker_to_client", outbound),
            ):
                label_set = labels(("protocol", "direction"), (protocol, direction))
                out.line(name + "_total", label_set, getattr(each, attribute))


def listener_protocols(out: Exposition, specs: list[ListenerSpec]) -> None:
    """What each running listener speaks: joins ``amqpprox_listener_up`` on ``port``."""
    out.family(
        "amqpprox_listener_protocol",
        "gauge",
        "1 for each running listener: its protocol (amqp or stream) and, for a stream "
        'node listener, its backend (node="" otherwise).',
    )
    for spec in sorted(specs, key=lambda each: each.port):
        label_set = labels(
            ("port", "protocol", "node"), (str(spec.port), spec.protocol, spec.node or "")
        )
        out.line("amqpprox_listener_protocol", label_set, 1)
