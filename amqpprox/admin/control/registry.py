"""The control verbs: their registry, HELP, and running one command line.

Each command module registers its own verbs with :func:`command`, giving the help lines
HELP prints for them. A verb is registered once; a second registration is refused.
HELP's order is fixed by a rule, not by which module was imported first: verbs in
alphabetical order (as the original, which keeps its commands in a sorted map), each
verb's lines in the order its registration gives them.

The first token of a line is the verb (case-insensitive); the rest is handed to the
command, which splits it on white space. An unknown or empty verb answers with HELP.

A module may add a subcommand to another module's verb with :func:`subcommand` (our
additions to the original's verbs, kept out of the verb's own module): a line whose
second token is that word goes to the subcommand's handler with the tokens after it,
and HELP prints its lines after the verb's own.

Imports ``core`` and ``errors`` only, never ``amqpprox.proxy``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from amqpprox.admin.control.output import ControlOutput
from amqpprox.core.context import Context
from amqpprox.errors import AmqpproxError

log = logging.getLogger("amqpprox.control")

Handler = Callable[[Context, list[str], ControlOutput], Awaitable[None]]


@dataclass(frozen=True)
class Command:
    """One verb: its HELP lines (each printed after the verb) and its handler."""

    verb: str
    help_lines: tuple[str, ...]
    handler: Handler


COMMANDS: dict[str, Command] = {}
# verb -> SUBWORD -> the subcommand (its help lines start with the subword).
SUBCOMMANDS: dict[str, dict[str, Command]] = {}


def register(verb: str, help_lines: tuple[str, ...], handler: Handler) -> Command:
    """Add ``verb``; refuse a verb already registered, a lower-case verb or a bad help line."""
    if not verb or verb != verb.upper() or verb.split() != [verb]:
        raise ValueError(f"a control verb is one upper-case word: {verb!r}")
    if verb in COMMANDS:
        raise ValueError(f"control verb {verb} is registered twice")
    if not help_lines or any(not line or "\n" in line for line in help_lines):
        raise ValueError(f"control verb {verb} needs one or more single help lines")
    cmd = Command(verb, help_lines, handler)
    COMMANDS[verb] = cmd
    return cmd


def command(verb: str, *help_lines: str) -> Callable[[Handler], Handler]:
    """Decorator: register the handler for ``verb`` with its HELP lines (without the verb)."""

    def decorate(handler: Handler) -> Handler:
        register(verb, help_lines, handler)
        return handler

    return decorate


def subcommand(verb: str, word: str, *help_lines: str) -> Callable[[Handler], Handler]:
    """Decorator: handle ``verb word ...`` (the handler gets the tokens after ``word``)."""

    def decorate(handler: Handler) -> Handler:
        subs = SUBCOMMANDS.setdefault(verb, {})
        if word != word.upper() or word.split() != [word] or word in subs:
            raise ValueError(f"control subcommand {verb} {word!r} is invalid or registered twice")
        if not help_lines or any(not line or "\n" in line for line in help_lines):
            raise ValueError(f"control subcommand {verb} {word} needs single help lines")
        subs[word] = Command(f"{verb} {word}", help_lines, handler)
        return handler

    return decorate


def _lines(verb: str) -> list[str]:
    lines = list(COMMANDS[verb].help_lines)
    for sub in SUBCOMMANDS.get(verb, {}).values():
        lines += sub.help_lines
    return lines


def help_text() -> str:
    """HELP's reply: every verb's lines (its subcommands' after its own), verbs in
    alphabetical order."""
    return "".join(f"{verb} {line}\n" for verb in sorted(COMMANDS) for line in _lines(verb))


async def execute(ctx: Context, line: str, out: ControlOutput) -> None:
    """Run one command line, writing its reply to ``out``."""
    verb, _, rest = line.strip("\r\n").lstrip(" ").partition(" ")
    cmd = COMMANDS.get(verb.upper())
    if cmd is None:
        await out.write(help_text())
        return
    args = rest.split()
    sub = SUBCOMMANDS.get(cmd.verb, {}).get(args[0].upper()) if args else None
    try:
        if sub is not None:
            await sub.handler(ctx, args[1:], out)
        else:
            await cmd.handler(ctx, args, out)
    except AmqpproxError as error:
        await out.write(error.legacy_text)
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception:  # a bug: logged with its traceback, the control socket keeps serving
        log.exception("control command %r failed", line)
        await out.write("Internal error; see the proxy's log.\n")


async def run_line(ctx: Context, line: str) -> str:
    """Run a command line and return its whole reply (startup, tests); nothing streams."""
    out = ControlOutput()
    await execute(ctx, line, out)
    return "".join(out.parts)
