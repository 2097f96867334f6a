"""A deadline for one ``await`` on the connect path, without ``asyncio.timeout``'s cost.

On CPython 3.11 every ``asyncio.get_running_loop()`` asks the kernel for the process id
(glibc no longer caches ``getpid``), and ``asyncio.timeout`` asks three times per use;
in a virtual machine each of those syscalls costs microseconds on every connection.
``Deadline`` is given the loop and behaves as ``asyncio.timeout``: at the deadline it
cancels the task, and turns that cancellation (and only that one) into ``TimeoutError``.
It is a plain ``with`` block around the ``await`` (entering and leaving need no await of
their own, so no coroutine is made for either, once per connection attempt).
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Deadline:
    """``with Deadline(loop, seconds):`` (inside a task) raises TimeoutError when the time
    is up."""

    __slots__ = ("_expired", "_handle", "_task")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("Deadline is used inside a task")
        self._task = task
        self._expired = False
        self._handle = loop.call_later(seconds, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __enter__(self) -> Deadline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._handle.cancel()
        # Ours only when nobody else cancelled the task as well (asyncio.timeout's rule).
        if self._expired and exc_type is asyncio.CancelledError and self._task.uncancel() == 0:
            raise TimeoutError from exc
