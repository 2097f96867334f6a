"""The eviction job on its own (no sockets): pace, sessions gone or moved before their turn,
cancel, a failing session, and the reply text's size.

The sessions are ``SessionBase`` objects whose graceful disconnect is recorded; what the
clients see on the wire is tested against the real broker in tests/integration.
"""

from __future__ import annotations

import asyncio
import itertools

from amqpprox.core.eviction import Eviction, EvictReason, JobState, validate_per_second
from amqpprox.core.moves import reply_text
from amqpprox.core.sessions import CloseReason, SessionBase
from tests.polling import until


class Recorded(SessionBase):
    def __init__(self, session_id: int, backend: str = "b1") -> None:
        super().__init__(session_id, ("127.0.0.1", 40000 + session_id), ("127.0.0.1", 5672))
        self.backend_name = backend
        self.closes: list[tuple[int, str]] = []

    def disconnect_graceful(self, reply_text: str = "OK", reply_code: int = 200) -> None:
        self.closes.append((reply_code, reply_text))
        self.close_reason = CloseReason.PROXY_GRACEFUL


class Broken(Recorded):
    def disconnect_graceful(self, reply_text: str = "OK", reply_code: int = 200) -> None:
        raise RuntimeError("a bug")


def job(sessions: list[SessionBase], per_second: int = 50) -> Eviction:
    return Eviction(
        id=1,
        reason=EvictReason.EVICT,
        per_second=per_second,
        text="CONNECTION_FORCED - evicted from backend b1",
        backend="b1",
        vhost=None,
        sessions=sessions,
    )


async def test_the_pace_is_never_exceeded_and_gone_sessions_take_no_slot() -> None:
    sessions: list[Recorded] = [Recorded(i) for i in range(1, 26)]
    sessions[3].close_reason = CloseReason.CLIENT_GRACEFUL  # left on its own
    sessions[7].backend_name = "b2"  # no longer on the evicted backend
    eviction = job(list(sessions), per_second=50)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await eviction.run()
    took = loop.time() - started
    assert eviction.state is JobState.DONE
    assert (eviction.total, eviction.done, eviction.evicted) == (25, 25, 23)
    assert sessions[3].closes == [] and sessions[7].closes == []
    assert all(
        s.closes == [(320, "CONNECTION_FORCED - evicted from backend b1")]
        for i, s in enumerate(sessions)
        if i not in (3, 7)
    )
    times = eviction.close_times
    # 1e-9: one close's time is the previous one's plus 1/50, in floating point.
    assert all(b - a >= 1 / 50 - 1e-9 for a, b in itertools.pairwise(times))
    assert 22 / 50 <= took < 22 / 50 + 0.5  # 23 closes, the first at once
    assert eviction.sessions == [] and eviction.session_ids == list(range(1, 26))
    assert eviction.finished_at is not None


async def test_cancel_stops_it_and_a_second_cancel_says_so() -> None:
    sessions: list[SessionBase] = [Recorded(i) for i in range(1, 11)]
    eviction = job(sessions, per_second=20)
    eviction.task = asyncio.ensure_future(eviction.run())
    await until(lambda: eviction.evicted >= 2, "two sessions evicted")
    assert eviction.cancel() is True
    await asyncio.gather(eviction.task, return_exceptions=True)
    assert eviction.state is JobState.CANCELLED
    closed = eviction.evicted
    assert 2 <= closed < 10
    assert sum(bool(s.closes) for s in sessions if isinstance(s, Recorded)) == closed
    assert eviction.cancel() is False


async def test_a_session_that_raises_fails_the_job_and_nothing_else() -> None:
    eviction = job([Recorded(1), Broken(2), Recorded(3)], per_second=1000)
    await eviction.run()
    assert eviction.state is JobState.FAILED
    assert eviction.error == "internal error: RuntimeError('a bug')"
    assert eviction.evicted == 1


def test_per_second_and_the_reply_text() -> None:
    assert validate_per_second(1) == 1
    for bad in (0, -1, 10_001, 1.5, "5", True, None):
        try:
            validate_per_second(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
    long = "CONNECTION_FORCED - vhost " + "é" * 300
    cut = reply_text(long)
    assert len(cut.encode()) <= 255 and long.startswith(cut)
    assert reply_text("short") == "short"
