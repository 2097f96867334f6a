"""Trace-test plumbing: no scripted client outlives its test."""

from __future__ import annotations

from tests.rawamqp import close_raw_clients  # noqa: F401 (autouse)
