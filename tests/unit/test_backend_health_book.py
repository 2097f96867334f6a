"""Backend states and the health book: the verdicts selection relies on (no sockets)."""

from __future__ import annotations

import pytest

from amqpprox.core.backend_status import BackendState, selectable
from amqpprox.core.context import Context, Settings
from amqpprox.core.health import CheckSettings
from amqpprox.core.model import Backend
from amqpprox.errors import InvalidArgument, NotFound


class _NoListeners:
    pass


def _ctx() -> Context:
    ctx = Context(Settings(health_passive_retry=5.0), _NoListeners())  # type: ignore[arg-type]
    ctx.state.add_backend(Backend("b1", "dc", "127.0.0.1", 5672, ip="127.0.0.1"))
    return ctx


def test_state_defaults_to_ready_and_gates_selection() -> None:
    ctx = _ctx()
    assert ctx.state.backend_state("b1") is BackendState.READY
    assert selectable(ctx, "b1")
    for state in (BackendState.DRAIN, BackendState.MAINT):
        ctx.state.set_backend_state("b1", state)
        assert ctx.state.backend_state("b1") is state
        assert not selectable(ctx, "b1")
    ctx.state.set_backend_state("b1", BackendState.READY)
    assert selectable(ctx, "b1")
    assert not selectable(ctx, "nope")
    with pytest.raises(NotFound):
        ctx.state.set_backend_state("nope", BackendState.DRAIN)
    assert BackendState.parse("MAINT") is BackendState.MAINT
    with pytest.raises(ValueError):
        BackendState.parse("up")


def test_active_checks_fall_and_rise() -> None:
    ctx = _ctx()
    ctx.state.set_health_check("b1", CheckSettings(interval_ms=100, timeout_ms=50, rise=2, fall=2))
    health = ctx.health
    assert health.status("b1") == "unknown"
    health.record_check("b1", False, "refused")
    assert health.status("b1") == "unknown" and selectable(ctx, "b1")
    health.record_check("b1", False, "refused")
    assert health.status("b1") == "down" and not selectable(ctx, "b1")
    health.record_check("b1", True)
    assert health.status("b1") == "down"
    health.record_check("b1", True)
    assert health.status("b1") == "up" and selectable(ctx, "b1")
    entry = health.entry("b1")
    assert entry is not None and entry.checks_ok == 2 and entry.checks_failed == 2
    assert health.changes == {("b1", "down"): 1, ("b1", "up"): 1}


def test_passive_failures_mark_down_and_back_off() -> None:
    ctx = _ctx()
    now = [100.0]
    ctx.health.clock = lambda: now[0]
    ctx.health.record_attempt("b1", True)
    assert ctx.health.entry("b1") is None  # nothing booked for healthy backends
    for _ in range(3):
        ctx.health.record_attempt("b1", False, "refused")
    assert ctx.health.status("b1") == "down" and not selectable(ctx, "b1")
    now[0] += 5.0
    assert selectable(ctx, "b1")  # the back-off ran out: one more try
    ctx.health.record_attempt("b1", True)
    assert ctx.health.status("b1") == "up"


def test_check_settings_are_validated() -> None:
    with pytest.raises(InvalidArgument, match="interval_ms"):
        CheckSettings(interval_ms=0)
    with pytest.raises(InvalidArgument, match="rise"):
        CheckSettings(rise=True)
    ctx = _ctx()
    with pytest.raises(NotFound):
        ctx.state.set_health_check("nope", CheckSettings())
    ctx.state.set_health_check(None, CheckSettings(fall=5))
    assert ctx.state.effective_check("b1") == CheckSettings(fall=5)
    ctx.state.delete_backend("b1")
    assert ctx.state.backend_states == {} and ctx.state.health_checks == {}
