"""The session's protocol-neutral parts: the phase table, the read gate, and what the
relay, the gate and the connect loop may import (no AMQP 0-9-1 in them, so a second
protocol adapter plugs in without touching them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from amqpprox.proxy.gate import Hold, ReadGate
from amqpprox.proxy.lifecycle import ALLOWED, PUBLIC, Phase, TransitionError, check_move

PROXY = Path(__file__).resolve().parents[2] / "amqpprox" / "proxy"
# Modules that must stay protocol-neutral, and the AMQP 0-9-1 modules they must not use.
NEUTRAL = (
    "relay.py",
    "gate.py",
    "lifecycle.py",
    "transports.py",
    "connect.py",
    "graceful.py",
    "departures.py",
)
AMQP_SPECIFIC = ("amqpprox.amqp", "amqpprox.proxy.amqp091")


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("name", NEUTRAL)
def test_neutral_parts_import_no_amqp_091(name: str) -> None:
    imported = _imported_modules(PROXY / name)
    assert sorted(m for m in imported if m.startswith(AMQP_SPECIFIC)) == []


def test_every_phase_is_reachable_and_can_end() -> None:
    reachable, frontier = {Phase.HANDSHAKE}, [Phase.HANDSHAKE]
    while frontier:
        for nxt in ALLOWED[frontier.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(Phase)
    assert all(Phase.DEAD in ALLOWED[phase] for phase in Phase if phase is not Phase.DEAD)
    assert ALLOWED[Phase.DEAD] == frozenset()
    assert set(PUBLIC) == set(Phase)


def test_a_move_the_table_does_not_list_is_refused() -> None:
    assert check_move(Phase.ACTIVE, Phase.PAUSED)
    assert not check_move(Phase.DEAD, Phase.DEAD)  # staying put changes nothing
    with pytest.raises(TransitionError, match="dead -> active"):
        check_move(Phase.DEAD, Phase.ACTIVE)
    with pytest.raises(TransitionError):
        check_move(Phase.HANDSHAKE, Phase.ACTIVE)  # never live without a broker handshake


class _Transport:
    """Records what the gate asks of a socket."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.closing = False

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")

    def is_closing(self) -> bool:
        return self.closing


def test_the_gate_reads_only_when_no_hold_is_left() -> None:
    gate, transport = ReadGate(), _Transport()
    gate.attach(transport)  # type: ignore[arg-type]
    gate.hold(Hold.PUSHBACK)
    gate.hold(Hold.RATE)
    gate.hold(Hold.RATE)  # the same reason twice is one hold
    gate.release(Hold.PUSHBACK)
    assert transport.calls == ["pause"]
    assert gate.holds == Hold.RATE
    gate.release(Hold.RATE)
    assert transport.calls == ["pause", "resume"]
    gate.release(Hold.COALESCE)  # a reason never held: nothing to do
    assert transport.calls == ["pause", "resume"]


def test_a_new_transport_gets_the_holds_already_on() -> None:
    gate, transport = ReadGate(), _Transport()
    gate.hold(Hold.PUSHBACK)  # before the broker's socket exists
    gate.attach(transport)  # type: ignore[arg-type]
    assert transport.calls == ["pause"]
    gate.attach(None)
    gate.release(Hold.PUSHBACK)  # detached: nothing to tell
    assert transport.calls == ["pause"]


def test_a_closing_transport_is_left_alone() -> None:
    gate, transport = ReadGate(), _Transport()
    gate.attach(transport)  # type: ignore[arg-type]
    transport.closing = True
    gate.hold(Hold.PAUSED)
    assert transport.calls == []
