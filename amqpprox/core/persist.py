"""The state file (``amqpprox --stateFile PATH``): the configuration across restarts and crashes.

``StateFile.attach`` makes it ``ProxyState.on_change``: after every successful change
(control socket, REST, dashboard, definitions import, listeners, TLS, VHOST PAUSE) the
definitions document (``definitions.export``) is written before the front end replies,
atomically (temporary file in the same folder, fsync, ``os.replace``, fsync of the
folder; mode 0600), so a crash leaves either the previous document or the new one.
A document equal to the last one written is not written again. ``load`` applies the
file at start, all or nothing; its errors name the file. Blocking I/O, a few KB per
change: it runs on the event loop, never per frame or per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from amqpprox.core import definitions
from amqpprox.core.context import Context
from amqpprox.errors import AmqpproxError, InvalidArgument

log = logging.getLogger("amqpprox.persist")


class StateFileError(AmqpproxError):
    """The change was made in memory but could not be saved: it is not acknowledged."""

    code = "state_file"
    http_status = 500


def encode(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data``: a crash at any point leaves the old file or the new one."""
    folder = path.parent
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:  # mkstemp: mode 0600
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power loss
    finally:
        os.close(dir_fd)


class StateFile:
    """One state file; ``attach`` saves every change of a Context to it."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._written: bytes | None = None
        self.writes = 0

    def exists(self) -> bool:
        return self.path.exists()

    def _error(self, text: str) -> str:
        return f"state file {self.path}: {text}"

    async def load(self, ctx: Context) -> None:
        """Apply the file (all or nothing); ``InvalidArgument``/``InvalidState`` name it."""
        try:
            raw = await asyncio.to_thread(self.path.read_bytes)
            document = json.loads(raw.decode("utf-8"))
        except OSError as error:
            raise InvalidArgument(self._error(error.strerror or str(error))) from error
        except (ValueError, UnicodeDecodeError) as error:
            raise InvalidArgument(self._error(f"not valid JSON: {error}")) from error
        if not isinstance(document, dict):
            raise InvalidArgument(self._error("not a definitions document (a JSON object)"))
        try:
            await definitions.apply(ctx, document)
        except AmqpproxError as error:
            raise type(error)(self._error(error.message)) from error

    def save(self, ctx: Context) -> None:
        """Write the current configuration unless it is what the file holds already."""
        data = encode(definitions.export(ctx))
        if data == self._written:
            return
        try:
            write_atomically(self.path, data)
        except OSError as error:
            log.error("Could not write the state file %s: %s", self.path, error)
            raise StateFileError(
                self._error(f"the change was made but not saved: {error.strerror or error}")
            ) from error
        self._written = data
        self.writes += 1

    def attach(self, ctx: Context) -> None:
        """Save now, then after every change of ``ctx``'s configuration."""
        self.save(ctx)
        ctx.state.on_change = lambda: self.save(ctx)
