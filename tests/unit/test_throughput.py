"""The dashboard's throughput sampler: per-second rates of sessions, idle ones at zero."""

from __future__ import annotations

import gc
from pathlib import Path

from amqpprox.admin.throughput import ZERO, Throughput
from amqpprox.core.context import Context, Settings
from amqpprox.core.model import ListenerSpec
from amqpprox.core.sessions import SessionBase


class _NoListeners:
    async def start(self, spec: ListenerSpec) -> int:
        raise NotImplementedError

    async def stop(self, port: int | None = None) -> list[int]:
        return []

    def specs(self) -> list[ListenerSpec]:
        return []


def _context(tmp_path: Path) -> Context:
    settings = Settings(control_socket=str(tmp_path / "c"), log_directory=str(tmp_path))
    return Context(settings, _NoListeners())


def _session(ctx: Context, session_id: int) -> SessionBase:
    session = SessionBase(session_id, ("127.0.0.1", 40000 + session_id), ("127.0.0.1", 5673))
    ctx.sessions.add(session)
    return session


def test_rates_follow_each_second_and_idle_sessions_read_zero(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    busy, idle = _session(ctx, 1), _session(ctx, 2)
    sampler = Throughput(ctx)
    sampler.sample()
    assert sampler.of_session(1) == ZERO  # one sample: no rate yet
    busy.in_bytes, busy.out_frames = 1000, 7
    sampler._last_mono -= 1.0  # as if the sample was a second ago
    sampler.sample()
    rates = sampler.of_session(1)
    assert 900 < rates.in_bytes <= 1000 and 6 < rates.out_frames <= 7
    assert sampler.of_session(2) == ZERO
    assert sampler.current.in_bytes > 0  # the overall history moves too
    # Quiet for a second: the busy session reads zero again; one that starts moving reads
    # only its last second, however long it was idle before.
    sampler._last_mono -= 1.0
    sampler.sample()
    assert sampler.of_session(1) == ZERO
    idle.out_bytes = 500
    sampler._last_mono -= 1.0
    sampler.sample()
    assert 450 < sampler.of_session(2).out_bytes <= 500


def test_idle_sessions_cost_no_new_objects_per_sample(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    for session_id in range(1, 2001):
        _session(ctx, session_id)
    sampler = Throughput(ctx)
    sampler.sample()
    sampler.sample()
    gc.collect()
    before = len(gc.get_objects())
    sampler.sample()
    assert len(gc.get_objects()) - before < 50  # not one per session
