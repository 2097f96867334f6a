"""The control verbs' registry: each command module registers its own verbs, once, in HELP.

The bytes of HELP and of every reply are checked against the original by
test_control_replies.py; this covers how the verbs get there.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from amqpprox.admin import control
from amqpprox.admin.control import commands, registry
from amqpprox.core.context import Context, Settings
from amqpprox.core.model import ListenerSpec

# Which verbs each command module registers.
VERBS_BY_MODULE = {
    "help_exit": {"HELP", "EXIT"},
    "sessions": {"CONN", "SESSION"},
    "backends": {"BACKEND"},
    "farms": {"FARM"},
    "maps": {"MAP"},
    "datacenter": {"DATACENTER"},
    "listen": {"LISTEN"},
    "log": {"LOG"},
    "maphostname": {"MAPHOSTNAME"},
    "vhost": {"VHOST"},
    "stat": {"STAT"},
    "tls": {"TLS"},
    "limits": {"LIMIT"},
    "auth": {"AUTH"},
    "health": {"HEALTH"},
    "vhost_moves": set(),  # subcommands only: BACKEND EVICT/EVICTIONS, VHOST MIGRATE/MIGRATIONS
    "trace": {"TRACE"},
}


def test_each_command_module_registers_its_own_verbs() -> None:
    registered: dict[str, set[str]] = {}
    for verb, cmd in control.COMMANDS.items():
        module = cmd.handler.__module__
        assert module.startswith(commands.__name__ + "."), (verb, module)
        registered.setdefault(module.rsplit(".", 1)[1], set()).add(verb)
    assert registered == {module: verbs for module, verbs in VERBS_BY_MODULE.items() if verbs}
    assert [m.__name__.rsplit(".", 1)[1] for m in commands.MODULES] == list(VERBS_BY_MODULE)


def test_help_lists_every_registered_verb_in_alphabetical_order() -> None:
    lines = control.help_text().splitlines()
    verbs = [line.split(" ", 1)[0] for line in lines]
    assert verbs == sorted(verbs)
    assert set(verbs) == set(control.COMMANDS)
    for verb, cmd in control.COMMANDS.items():
        assert [line for line in lines if line.split(" ", 1)[0] == verb] == [
            f"{verb} {help_line}" for help_line in cmd.help_lines
        ]


async def _nothing(ctx: Context, args: list[str], out: control.ControlOutput) -> None:
    del ctx, args, out


def test_a_verb_registered_twice_is_refused() -> None:
    before = dict(control.COMMANDS)
    with pytest.raises(ValueError, match="HELP is registered twice"):
        registry.command("HELP", "Print something else.")(_nothing)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("LIMIT", ("PRINT - again",), _nothing)
    assert before == control.COMMANDS


@pytest.mark.parametrize(
    ("verb", "help_lines"),
    [("help2 ", ("x",)), ("lower", ("x",)), ("", ("x",)), ("TWO WORDS", ("x",)),
     ("NEW", ()), ("NEW", ("a\nb",)), ("NEW", ("",))],
)  # fmt: skip
def test_a_malformed_registration_is_refused(verb: str, help_lines: tuple[str, ...]) -> None:
    before = dict(control.COMMANDS)
    with pytest.raises(ValueError):
        registry.register(verb, help_lines, _nothing)
    assert before == control.COMMANDS


class _NoListeners:
    async def start(self, spec: ListenerSpec) -> int:
        raise AssertionError("no listener is started here")

    async def stop(self, port: int | None = None) -> list[int]:
        return []

    def specs(self) -> list[ListenerSpec]:
        return []


async def test_stat_listen_to_an_output_that_does_not_stream_writes_one_report(
    tmp_path: Path,
) -> None:
    ctx = Context(
        Settings(control_socket=str(tmp_path / "c"), log_directory=str(tmp_path)),
        _NoListeners(),
    )
    assert not control.ControlOutput.streaming and control.StreamOutput.streaming
    # A streaming command writing to an in-memory output would never finish.
    reply = await asyncio.wait_for(control.run_line(ctx, "STAT LISTEN json overall"), 5)
    assert reply.endswith("\n") and reply.count("\n") == 1
    assert json.loads(reply)["activeConnectionCount"] == 0
