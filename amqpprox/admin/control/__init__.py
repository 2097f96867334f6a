"""The original's Unix-socket text protocol: one line in, the reply text out, then close.

The package's modules each have one job:

* ``output``: where a reply is written, and whether it may stream (``ControlOutput``);
* ``registry``: the verbs, HELP, and running one line (``execute``, ``run_line``);
* ``server``: the socket file and its clients (``ControlServer``);
* ``helpers``: small token parsers and CONN's line (``conn_line``);
* ``commands``: one module per family of verbs, each registering its own.

Commands parse tokens, call ``core.operations`` and render the original's text; they keep
no state of their own. Nothing here imports ``amqpprox.proxy`` (tests/unit/test_layering.py).
"""

from __future__ import annotations

from amqpprox.admin.control import commands
from amqpprox.admin.control.helpers import conn_line
from amqpprox.admin.control.output import ControlOutput, StreamOutput
from amqpprox.admin.control.registry import (
    COMMANDS,
    Command,
    Handler,
    command,
    execute,
    help_text,
    run_line,
)
from amqpprox.admin.control.server import ControlServer

__all__ = [
    "COMMANDS",
    "Command",
    "ControlOutput",
    "ControlServer",
    "Handler",
    "StreamOutput",
    "command",
    "commands",
    "conn_line",
    "execute",
    "help_text",
    "run_line",
]
