"""STAND-IN for part A (branch ``health``): backend states and whether a backend may be chosen.

Part A replaces this module with the real one (states set by ``BACKEND STATE``, health
from active and passive checks). Until then every backend is ``ready`` and its health
``unknown``, so ``selectable`` is simply "the backend exists". Only the API that part B
(eviction, migration) uses is here: ``BackendState`` and ``selectable(ctx, name)``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amqpprox.core.context import Context


class BackendState(enum.Enum):
    """Operator intent for a backend (HAProxy's server states)."""

    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"


def selectable(ctx: Context, name: str) -> bool:
    """Whether new sessions may be sent to backend ``name``: it exists, is ready and not down."""
    return name in ctx.state.backends
