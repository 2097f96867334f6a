"""``--watchDefinitions``: Linux inotify on the definitions file's directory, no polling.

The directory (not the file) is watched, so that every way a file is replaced is seen:
written in place (IN_CLOSE_WRITE), renamed over (IN_MOVED_TO), created or deleted, and the
``..data`` symlink swap with which the kubelet updates a mounted ConfigMap (the file's
path stays, the link it goes through is renamed over). inotify is reached through
``ctypes`` (libc's ``inotify_init1``/``inotify_add_watch``) and its descriptor is read by
the event loop (``loop.add_reader``): no thread, no timer. A burst of events within
``DEBOUNCE`` seconds makes one callback (``loop.call_later``); the callback
(``core.reload.Reloader.changed``) compares the file's content with the last it read.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import struct
from collections.abc import Callable

log = logging.getLogger("amqpprox.filewatch")

DEBOUNCE = 0.1
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ONLYDIR
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)


class InotifyUnavailable(Exception):
    """inotify cannot be used here (not Linux, no libc symbol, or the call failed)."""


def _libc() -> ctypes.CDLL:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError) as error:
        raise InotifyUnavailable(f"inotify is not available: {error}") from None
    return libc


def inotify_init() -> int:
    """A non-blocking inotify descriptor; ``InotifyUnavailable`` says why there is none."""
    fd = int(_libc().inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
    if fd < 0:
        errno = ctypes.get_errno()
        raise InotifyUnavailable(f"inotify_init1 failed: {os.strerror(errno)}")
    return fd


def check_available() -> None:
    """Raise ``InotifyUnavailable`` unless an inotify descriptor can be made (cli checks)."""
    os.close(inotify_init())


def _drain(fd: int) -> int:
    """Read every pending event; returns the OR of their masks."""
    masks = 0
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return masks
        if not data:
            return masks
        offset = 0
        while offset + _EVENT.size <= len(data):
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            masks |= mask
            offset += _EVENT.size + length


class DirectoryWatcher:
    """Calls ``on_change`` (debounced) after changes in the directory holding ``path``."""

    def __init__(
        self, path: str, on_change: Callable[[], None], *, debounce: float = DEBOUNCE
    ) -> None:
        self.directory = os.path.dirname(os.path.abspath(path))
        self.on_change = on_change
        self.debounce = debounce
        self._fd: int | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start watching; raises ``InotifyUnavailable`` (or ``OSError`` for the directory)."""
        fd = inotify_init()
        wd = _libc().inotify_add_watch(fd, os.fsencode(self.directory), MASK)
        if wd < 0:
            errno = ctypes.get_errno()
            os.close(fd)
            raise OSError(errno, f"cannot watch {self.directory}: {os.strerror(errno)}")
        self._loop = asyncio.get_running_loop()
        self._fd = fd
        self._loop.add_reader(fd, self._readable)
        log.info("watching %s for changes of the definitions file", self.directory)

    def _readable(self) -> None:
        assert self._fd is not None and self._loop is not None
        masks = _drain(self._fd)
        if masks & IN_IGNORED:
            log.error("%s is no longer watched (removed?): restart to watch again", self.directory)
        if masks & IN_Q_OVERFLOW:
            log.warning("inotify queue overflow on %s: checking the file", self.directory)
        if self._pending is None:
            self._pending = self._loop.call_later(self.debounce, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self.on_change()

    def stop(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
