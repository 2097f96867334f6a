"""Backend states and health checks: ``BACKEND STATE``, ``BACKEND HEALTH`` and ``HEALTH``.

``BACKEND STATE`` and ``BACKEND HEALTH`` are sub-commands added to the BACKEND verb
(``registry.subcommand``); the original's BACKEND words keep their replies. Success is
silent, as the original's configuration commands; every error is one line.

Imports the registry and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

import time

from amqpprox.admin.control.helpers import shown
from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command, subcommand
from amqpprox.core import health_ops
from amqpprox.core.context import Context
from amqpprox.core.digits import ascii_digits
from amqpprox.core.health_ops import HealthRow
from amqpprox.errors import InvalidArgument

_STATE_USAGE = "BACKEND STATE requires a backend name and a state: ready | drain | maint\n"
_CHECK_USAGE = "HEALTH CHECK requires (backend | DEFAULT) interval_ms [timeout_ms rise fall]\n"
_DISABLE_USAGE = "HEALTH DISABLE requires a backend name or DEFAULT\n"


@subcommand(
    "BACKEND",
    "STATE",
    "STATE name (ready | drain | maint) - Let a backend take new sessions, or not (drain, "
    "maint); its sessions continue",
)
async def _backend_state(ctx: Context, args: list[str], out: ControlOutput) -> None:
    if len(args) != 2:
        await out.write(_STATE_USAGE)
        return
    health_ops.set_backend_state(ctx, args[0], args[1])


@subcommand(
    "BACKEND",
    "HEALTH",
    "HEALTH [name] - Print each backend's state, health, last check and consecutive counts",
)
async def _backend_health(ctx: Context, args: list[str], out: ControlOutput) -> None:
    rows = [health_ops.health_row(ctx, args[0])] if args else health_ops.health_rows(ctx)
    now = time.time()
    await out.write("".join(health_line(row, now) + "\n" for row in rows))


def health_line(row: HealthRow, now: float) -> str:
    """``name state=.. health=.. last_check=ok|failed|none age=..s successes=.. failures=..
    check=interval/timeout/rise/fall|off [error=...]``."""
    age = row.age(now)
    if row.check is None:
        check = "off"
    else:
        c = row.check
        check = f"{c.interval_ms}/{c.timeout_ms}/{c.rise}/{c.fall}"
        check += "(default)" if row.check_is_default else ""
    line = (
        f"{shown(row.name)} state={row.state} health={row.status} "
        f"last_check={row.last_result or 'none'} "
        f"age={'-' if age is None else f'{age:.1f}s'} "
        f"successes={row.consecutive_successes} failures={row.consecutive_failures} "
        f"check={check}"
    )
    if row.last_error:
        line += f" error={shown(row.last_error)}"
    return line


def _target(word: str) -> str | None:
    return None if word == "DEFAULT" else word


def _number(text: str) -> int:
    if not ascii_digits(text) or len(text) > 9:
        raise InvalidArgument(f"not a number: {text!r}", legacy_text=f"Bad number '{text}'\n")
    return int(text)


@command(
    "HEALTH",
    "CHECK (backend | DEFAULT) interval_ms [timeout_ms rise fall] - Check a backend (or every "
    "backend without its own settings) with an AMQP handshake",
    "DISABLE (backend | DEFAULT) - Stop the active checks of a backend, or the default ones",
)
async def _health(ctx: Context, args: list[str], out: ControlOutput) -> None:
    sub = args[0].upper() if args else ""
    if sub == "CHECK":
        if len(args) not in (3, 6):
            await out.write(_CHECK_USAGE)
            return
        numbers = [_number(text) for text in args[2:]]
        rest = dict(zip(("timeout_ms", "rise", "fall"), numbers[1:], strict=False))
        try:
            health_ops.put_health_check(ctx, _target(args[1]), numbers[0], **rest)
        except InvalidArgument as error:
            await out.write(error.message + "\n")
    elif sub == "DISABLE":
        if len(args) != 2:
            await out.write(_DISABLE_USAGE)
            return
        health_ops.delete_health_check(ctx, _target(args[1]))
    else:
        await out.write(f"Subcommand '{shown(sub)}' not recognized.\n")
