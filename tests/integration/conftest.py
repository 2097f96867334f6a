"""Integration-test plumbing: no scripted client outlives its test; the two-backend rig."""

from __future__ import annotations

from tests.moves_rig import forwarders, proxy2  # noqa: F401 (fixtures)
from tests.rawamqp import close_raw_clients  # noqa: F401 (autouse)
