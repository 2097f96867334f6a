"""Backend states (operator intent) and the one question selection asks: may a new
session go to this backend?

``BackendState`` is what an operator sets (``BACKEND STATE``, REST, dashboard):
``ready`` takes new sessions, ``drain`` and ``maint`` take none (existing sessions
continue). The state is kept in ``core.state.ProxyState``; health (up/down/unknown)
is kept apart in ``core.health.HealthBook`` (``ctx.health``). ``selectable`` combines
both. No I/O here; imports only ``core`` for type checking.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amqpprox.core.context import Context


class BackendState(enum.Enum):
    """What an operator wants of a backend."""

    READY = "ready"  # the default: new sessions may go to it
    DRAIN = "drain"  # no new sessions; existing sessions continue
    MAINT = "maint"  # no new sessions; shown as maintenance

    @classmethod
    def parse(cls, word: str) -> BackendState:
        """The state named by ``word`` (case-insensitive); ValueError otherwise."""
        return cls(word.strip().lower())


STATE_WORDS = tuple(state.value for state in BackendState)


def selectable(ctx: Context, name: str) -> bool:
    """Whether a new session may be routed to backend ``name``: it exists, its state is
    ready and its health is not down (a down one whose passive back-off has run out
    counts as selectable again, so it is retried)."""
    if name not in ctx.state.backends:
        return False
    if ctx.state.backend_state(name) is not BackendState.READY:
        return False
    return not ctx.health.skips(name)
