"""proxy.deadline: asyncio.timeout's behaviour, given the loop."""

from __future__ import annotations

import asyncio

import pytest

from amqpprox.proxy.deadline import Deadline


async def test_an_await_past_its_deadline_raises_timeout_error() -> None:
    loop = asyncio.get_running_loop()
    never: asyncio.Future[None] = loop.create_future()
    with pytest.raises(TimeoutError), Deadline(loop, 0.01):
        await never
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_an_await_within_its_deadline_returns_and_leaves_no_timer() -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    loop.call_soon(done.set_result, 7)
    with Deadline(loop, 5.0) as deadline:
        assert await done == 7
    assert deadline._handle.cancelled()


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    loop = asyncio.get_running_loop()
    never: asyncio.Future[None] = loop.create_future()

    async def guarded() -> None:
        with Deadline(loop, 5.0):
            await never

    task = loop.create_task(guarded())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_outside_a_task_it_refuses() -> None:
    loop = asyncio.get_running_loop()
    seen: list[BaseException] = []

    def outside() -> None:
        try:
            Deadline(loop, 1.0)
        except RuntimeError as error:
            seen.append(error)

    loop.call_soon(outside)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert seen and "inside a task" in str(seen[0])
