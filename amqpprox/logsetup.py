"""Logging: the original's levels 0..5 on the console and in sequenced, rotating files.

Levels: 0 FATAL, 1 ERROR, 2 WARN, 3 INFO, 4 DEBUG, 5 TRACE; a record is shown when its
level is at or below the configured verbosity (``LOG CONSOLE n`` / ``LOG FILE n`` change
that at run time; as upstream there is no range check there: a negative value silences
the sink, anything above 5 shows everything).

Line formats, as the original's (upstream reference §9.5):

* console: ``<LEVEL>[ [<vhost>]][ <connId>]: <message>``
* file: ``<UTC time> <lineId> <pid>-<threadId> <LEVEL>[ [<vhost>]][ <connId>]: <message>``,
  the time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``

Files live in ``--logDirectory`` as ``amqpprox_<YYYYMMDD>_<NNNNN>.log``; a new file (the
next number) is started at 32 MiB and when the UTC date changes, and the oldest files
are deleted to keep the directory under 1 GiB.

A session's vhost and connection id come from the record: ``extra={"vhost": ...,
"conn_id": ...}`` (what :class:`SessionLogAdapter` adds), else the :data:`session_context`
context variable, else the ``"session %d ..."`` message convention of the data plane
(connection id only).

Untrusted text (a vhost or ``connection_name`` an AMQP client sent, a name from the REST
API) must never start a line of its own nor reach a terminal as an escape sequence:
:func:`escape_controls` renders control characters visibly (``\\n``, ``\\r``, ``\\t``,
``\\x1b``, ``\\u2028``...), leaving printable text, non-ASCII letters and backslashes
byte-identical. Both formatters apply it to the whole line after %-formatting, so every
record is one physical line; a traceback follows as continuation lines, each starting
with ``CONTINUATION`` (never with a record's prefix). The control socket's replies use
the same helper. Imports nothing of ours.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import itertools
import logging
import logging.handlers
import os
import re
import shutil
import time
from collections.abc import Callable, MutableMapping
from threading import get_ident
from typing import Any, Protocol

TRACE = 5
logging.addLevelName(TRACE, "TRACE")
logging.addLevelName(logging.CRITICAL, "FATAL")
logging.addLevelName(logging.WARNING, "WARN")

_VERBOSITY_LEVELS = {
    0: logging.CRITICAL,
    1: logging.ERROR,
    2: logging.WARNING,
    3: logging.INFO,
    4: logging.DEBUG,
    5: TRACE,
}
SILENT = logging.CRITICAL + 10
FILE_MAX_BYTES = 32 * 1024 * 1024
DIRECTORY_MAX_BYTES = 1024 * 1024 * 1024
MIN_FREE_BYTES = 100 * 1024 * 1024
DEFAULT_FILE_VERBOSITY = 3
_FILE_NAME = re.compile(r"^amqpprox_(\d{8})_(\d{5})\.log$")


def level_for(verbosity: int) -> int:
    """The logging level of a verbosity 0..5 (the command line's strict range)."""
    if verbosity not in _VERBOSITY_LEVELS:
        raise ValueError("Console log verbosity must be between 0 and 5")
    return _VERBOSITY_LEVELS[verbosity]


def level_for_any(verbosity: int) -> int:
    """As ``level_for``, without a range check (``LOG CONSOLE|FILE n``, as upstream)."""
    if verbosity < 0:
        return SILENT
    if verbosity > 5:
        return 1
    return _VERBOSITY_LEVELS[verbosity]


# -- untrusted text ------------------------------------------------------------------------
# C0 controls (incl. \n \r \t ESC), DEL, C1 controls, the Unicode line and paragraph
# separators, and lone surrogates (which no UTF-8 encoder can write).
# Bidirectional controls (U+200E, U+200F, U+202A..U+202E, U+2066..U+2069) reorder what a
# terminal shows: escaped too, so a name cannot make a line read otherwise.
_BIDI = "\u200e\u200f\u202a-\u202e\u2066-\u2069"
UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI}\ud800-\udfff]")
# The same but the line feed: for text made of several lines, each already escaped.
_UNSAFE_BUT_LF = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029{_BIDI}\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
CONTINUATION = "  | "


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character, line separator and lone surrogate escaped.

    Printable text (non-ASCII letters and the backslash included) is returned unchanged,
    so a name without such characters prints byte for byte as it is.
    """
    if text.isprintable():  # the fast path: none of UNSAFE is printable
        return text
    return UNSAFE.sub(_escape_one, text)


def escape_lines(text: str) -> str:
    """As :func:`escape_controls`, but line feeds are kept: for text made of lines."""
    return _UNSAFE_BUT_LF.sub(_escape_one, text)


def has_controls(text: str) -> bool:
    """Whether ``text`` holds a character :func:`escape_controls` would escape."""
    return UNSAFE.search(text) is not None


def _one_line(line: str, record: logging.LogRecord, formatter: logging.Formatter) -> str:
    """The escaped record line, then its traceback or stack as marked continuation lines."""
    text = escape_controls(line)
    extra = []
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        extra.append(record.exc_text)
    if record.stack_info:
        extra.append(formatter.formatStack(record.stack_info))
    for block in extra:
        for part in block.split("\n"):
            text += "\n" + CONTINUATION + escape_controls(part)
    return text


# -- session attributes --------------------------------------------------------------------
class _SessionLike(Protocol):
    id: int
    vhost: str


session_context: contextvars.ContextVar[_SessionLike | None] = contextvars.ContextVar(
    "amqpprox_session", default=None
)


class SessionLogAdapter(logging.LoggerAdapter[logging.Logger]):
    """Adds the session's vhost and connection id to every record (read at log time)."""

    def __init__(self, logger: logging.Logger, session: _SessionLike) -> None:
        super().__init__(logger, {})
        self.session = session

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("vhost", self.session.vhost)
        extra.setdefault("conn_id", self.session.id)
        kwargs["extra"] = extra
        return msg, kwargs


def _session_tag(msg: object, args: object, vhost: object = None, conn_id: object = None) -> str:
    """``" [<vhost>] <connId>"`` (each part only when known) for a record of ``msg`` %
    ``args``: from the record's extras, else the session context, else the message."""
    if vhost is None and conn_id is None:
        current = session_context.get()
        if current is not None:
            vhost, conn_id = current.vhost, current.id
        elif (
            isinstance(msg, str)
            and msg.startswith("session %d")
            and isinstance(args, tuple)
            and args
            and isinstance(args[0], int)
        ):
            conn_id = args[0]
    tag = ""
    if vhost:
        tag += f" [{vhost}]"
    if conn_id is not None:
        tag += f" {conn_id}"
    return tag


class SessionFields(logging.Filter):
    """Sets ``record.session_tag`` to ``" [<vhost>] <connId>"`` (each part only when known)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.session_tag = _session_tag(
            record.msg,
            record.args,
            getattr(record, "vhost", None),
            getattr(record, "conn_id", None),
        )
        return True


class _LineIds(logging.Filter):
    """Numbers the records a sink writes, as the original's ``lineId``."""

    def __init__(self) -> None:
        super().__init__()
        self.ids = itertools.count(1)

    def filter(self, record: logging.LogRecord) -> bool:
        record.line_id = next(self.ids)
        return True


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(levelname)s%(session_tag)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "session_tag"):
            SessionFields().filter(record)
        record.message = record.getMessage()
        line = self.formatMessage(record)
        return _one_line(line, record, self)


class FileFormatter(logging.Formatter):
    _stamp_second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "session_tag"):
            SessionFields().filter(record)
        line_id = getattr(record, "line_id", 0)
        tag = getattr(record, "session_tag", "")
        head = self.head(record.created, line_id, record.levelname, tag)
        return _one_line(head + record.getMessage(), record, self)

    def head(self, created: float, line_id: int, level: str, tag: str) -> str:
        """What a file line starts with: time, line id, process-thread, level, session."""
        second = int(created)
        if second != self._stamp_second:  # one strftime per second, not per line
            self._stamp_second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        micros = int((created % 1) * 1_000_000)
        return f"{self._stamp}.{micros:06d}Z {line_id} {_PID[0]}-{get_ident()} {level}{tag}: "


# The process id the file format shows (logging.logProcesses is off: see configure).
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


# -- files ---------------------------------------------------------------------------------
def _next_utc_midnight(now: float) -> float:
    return (now // 86400 + 1) * 86400


def _utc_day(now: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(now))


LOG_FILE_MODE = 0o640


class SequencedFileHandler(logging.handlers.BaseRotatingHandler):
    """Writes ``amqpprox_<YYYYMMDD>_<NNNNN>.log``; the next number at ``max_bytes`` or a new day."""

    def __init__(
        self,
        directory: str,
        max_bytes: int = FILE_MAX_BYTES,
        *,
        directory_max_bytes: int = DIRECTORY_MAX_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.max_bytes = max_bytes
        self.directory_max_bytes = directory_max_bytes
        self._clock = clock
        self._day = _utc_day(clock())
        self._day_ends = _next_utc_midnight(clock())
        self._number = self._next_number(self._day)
        self._size = 0  # bytes in the current file: counted, not asked of the stream
        super().__init__(self._path(), "a", encoding="utf-8", delay=False)

    def _path(self) -> str:
        return os.path.join(self.directory, f"amqpprox_{self._day}_{self._number:05d}.log")

    def _log_files(self) -> list[tuple[str, str, int]]:
        found = []
        for name in os.listdir(self.directory):
            match = _FILE_NAME.match(name)
            if match:
                found.append((name, match.group(1), int(match.group(2))))
        return sorted(found, key=lambda f: (f[1], f[2]))

    def _next_number(self, day: str) -> int:
        numbers = [n for _name, d, n in self._log_files() if d == day]
        return max(numbers) + 1 if numbers else 0

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 (logging's name)
        return self._needs_new_file(len(self.format(record)) + 1)

    def _needs_new_file(self, line_bytes: int) -> bool:
        if self._clock() >= self._day_ends:  # a number compare, not a date format per line
            return True
        size = self._size
        return size > 0 and size + line_bytes > self.max_bytes

    def emit(self, record: logging.LogRecord) -> None:
        """Format once, roll over if needed, write and flush (one ``write`` syscall)."""
        try:
            self.write_line(self.format(record) + "\n")
        except RecursionError:
            raise
        except Exception:  # logging's contract: report, never raise
            self.handleError(record)

    def write_line(self, line: str) -> None:
        """Write one formatted line (its newline included), rolling over first if needed."""
        size = len(line) if line.isascii() else len(line.encode("utf-8"))
        if self._needs_new_file(size):
            self.doRollover()
        stream = self.stream
        if stream is None:
            stream = self.stream = self._open()
        stream.write(line)
        stream.flush()
        self._size += size

    def _open(self) -> io.TextIOWrapper:
        stream = super()._open()
        # Owner and group only: the log names clients, vhosts and backends.
        with contextlib.suppress(OSError):
            os.fchmod(stream.fileno(), LOG_FILE_MODE)
        try:
            self._size = os.fstat(stream.fileno()).st_size
        except OSError:
            self._size = 0
        return stream

    def doRollover(self) -> None:  # noqa: N802 (logging's name)
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        now = self._clock()
        self._day_ends = _next_utc_midnight(now)
        day = _utc_day(now)
        if day != self._day:
            self._day = day
            self._number = self._next_number(day)
        else:
            self._number += 1
        self.baseFilename = os.path.abspath(self._path())
        self._prune()
        self.stream = self._open()

    def _prune(self) -> None:
        """Delete the oldest files while the directory is too big or the disk too full."""
        files = self._log_files()
        sizes = {
            name: os.path.getsize(os.path.join(self.directory, name)) for name, _d, _n in files
        }
        total = sum(sizes.values())
        current = os.path.basename(self.baseFilename)
        for name, _day, _number in files:
            free = shutil.disk_usage(self.directory).free
            # Room for the file about to be written, up to its own cap.
            if total + self.max_bytes <= self.directory_max_bytes and free >= MIN_FREE_BYTES:
                break
            if name == current:
                continue
            os.unlink(os.path.join(self.directory, name))
            total -= sizes[name]


# -- configuration -------------------------------------------------------------------------
_sinks: dict[str, logging.Handler] = {}


class _HotFile:
    """The file sink with its formatter and line ids, for ``hot_info`` to write to."""

    __slots__ = ("console", "formatter", "handlers", "ids", "sink")

    def __init__(
        self,
        console: logging.Handler,
        sink: SequencedFileHandler,
        formatter: FileFormatter,
        ids: _LineIds,
    ) -> None:
        self.console = console
        self.handlers = [console, sink]  # the ``amqpprox`` logger's, as configure left them
        self.sink = sink
        self.formatter = formatter
        self.ids = ids


_hot: list[_HotFile] = []  # what configure made (none or one)
_ROOT = logging.getLogger("amqpprox")


def hot_info(logger: logging.Logger, msg: str, *args: object) -> None:
    """``logger.info(msg, *args)`` for a line logged on a busy path (a session's start).

    While this module's two sinks are the only ones (no handler or filter added to the
    logger or its ``amqpprox`` parent) and only the file shows INFO, the file line is
    built and written here, as the sink would write it (same line id sequence, format and
    escaping), without a ``LogRecord``, the filters and the handler chain: about 60 %
    of the cost of a ``logger.info``. Otherwise, ``logger.info`` itself.
    """
    hot = _hot[0] if _hot else None
    if (
        hot is None
        or hot.console.level <= logging.INFO  # the console shows it too
        or hot.sink.level > logging.INFO  # the file does not
        or logger.handlers
        or logger.filters
        or not logger.propagate
        or logger.parent is not _ROOT
        or _ROOT.filters
        or _ROOT.handlers != hot.handlers
    ):
        logger.info(msg, *args)
        return
    if not logger.isEnabledFor(logging.INFO):  # cached by logging; logging.disable too
        return
    sink = hot.sink
    sink.acquire()  # as Handler.handle
    try:
        tag = _session_tag(msg, args)
        head = hot.formatter.head(time.time(), next(hot.ids.ids), "INFO", tag)
        sink.write_line(escape_controls(head + msg % args) + "\n")
    except RecursionError:
        raise
    except Exception:  # as emit: report, never raise
        sink.handleError(logging.LogRecord(logger.name, logging.INFO, "", 0, msg, args, None))
    finally:
        sink.release()


def configure(
    log_directory: str, console_verbosity: int, file_verbosity: int = DEFAULT_FILE_VERBOSITY
) -> None:
    """Install the console (stderr) and file sinks on the ``amqpprox`` logger."""
    root = logging.getLogger("amqpprox")
    root.setLevel(1)
    root.propagate = False
    # Neither format shows the caller's file or line: skip the stack walk per record (the
    # logging documentation's "Optimization" advice).
    logging._srcfile = None
    logging.logMultiprocessing = False
    # Every record would ask the kernel for the process id (glibc does not cache getpid):
    # the file format takes it from _PID instead, refreshed in a forked child.
    logging.logProcesses = False
    # Nor the thread's name (which no format shows): the file format asks for the thread's
    # id when it writes the line, in the thread that logs.
    logging.logThreads = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    _sinks.clear()
    console = logging.StreamHandler()
    console.addFilter(SessionFields())
    console.setFormatter(ConsoleFormatter())
    console.setLevel(level_for(console_verbosity))
    root.addHandler(console)
    file = SequencedFileHandler(log_directory)
    line_ids = _LineIds()
    formatter = FileFormatter()
    file.addFilter(SessionFields())
    file.addFilter(line_ids)
    file.setFormatter(formatter)
    file.setLevel(level_for_any(file_verbosity))
    root.addHandler(file)
    _sinks.update(console=console, file=file)
    _hot[:] = [_HotFile(console, file, formatter, line_ids)]
    _sync_logger_level()


def _sync_logger_level() -> None:
    """Let the logger drop what no sink wants before a record is even built.

    With the logger at the lowest sink level, ``log.debug(...)`` on a busy path costs a
    level comparison instead of a LogRecord (the logging module caches the answer).
    """
    root = logging.getLogger("amqpprox")
    levels = [handler.level for handler in _sinks.values()]
    root.setLevel(min(levels) if levels else logging.WARNING)


def unconfigure() -> None:
    """Remove and close the sinks ``configure`` installed (tests)."""
    root = logging.getLogger("amqpprox")
    for handler in _sinks.values():
        root.removeHandler(handler)
        handler.close()
    _sinks.clear()
    _hot.clear()


def set_console_verbosity(verbosity: int) -> None:
    if "console" in _sinks:
        _sinks["console"].setLevel(level_for_any(verbosity))
        _sync_logger_level()


def set_file_verbosity(verbosity: int) -> None:
    if "file" in _sinks:
        _sinks["file"].setLevel(level_for_any(verbosity))
        _sync_logger_level()


def sink(name: str) -> logging.Handler | None:
    """The configured ``console`` or ``file`` handler, if any."""
    return _sinks.get(name)
