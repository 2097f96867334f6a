"""Cumulative counters per (vhost label, backend name), for Prometheus and the dashboard.

``route_totals`` adds the live sessions' counters to the retained totals of the removed
ones (``SessionRegistry.removed_by_route``), so no counter goes backwards. Sessions are
grouped under ``SessionRegistry.vhost_label`` (a vhost clients merely name is not a
label). One pass over the sessions; nothing here runs per frame. Imports only
``core.sessions``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from amqpprox.core.sessions import SessionBase, SessionRegistry, SessionState, Totals

STATE_LABEL: dict[SessionState, str | None] = {
    SessionState.HANDSHAKING: "handshaking",
    SessionState.CONNECTING: "handshaking",
    SessionState.HELD: "paused",
    SessionState.ACTIVE: "active",
    SessionState.PAUSED: "paused",
    SessionState.CLOSING: "closing",
    SessionState.BROKER_DISCONNECTED: "broker_disconnected",
    SessionState.CLOSED: None,  # finished, waiting for cleanup: not a live session
}
PROTOCOLS = ("amqp", "stream")
SESSION_STATES = ("handshaking", "active", "paused", "closing", "broker_disconnected")


@dataclass
class RouteTotals(Totals):
    """Everything Prometheus shows for one (vhost, backend) pair: the removed sessions'
    totals plus the live ones' counters, and the live sessions by state label."""

    states: Counter[str] = field(default_factory=Counter)

    def add_live(self, session: SessionBase) -> None:
        """Add a live session's counters, and count it under its state label while it
        has no close reason."""
        if session.close_reason is None:
            label = STATE_LABEL[session.state]
            if label is not None:
                self.states[label] += 1
        self.add(session)


def route_totals(registry: SessionRegistry) -> dict[tuple[str, str], RouteTotals]:
    """Cumulative counters per (vhost label, backend name): live sessions plus removed ones.

    A session's labels stop changing before its counters can move (traffic flows only
    once a backend is chosen and the session opened, which settles its vhost label; a
    session counts as opened at OpenOk and as closed once it has a close reason, which
    settles the label too), so these sums never decrease.
    """
    out: dict[tuple[str, str], RouteTotals] = {}
    for key, removed in registry.removed_by_route.items():
        retained = out[key] = RouteTotals()
        retained.merge(removed)
    label_of = registry.vhost_label
    for session in registry:
        key = (label_of(session), session.backend_name or "")
        totals = out.get(key)
        if totals is None:
            totals = out[key] = RouteTotals()
        totals.add_live(session)
    return out


def protocol_totals(registry: SessionRegistry) -> dict[str, RouteTotals]:
    """Cumulative counters per protocol ("amqp", "stream"): live sessions plus removed
    ones; both protocols always present, so their series exist from the start."""
    out = {protocol: RouteTotals() for protocol in PROTOCOLS}
    for protocol, removed in registry.removed_by_protocol.items():
        out.setdefault(protocol, RouteTotals()).merge(removed)
    for session in registry:
        totals = out.setdefault(session.protocol, RouteTotals())
        totals.add_live(session)
    return out
