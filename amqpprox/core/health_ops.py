"""The operations on backend states and health checks, as plain functions over the Context.

The control socket (``BACKEND STATE``, ``BACKEND HEALTH``, ``HEALTH``), REST
(``admin.rest_health``) and the dashboard call these, so they cannot disagree; the values
are validated once, here and in ``core.health.CheckSettings``. Kept apart from
``core.operations`` (which must stay small); same rules: typed errors, plain values.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from amqpprox.core.backend_status import STATE_WORDS, BackendState
from amqpprox.core.context import Context
from amqpprox.core.health import BackendHealth, CheckSettings
from amqpprox.errors import InvalidArgument, NotFound


def _require_backend(ctx: Context, name: str) -> None:
    if name not in ctx.state.backends:
        raise NotFound(f"backend {name!r} not found", legacy_text=f"Backend '{name}' not found\n")


def parse_state(word: str) -> BackendState:
    try:
        return BackendState.parse(word)
    except ValueError:
        raise InvalidArgument(
            f"state must be one of {', '.join(STATE_WORDS)}: {word!r}",
            legacy_text=f"State must be one of {' | '.join(STATE_WORDS)}\n",
        ) from None


def set_backend_state(ctx: Context, name: str, state: BackendState | str) -> BackendState:
    """Make backend ``name`` ready, drain or maint (existing sessions are left alone)."""
    _require_backend(ctx, name)
    wanted = state if isinstance(state, BackendState) else parse_state(state)
    ctx.state.set_backend_state(name, wanted)
    return wanted


def get_health_check(ctx: Context, backend: str | None) -> CheckSettings | None:
    """The check settings of ``backend`` (its own, not the default's), or the default's."""
    if backend is None:
        return ctx.state.default_health_check
    _require_backend(ctx, backend)
    return ctx.state.health_checks.get(backend)


def put_health_check(
    ctx: Context,
    backend: str | None,
    interval_ms: int,
    *,
    timeout_ms: int | None = None,
    rise: int | None = None,
    fall: int | None = None,
) -> CheckSettings:
    """Check ``backend`` (None: every backend without settings of its own) actively.
    Left-out values default (``CheckSettings.given``)."""
    settings = CheckSettings.given(interval_ms, timeout_ms, rise, fall)
    if backend is not None:
        _require_backend(ctx, backend)
    ctx.state.set_health_check(backend, settings)
    return settings


def delete_health_check(ctx: Context, backend: str | None) -> bool:
    """Stop checking ``backend`` (None: the default); returns whether settings existed."""
    existed = get_health_check(ctx, backend) is not None
    ctx.state.set_health_check(backend, None)
    return existed


@dataclass(frozen=True, slots=True)
class HealthRow:
    """One backend as BACKEND HEALTH, REST and the dashboard show it."""

    name: str
    state: str
    status: str
    checked_at: float | None
    last_result: str | None
    last_error: str | None
    consecutive_successes: int
    consecutive_failures: int
    check: CheckSettings | None
    check_is_default: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "checked_at": self.checked_at,
            "last_error": self.last_error,
            "consecutive_successes": self.consecutive_successes,
            "consecutive_failures": self.consecutive_failures,
            "check": None if self.check is None else self.check.as_dict(),
        }

    def age(self, now: float | None = None) -> float | None:
        """Seconds since the last check, or None."""
        if self.checked_at is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.checked_at)


def health_row(ctx: Context, name: str) -> HealthRow:
    _require_backend(ctx, name)
    state = ctx.state
    entry = ctx.health.entry(name) or BackendHealth()  # never booked: the defaults
    check = state.effective_check(name)
    return HealthRow(
        name=name,
        state=state.backend_state(name).value,
        status=entry.status,
        checked_at=entry.checked_at,
        last_result=entry.last_result,
        last_error=entry.last_error,
        consecutive_successes=entry.consecutive_successes,
        consecutive_failures=entry.consecutive_failures,
        check=check,
        check_is_default=check is not None and name not in state.health_checks,
    )


def health_rows(ctx: Context) -> list[HealthRow]:
    """Every backend, by name."""
    return [health_row(ctx, name) for name in sorted(ctx.state.backends)]


def backend_status_json(ctx: Context, name: str) -> dict[str, Any]:
    """What REST adds to a backend: ``state`` and ``health``."""
    row = health_row(ctx, name)
    return {"state": row.state, "health": row.as_json()}
