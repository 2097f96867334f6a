"""Logging: the original's levels 0..5 on the console and in rotating files.

Levels: 0 FATAL, 1 ERROR, 2 WARN, 3 INFO, 4 DEBUG, 5 TRACE; a record is shown when its
level is at or below the configured verbosity. Console lines read
``<LEVEL>: <message>`` as the original's do; file lines carry a UTC timestamp and pid.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import time

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
FILE_MAX_BYTES = 32 * 1024 * 1024
FILE_BACKUPS = 30


def level_for(verbosity: int) -> int:
    if verbosity not in _VERBOSITY_LEVELS:
        raise ValueError("Console log verbosity must be between 0 and 5")
    return _VERBOSITY_LEVELS[verbosity]


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime


_console: logging.Handler | None = None
_file: logging.Handler | None = None


def configure(log_directory: str, console_verbosity: int, file_verbosity: int = 3) -> None:
    global _console, _file
    root = logging.getLogger("amqpprox")
    root.setLevel(TRACE)
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    _console = logging.StreamHandler()
    _console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    _console.setLevel(level_for(console_verbosity))
    root.addHandler(_console)
    os.makedirs(log_directory, exist_ok=True)
    path = os.path.join(log_directory, f"amqpprox_{time.strftime('%Y%m%d', time.gmtime())}.log")
    _file = logging.handlers.RotatingFileHandler(path, maxBytes=FILE_MAX_BYTES, backupCount=FILE_BACKUPS)
    _file.setFormatter(
        _UTCFormatter("%(asctime)s.%(msecs)03dZ %(process)d %(levelname)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    _file.setLevel(level_for(file_verbosity))
    root.addHandler(_file)


def set_console_verbosity(verbosity: int) -> None:
    if _console is not None:
        _console.setLevel(level_for(verbosity))


def set_file_verbosity(verbosity: int) -> None:
    if _file is not None:
        _file.setLevel(level_for(verbosity))
