"""Fixtures of the session tests: a scripted broker, and a proxy mapping vhost / to it.

Helpers live in tests/session/rig.py. No scripted client outlives its test.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.rawamqp import OPEN_CLIENTS
from tests.scripted_broker import ScriptedBroker
from tests.session.rig import Rig, rig_for


@pytest.fixture(autouse=True)
async def _close_raw_clients() -> AsyncIterator[None]:
    yield
    while OPEN_CLIENTS:
        client = OPEN_CLIENTS.pop()
        client.writer.close()
        with contextlib.suppress(Exception):
            await client.writer.wait_closed()


@pytest.fixture
async def broker() -> AsyncIterator[ScriptedBroker]:
    async with ScriptedBroker() as started:
        yield started


@pytest.fixture
async def rig(tmp_socket_dir: str, broker: ScriptedBroker) -> AsyncIterator[Rig]:
    async with rig_for(tmp_socket_dir, broker) as started:
        yield started
