"""Fixtures of the session tests: a scripted broker, and a proxy mapping vhost / to it.

Helpers live in tests/session/rig.py. No scripted client outlives its test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.rawamqp import close_raw_clients  # noqa: F401 (autouse)
from tests.scripted_broker import ScriptedBroker
from tests.session.rig import Rig, rig_for


@pytest.fixture
async def broker() -> AsyncIterator[ScriptedBroker]:
    async with ScriptedBroker() as started:
        yield started


@pytest.fixture
async def rig(tmp_socket_dir: str, broker: ScriptedBroker) -> AsyncIterator[Rig]:
    async with rig_for(tmp_socket_dir, broker) as started:
        yield started
