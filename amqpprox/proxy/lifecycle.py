"""A session's phases and the one table of the moves between them (h11's ``_state``).

``Phase`` is what the data plane does with each side's bytes; ``PUBLIC`` is what the
admin plane shows for it (``core.sessions.SessionState``). ``check_move`` is the only
judge of a phase change: a move the table does not list is a bug, raised as
``TransitionError``. Knows nothing of sockets or of AMQP.
"""

from __future__ import annotations

import enum

from amqpprox.core.sessions import SessionState

__all__ = ["ALLOWED", "PUBLIC", "Phase", "TransitionError", "check_move"]


class Phase(enum.Enum):
    # Members are singletons: hash by identity (the phase sets and tables are looked up
    # several times per connection; Enum's own hash is a Python-level call).
    __hash__ = object.__hash__

    HANDSHAKE = "handshake"  # playing the broker to the client, until Connection.Open
    HELD = "held"  # Open received while paused: waiting for UNPAUSE
    CONNECTING = "connecting"  # auth, backend choice, connect, broker handshake
    ACTIVE = "active"  # relaying both ways
    PAUSED = "paused"  # relaying broker -> client; the client's bytes wait
    CLOSING_CLIENT = "closing_client"  # our Close sent to the client; its last frames pass
    CLOSING_BROKER = "closing_broker"  # our Close sent to the broker; waiting for CloseOk
    REFUSING = "refusing"  # the client was told no before it went live; awaiting CloseOk
    CUT = "cut"  # the broker connection was cut by the operator; the client stays
    DEAD = "dead"  # nothing more is read


_ENDINGS = {Phase.REFUSING, Phase.DEAD}
ALLOWED: dict[Phase, frozenset[Phase]] = {
    Phase.HANDSHAKE: frozenset({Phase.HELD, Phase.CONNECTING, *_ENDINGS}),
    Phase.HELD: frozenset({Phase.CONNECTING, *_ENDINGS}),
    Phase.CONNECTING: frozenset({Phase.ACTIVE, Phase.PAUSED, *_ENDINGS}),
    Phase.ACTIVE: frozenset({Phase.PAUSED, Phase.CLOSING_CLIENT, Phase.CUT, Phase.DEAD}),
    Phase.PAUSED: frozenset({Phase.ACTIVE, Phase.CLOSING_CLIENT, Phase.CUT, Phase.DEAD}),
    Phase.CLOSING_CLIENT: frozenset({Phase.CLOSING_BROKER, Phase.DEAD}),
    Phase.CLOSING_BROKER: frozenset({Phase.DEAD}),
    Phase.REFUSING: frozenset({Phase.DEAD}),
    Phase.CUT: frozenset({Phase.DEAD}),
    Phase.DEAD: frozenset(),
}

PUBLIC: dict[Phase, SessionState] = {
    Phase.HANDSHAKE: SessionState.HANDSHAKING,
    Phase.HELD: SessionState.HELD,
    Phase.CONNECTING: SessionState.CONNECTING,
    Phase.ACTIVE: SessionState.ACTIVE,
    Phase.PAUSED: SessionState.PAUSED,
    Phase.CLOSING_CLIENT: SessionState.CLOSING,
    Phase.CLOSING_BROKER: SessionState.CLOSING,
    Phase.REFUSING: SessionState.CLOSED,
    Phase.CUT: SessionState.BROKER_DISCONNECTED,
    Phase.DEAD: SessionState.CLOSED,
}


class TransitionError(RuntimeError):
    """A phase change the table does not allow: a bug in the data plane."""


def check_move(current: Phase, new: Phase) -> bool:
    """True if ``current`` -> ``new`` changes anything; raise if the table forbids it."""
    if new is current:
        return False
    if new not in ALLOWED[current]:
        raise TransitionError(f"session phase {current.value} -> {new.value} is not allowed")
    return True
