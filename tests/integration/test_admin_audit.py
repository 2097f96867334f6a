"""Every change made through REST is logged, as control commands are: who and what.

The line is INFO on ``amqpprox.admin``, in the log file: the remote address, whether a
bearer token let it in (never the token), the method and path, the operation, its
arguments and the status it got. Reads are not logged.
"""

from __future__ import annotations

import glob
import os
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from amqpprox import logsetup
from amqpprox.runtime import Runtime
from tests.conftest import make_settings
from tests.polling import until

TOKEN = "audit-" + uuid.uuid4().hex


@pytest.fixture
async def logged(tmp_socket_dir: str) -> AsyncIterator[tuple[Runtime, str]]:
    logs = os.path.join(tmp_socket_dir, "logs")
    logsetup.configure(logs, console_verbosity=0)  # the file at INFO, its default
    runtime = Runtime(make_settings(tmp_socket_dir, log_directory=logs, admin_token=TOKEN))
    await runtime.start()
    try:
        yield runtime, logs
    finally:
        await runtime.stop()
        logsetup.unconfigure()


def _log_text(logs: str) -> str:
    text = ""
    for path in sorted(glob.glob(os.path.join(logs, "*.log"))):
        with open(path, encoding="utf-8") as file:
            text += file.read()
    return text


def _audit_lines(logs: str) -> list[str]:
    return [line for line in _log_text(logs).splitlines() if " REST '" in line]


async def _call(runtime: Runtime, method: str, path: str, **kwargs: Any) -> int:
    url = f"http://127.0.0.1:{runtime.admin_port}{path}"
    headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, headers=headers, **kwargs) as response,
    ):
        await response.read()
        return response.status


async def test_rest_changes_are_logged_with_who_and_what(logged: tuple[Runtime, str]) -> None:
    runtime, logs = logged
    assert await _call(runtime, "GET", "/api/v1/datacenter") == 200
    assert await _call(runtime, "GET", "/api/v1/backends") == 200
    assert await _call(runtime, "PUT", "/api/v1/datacenter", json={"name": "paris"}) == 200
    assert await _call(runtime, "PUT", "/api/v1/listeners/1", json={"port": 2}) == 400
    assert await _call(runtime, "PUT", "/api/v1/definitions?dry_run=true", json={}) == 200
    lines = await until(lambda: (found := _audit_lines(logs)) and len(found) >= 3 and found)
    changed, refused, dry_run = lines
    assert " INFO: REST 'PUT /api/v1/datacenter' from 127.0.0.1 with bearer token: " in changed
    assert changed.endswith(': put_datacenter {"name": "paris"} -> 200')
    assert refused.endswith(
        ": REST 'PUT /api/v1/listeners/1' from 127.0.0.1 with bearer token: "
        'put_listener {"port": "1"} {"port": 2} -> 400'
    )
    assert "'PUT /api/v1/definitions?dry_run=true' " in dry_run
    assert dry_run.endswith(": put_definitions {} -> 200")
    text = _log_text(logs)
    assert "GET /api/v1" not in text  # reads are not changes
    assert TOKEN not in text


async def test_without_a_token_the_line_says_so(tmp_socket_dir: str) -> None:
    logs = os.path.join(tmp_socket_dir, "logs")
    logsetup.configure(logs, console_verbosity=0)
    runtime = Runtime(make_settings(tmp_socket_dir, log_directory=logs))
    await runtime.start()
    try:
        url = f"http://127.0.0.1:{runtime.admin_port}/api/v1/vhosts/v1/pause"
        async with aiohttp.ClientSession() as http, http.post(url, json={}) as response:
            assert response.status == 200
        [line] = await until(lambda: _audit_lines(logs))
        assert line.endswith(
            ": REST 'POST /api/v1/vhosts/v1/pause' from 127.0.0.1 with no token configured: "
            'vhost_action {"action": "pause", "vhost": "v1"} {} -> 200'
        )
    finally:
        await runtime.stop()
        logsetup.unconfigure()


async def test_dashboard_changes_are_logged_and_a_form_that_is_not_utf8_is_a_400(
    tmp_socket_dir: str,
) -> None:
    logs = os.path.join(tmp_socket_dir, "logs")
    logsetup.configure(logs, console_verbosity=0)
    runtime = Runtime(make_settings(tmp_socket_dir, log_directory=logs))
    await runtime.start()
    try:
        base = f"http://127.0.0.1:{runtime.admin_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/sessions") as page:
                match = re.search(r'csrf="([0-9a-f]+)"', await page.text())
            assert match is not None
            form = {"csrf": match.group(1), "confirm": "yes", "next": "/vhosts"}
            async with http.post(
                f"{base}/vhosts/v1/pause", data=form, allow_redirects=False
            ) as response:
                assert response.status == 303
            async with http.post(
                f"{base}/vhosts/v1/pause",
                data=b"csrf=\xff&confirm=yes",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ) as response:
                assert response.status == 400
        [line] = await until(
            lambda: [ln for ln in _log_text(logs).splitlines() if " Dashboard '" in ln]
        )
        assert line.endswith(
            ": Dashboard 'POST /vhosts/v1/pause' from 127.0.0.1 with no token configured: "
            "pause vhost 'v1'"
        )
    finally:
        await runtime.stop()
        logsetup.unconfigure()
