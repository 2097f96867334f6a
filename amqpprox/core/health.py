"""Backend health book-keeping: check settings, each backend's verdict and counters.

``CheckSettings`` (``interval_ms``, ``timeout_ms``, ``rise``, ``fall``, HAProxy's
meaning) is configuration, kept in ``core.state.ProxyState`` per backend and as a
default. ``HealthBook`` (``ctx.health``) holds what the checks and the sessions' own
connection attempts found: per backend a status (``up``, ``down`` or ``unknown``),
when it was last checked, the last error, the consecutive successes and failures, and
totals for the metrics. The active checker (``proxy.health_checker``) and the connect
loop (``proxy.connect``) report here; selection asks ``skips``; the front ends read
``entry``. A change of status is logged once, here, and counted. No I/O.

Verdicts: a backend nobody has checked or failed to reach is ``unknown`` (and selectable).
``fall`` consecutive failures (active checks and session attempts alike) mark it ``down``;
``rise`` consecutive successful checks mark a down one ``up`` again. An ``unknown`` one is
``up`` after its first successful check. Without active checks a down backend is tried
again by one session ``passive_retry`` seconds after its last failure; that session's
success marks it up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from amqpprox.errors import InvalidArgument

log = logging.getLogger("amqpprox.health")

UP, DOWN, UNKNOWN = "up", "down", "unknown"
# Failures in a row that mark an unchecked backend down (HAProxy's default fall).
PASSIVE_FALL = 3
# Bounds of the check settings: a check at least every hour, at most every 10 ms.
_LIMITS = {
    "interval_ms": (10, 3_600_000),
    "timeout_ms": (1, 600_000),
    "rise": (1, 1000),
    "fall": (1, 1000),
}


_DEFAULT_TIMEOUT_MS, _DEFAULT_RISE, _DEFAULT_FALL = 1000, 2, 3


@dataclass(frozen=True, slots=True)
class CheckSettings:
    """How often and how strictly a backend is checked."""

    interval_ms: int = 2000
    timeout_ms: int = _DEFAULT_TIMEOUT_MS
    rise: int = _DEFAULT_RISE
    fall: int = _DEFAULT_FALL

    def __post_init__(self) -> None:
        for name, (low, high) in _LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidArgument(f"{name} must be an integer from {low} to {high}: {value!r}")

    @classmethod
    def given(
        cls,
        interval_ms: int,
        timeout_ms: int | None = None,
        rise: int | None = None,
        fall: int | None = None,
    ) -> CheckSettings:
        """Settings from the values an operator gave; the others default (the timeout
        to the interval when that is shorter than the default timeout)."""
        if timeout_ms is None:
            timeout_ms = _DEFAULT_TIMEOUT_MS
            if isinstance(interval_ms, int) and 1 <= interval_ms < timeout_ms:
                timeout_ms = interval_ms
        return cls(
            interval_ms=interval_ms,
            timeout_ms=timeout_ms,
            rise=_DEFAULT_RISE if rise is None else rise,
            fall=_DEFAULT_FALL if fall is None else fall,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "interval_ms": self.interval_ms,
            "timeout_ms": self.timeout_ms,
            "rise": self.rise,
            "fall": self.fall,
        }


@dataclass(slots=True)
class BackendHealth:
    """One backend's verdict and counters (mutated only by ``HealthBook``)."""

    status: str = UNKNOWN
    checked_at: float | None = None  # wall clock of the last check's result
    last_result: str | None = None  # "ok" or "failed", of the last check
    last_error: str | None = None
    consecutive_successes: int = 0
    consecutive_failures: int = 0
    checks_ok: int = 0
    checks_failed: int = 0
    passive_failures: int = 0
    last_failure_mono: float = 0.0
    changed_at: float | None = None
    # Per resolved address of a DNS backend: whether its last check answered.
    addresses: dict[str, bool] = field(default_factory=dict)


class HealthBook:
    """Every backend's health; created by the Context, fed by the data plane."""

    def __init__(self) -> None:
        self._entries: dict[str, BackendHealth] = {}
        # The effective check settings of a backend (None: not actively checked). The
        # Context points this at ProxyState.effective_check.
        self.check_of: Callable[[str], CheckSettings | None] = lambda _name: None
        self.passive_retry = 10.0
        # Status changes by (backend, new status), for the metrics.
        self.changes: dict[tuple[str, str], int] = {}
        self.clock: Callable[[], float] = time.monotonic
        self.wall: Callable[[], float] = time.time

    # -- reading ---------------------------------------------------------------------
    def status(self, name: str) -> str:
        """``up``, ``down`` or ``unknown``."""
        entry = self._entries.get(name)
        return UNKNOWN if entry is None else entry.status

    def entry(self, name: str) -> BackendHealth | None:
        return self._entries.get(name)

    def skips(self, name: str) -> bool:
        """Whether selection passes over ``name`` for health: it is down, and either it is
        actively checked or its passive back-off has not run out."""
        entry = self._entries.get(name)
        if entry is None or entry.status != DOWN:
            return False
        if self.check_of(name) is not None:
            return True
        return self.clock() - entry.last_failure_mono < self.passive_retry

    # -- active checks ---------------------------------------------------------------
    def record_check(
        self,
        name: str,
        ok: bool,
        error: str | None = None,
        addresses: dict[str, bool] | None = None,
    ) -> None:
        """The result of one active check round (any address answering is ``ok``)."""
        settings = self.check_of(name) or CheckSettings()
        entry = self._entries.setdefault(name, BackendHealth())
        entry.checked_at = self.wall()
        entry.last_result = "ok" if ok else "failed"
        if addresses is not None:
            entry.addresses = dict(addresses)
        if ok:
            entry.checks_ok += 1
            entry.last_error = None
            self._success(name, entry, settings.rise)
        else:
            entry.checks_failed += 1
            entry.last_error = error
            self._failure(name, entry, settings.fall, error)

    # -- passive detection (sessions' own connection attempts) -------------------------
    def record_attempt(self, name: str, ok: bool, error: str | None = None) -> None:
        """A session's attempt to reach ``name`` (all its addresses) ended."""
        entry = self._entries.get(name)
        if ok:
            if entry is None:
                return  # the common case: nothing to book
            entry.consecutive_failures = 0
            if entry.status == DOWN and self.check_of(name) is None:
                self._set(name, entry, UP, "a session reached it")
            return
        if entry is None:
            entry = self._entries[name] = BackendHealth()
        entry.passive_failures += 1
        entry.last_error = error
        settings = self.check_of(name)
        self._failure(name, entry, PASSIVE_FALL if settings is None else settings.fall, error)

    def forget(self, name: str) -> None:
        """The backend was deleted, or its checks were turned off while it was not down."""
        self._entries.pop(name, None)

    def prune(self, keep: set[str]) -> None:
        for name in [n for n in self._entries if n not in keep]:
            del self._entries[name]

    # -- transitions -----------------------------------------------------------------
    def _success(self, name: str, entry: BackendHealth, rise: int) -> None:
        entry.consecutive_failures = 0
        entry.consecutive_successes += 1
        if entry.status == UNKNOWN or (
            entry.status == DOWN and entry.consecutive_successes >= rise
        ):
            self._set(name, entry, UP, "check passed")

    def _failure(self, name: str, entry: BackendHealth, fall: int, error: str | None) -> None:
        entry.consecutive_successes = 0
        entry.consecutive_failures += 1
        entry.last_failure_mono = self.clock()
        if entry.status != DOWN and entry.consecutive_failures >= fall:
            self._set(name, entry, DOWN, error or "failed")

    def _set(self, name: str, entry: BackendHealth, status: str, why: str) -> None:
        previous, entry.status = entry.status, status
        entry.changed_at = self.wall()
        key = (name, status)
        self.changes[key] = self.changes.get(key, 0) + 1
        level = logging.WARNING if status == DOWN else logging.INFO
        log.log(level, "backend %s is %s (was %s): %s", name, status, previous, why)
