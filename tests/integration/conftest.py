"""Integration-test plumbing: no scripted client outlives its test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.rawamqp import OPEN_CLIENTS


@pytest.fixture(autouse=True)
async def _close_raw_clients() -> AsyncIterator[None]:
    yield
    while OPEN_CLIENTS:
        client = OPEN_CLIENTS.pop()
        client.writer.close()
        with contextlib.suppress(Exception):
            await client.writer.wait_closed()
