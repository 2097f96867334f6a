"""Where a control command writes its reply: in memory, or straight to a socket client.

``streaming`` says whether the reply goes to a live reader that can end it by going
away (``closed``); only then may a command keep writing (STAT LISTEN). An in-memory
output (startup scripts, tests) is never streaming: a command writes one reply and returns.

Every reply is written through :func:`logsetup.escape_lines`: whatever a command renders,
no control character but the line feed reaches the reader's terminal (names are escaped
field by field before, see ``helpers.shown``, so they cannot add a line either).

Imports ``logsetup`` only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar

from amqpprox.logsetup import escape_lines

log = logging.getLogger("amqpprox.control")


class ControlOutput:
    """A reply collected in memory (``parts``); not streaming, so never ``closed``."""

    streaming: ClassVar[bool] = False

    def __init__(self) -> None:
        self.parts: list[str] = []

    @property
    def closed(self) -> bool:
        """True once the reader has gone; a streaming command stops writing then."""
        return False

    async def write(self, text: str) -> None:
        self.parts.append(escape_lines(text))


class StreamOutput(ControlOutput):
    """A reply written straight to a control-socket client, which may go away at any time."""

    streaming: ClassVar[bool] = True

    def __init__(self, writer: asyncio.StreamWriter, write_timeout: float) -> None:
        super().__init__()
        self._writer = writer
        self._write_timeout = write_timeout

    @property
    def closed(self) -> bool:
        return self._writer.is_closing()

    async def write(self, text: str) -> None:
        if text and not self._writer.is_closing():
            self._writer.write(escape_lines(text).encode())
            try:
                # A reader that stops reading (say, a stalled STAT LISTEN) is dropped.
                await asyncio.wait_for(self._writer.drain(), self._write_timeout)
            except TimeoutError:
                log.info("control client stopped reading its reply; dropping it")
                self._writer.transport.abort()
