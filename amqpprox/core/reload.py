"""Reloading the ``--definitions`` file while running (SIGHUP, ``--watchDefinitions``).

A ``Reloader`` reads the file and applies it as ``PUT /api/v1/definitions`` does
(``core.definitions.apply``: all or nothing), logs what changed, and counts the result
in ``ctx.stats`` (``config_reloads``, ``config_last_success``). A file that cannot be
read, is not JSON or is invalid (in part or whole) changes nothing; the reason is logged.
Reloads run one at a time. ``changed`` reloads only when the file's content (its
SHA-256) differs from the last one read, which is what a file watcher wants. Without
``--definitions`` a reload is logged and ignored, and not counted. The only I/O is
reading the file; the watcher that calls ``changed`` lives outside ``core``
(``amqpprox.filewatch``). Must not import ``proxy`` or ``admin``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any

from amqpprox.core import definitions
from amqpprox.core.context import Context
from amqpprox.errors import AmqpproxError, InvalidArgument

log = logging.getLogger("amqpprox.reload")

MAX_FILE_BYTES = 64 * 1024 * 1024


def read_document(path: str) -> tuple[bytes, object]:
    """The file's bytes and the JSON document in them; ``InvalidArgument`` names the problem."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise InvalidArgument(f"definitions file {path}: {error.strerror or error}") from error
    if len(data) > MAX_FILE_BYTES:
        raise InvalidArgument(f"definitions file {path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        return data, json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"definitions file {path}: not valid JSON: {error}") from error


def describe(changes: dict[str, Any]) -> str:
    """A diff of ``definitions.diff`` in one line: ``backends added [b2]; datacenter changed``."""
    parts: list[str] = []
    for section, change in changes.items():
        if change is None:
            continue
        if isinstance(change, dict) and set(change) == {"added", "removed", "changed"}:
            for what in ("added", "changed", "removed"):
                if change[what]:
                    parts.append(f"{section} {what} [{', '.join(change[what])}]")
        else:
            parts.append(f"{section} changed")
    return "; ".join(parts) or "no changes"


class Reloader:
    """Applies the definitions file of ``ctx.settings`` on demand, one reload at a time."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.path = ctx.settings.definitions_file
        self._lock = asyncio.Lock()
        self._digest: bytes | None = None
        self._tasks: set[asyncio.Task[bool | None]] = set()

    async def load_at_start(self) -> None:
        """Apply the file before anything serves; raises (naming the file) when invalid."""
        assert self.path is not None
        data, document = read_document(self.path)
        try:
            await definitions.apply(self.ctx, document)
        except AmqpproxError as error:
            raise type(error)(f"definitions file {self.path}: {error.message}") from error
        self._digest = hashlib.sha256(data).digest()
        self.ctx.stats.config_last_success = time.time()

    async def reload(self, trigger: str, *, only_if_changed: bool = False) -> bool | None:
        """Re-read and apply the file: True if applied, False if refused, None if skipped
        (no --definitions, or ``only_if_changed`` and the content is the same)."""
        if self.path is None:
            log.warning("%s: no --definitions file to reload; nothing changed", trigger)
            return None
        async with self._lock:
            try:
                data, document = read_document(self.path)
                digest = hashlib.sha256(data).digest()
                if only_if_changed and digest == self._digest:
                    return None
                self._digest = digest
                result = await definitions.apply(self.ctx, document)
            except AmqpproxError as error:
                self.ctx.stats.config_reloaded(False, time.time())
                text = error.message
                if not text.startswith("definitions file "):
                    text = f"definitions file {self.path}: {text}"
                log.error("%s: reload failed, nothing changed: %s", trigger, text)
                return False
            except Exception:
                self.ctx.stats.config_reloaded(False, time.time())
                log.exception("%s: reload of %s failed, nothing changed", trigger, self.path)
                return False
        self.ctx.stats.config_reloaded(True, time.time())
        log.info(
            "%s: reloaded definitions file %s: %s", trigger, self.path, describe(result["changes"])
        )
        return True

    def _spawn(self, trigger: str, only_if_changed: bool) -> None:
        task = asyncio.get_running_loop().create_task(
            self.reload(trigger, only_if_changed=only_if_changed), name="reload"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_sighup(self) -> None:
        """The SIGHUP handler: reload the file (even when its content is the same)."""
        self._spawn("SIGHUP", only_if_changed=False)

    def changed(self) -> None:
        """The file watcher's callback: reload if the content differs from the last read."""
        self._spawn("definitions file changed", only_if_changed=True)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
