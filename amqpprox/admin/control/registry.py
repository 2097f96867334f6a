"""The control verbs: their registry, HELP, and running one command line.

Each command module registers its own verbs with :func:`command`, giving the help lines
HELP prints for them. A verb is registered once; a second registration is refused.
HELP's order is fixed by a rule, not by which module was imported first: verbs in
alphabetical order (as the original, which keeps its commands in a sorted map), each
verb's lines in the order its registration gives them.

The first token of a line is the verb (case-insensitive); the rest is handed to the
command, which splits it on white space. An unknown or empty verb answers with HELP.
A module may add a sub-command word to a verb another module registered
(:func:`subcommand`, e.g. ``BACKEND STATE``): its help lines follow the verb's, and a
line whose second token is that word goes to its handler instead of the verb's.

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
# (verb, word) -> the handler of an added sub-command; it gets the tokens after the word.
SUBCOMMANDS: dict[tuple[str, str], Handler] = {}


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
    """Decorator: add sub-command ``word`` to the registered ``verb``, with its HELP lines."""

    def decorate(handler: Handler) -> Handler:
        cmd = COMMANDS.get(verb)
        if cmd is None or (verb, word) in SUBCOMMANDS or word != word.upper():
            raise ValueError(f"cannot add sub-command {word!r} to control verb {verb}")
        if not help_lines or any(not line or "\n" in line for line in help_lines):
            raise ValueError(f"sub-command {verb} {word} needs one or more single help lines")
        COMMANDS[verb] = Command(verb, cmd.help_lines + help_lines, cmd.handler)
        SUBCOMMANDS[(verb, word)] = handler
        return handler

    return decorate


def help_text() -> str:
    """HELP's reply: every verb's lines, verbs in alphabetical order."""
    return "".join(
        f"{verb} {line}\n" for verb in sorted(COMMANDS) for line in COMMANDS[verb].help_lines
    )


async def execute(ctx: Context, line: str, out: ControlOutput) -> None:
    """Run one command line, writing its reply to ``out``."""
    verb, _, rest = line.strip("\r\n").lstrip(" ").partition(" ")
    cmd = COMMANDS.get(verb.upper())
    if cmd is None:
        await out.write(help_text())
        return
    args = rest.split()
    handler = SUBCOMMANDS.get((cmd.verb, args[0].upper())) if args else None
    try:
        if handler is not None:
            await handler(ctx, args[1:], out)
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
