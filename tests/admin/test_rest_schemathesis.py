"""schemathesis against openapi.yaml and the live admin app: no 5xx, no response off-contract.

The proxy runs on its own event loop in a thread (schemathesis' client is blocking);
every operation of the contract gets a bounded number of generated requests, valid ones
and then invalid ones, so the run stays well under a minute.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from amqpprox.runtime import Runtime
from tests.conftest import make_settings

CONTRACT = Path(__file__).resolve().parents[2] / "openapi.yaml"
POSITIVE_EXAMPLES = 12
NEGATIVE_EXAMPLES = 5
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture
def live_admin(tmp_socket_dir: str) -> Iterator[str]:
    """A started proxy (nothing configured) on a loop of its own; yields its admin base URL."""
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        runtime = Runtime(make_settings(tmp_socket_dir))
        await runtime.start()
        stop = asyncio.Event()
        box["url"] = f"http://127.0.0.1:{runtime.admin_port}"
        box["loop"], box["stop"] = asyncio.get_running_loop(), stop
        started.set()
        try:
            await stop.wait()
        finally:
            await runtime.stop()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as error:  # surfaced to the test below
            box["error"] = error
            started.set()

    thread = threading.Thread(target=run, name="proxy-under-test")
    thread.start()
    assert started.wait(30), "the proxy did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield str(box["url"])
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)
        assert not thread.is_alive()


def _run(operation: Any, base_url: str, mode: GenerationMode, examples: int) -> None:
    checks = CONFORMANCE if mode is GenerationMode.POSITIVE else [not_a_server_error]

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def exercise(case: Any) -> None:
        response = case.call(base_url=base_url, timeout=10)
        case.validate_response(response, checks=checks)

    exercise()


def test_the_live_app_keeps_its_contract(live_admin: str) -> None:
    schema = schemathesis.openapi.from_path(str(CONTRACT))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    failures: list[str] = []
    for operation in operations:
        for mode, examples in (
            (GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
            (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
        ):
            try:
                _run(operation, live_admin, mode, examples)
            except Unsatisfiable:
                # Nothing to get wrong: an operation without parameters has no invalid input.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as error:
                failures.append(f"{operation.label} ({mode.value}): {error}")
    assert failures == [], "\n\n".join(failures)
