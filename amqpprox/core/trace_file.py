"""A trace written to a file as JSON lines: created 0600, never over an existing file.

Trace files live in one directory (``Settings.trace_directory``, by default ``traces``
under the log directory), so REST and the control socket cannot create files anywhere
else. ``create`` opens the file with ``O_CREAT | O_EXCL`` (and ``O_NOFOLLOW``), so a
trace never overwrites or follows anything already there; the refusal is a typed error
the front ends map (exists: ``AlreadyExists``; outside the directory, not writable:
``InvalidArgument``). ``write_lines`` is the file's reader task: it drains the trace's
events into the file until the trace stops, then closes it. A write error stops the
trace (``StopReason.FILE_ERROR``) and the session goes on untouched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import IO

from amqpprox.core.traces import StopReason, Trace, TraceReader
from amqpprox.errors import AlreadyExists, InvalidArgument

log = logging.getLogger("amqpprox.trace")

# The file keeps up with the trace better than a browser: a longer queue before it drops.
FILE_READER_EVENTS = 10_000


def create(path: str, directory: str) -> tuple[str, IO[str]]:
    """Create a new trace file in ``directory`` (made 0700 if missing); the path created
    and the file, open for writing. ``path`` is a file name, or an absolute path in
    ``directory``: the admin plane never writes anywhere else. An existing file (or a
    link) is refused, so nothing is ever overwritten or followed.
    """
    if not path or "\x00" in path:
        raise InvalidArgument("a trace file needs a name")
    base = os.path.realpath(directory)
    full = path if os.path.isabs(path) else os.path.join(base, path)
    if os.path.realpath(os.path.dirname(full)) != base or os.path.basename(full) in ("", ".", ".."):
        raise InvalidArgument(
            f"a trace file is a file name in the trace directory {base}: {path!r}"
        )
    full = os.path.join(base, os.path.basename(full))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        os.makedirs(base, 0o700, exist_ok=True)
        fd = os.open(full, flags, 0o600)
    except FileExistsError as error:
        raise AlreadyExists(f"trace file {full!r} exists; a trace never overwrites") from error
    except OSError as error:
        raise InvalidArgument(f"cannot create trace file {full!r}: {error.strerror}") from error
    return full, os.fdopen(fd, "w", encoding="utf-8")


async def write_lines(trace: Trace, reader: TraceReader, out: IO[str]) -> None:
    """Write the trace's events to ``out`` until the trace stops (then close ``out``)."""
    try:
        while True:
            await reader.wait()
            events = reader.take(1000)
            if events:
                out.write("".join(json.dumps(e) + "\n" for e in events))
                out.flush()
            elif reader.closed:
                return
    except OSError as error:
        log.warning("trace %d: writing its file failed: %s", trace.id, error)
        trace.registry.stop(trace.id, StopReason.FILE_ERROR, str(error))
    finally:
        reader.detach()
        with contextlib.suppress(OSError):
            out.close()
