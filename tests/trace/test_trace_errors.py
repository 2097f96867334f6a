"""Every error a user can hit starting, reading or stopping a trace, on REST and on the
control socket: unknown session or trace, bad filter, bad JSON, bad options, an existing
file, a bad path, hostile vhost names."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import RunningProxy, ctl
from tests.trace.helpers import rest

BAD_BODIES = [
    ({}, "exactly one of session, vhost or source"),
    ({"vhost": "/", "source": "127.0.0.1"}, "exactly one of session, vhost or source"),
    ({"source": "not-an-ip"}, "source must be an IP address"),
    ({"source": "127.0.0.1\n"}, "source must be an IP address"),
    ({"session": "1"}, "session"),
    ({"session": True}, "session"),
    ({"session": 0}, "session"),
    ({"vhost": "a\nb"}, "vhost name must be"),
    ({"vhost": "red\x1b[31m"}, "vhost name must be"),
    ({"vhost": ""}, "vhost name must be"),
    ({"vhost": "x" * 256}, "vhost name must be"),
    ({"vhost": "/", "max_frames": 0}, "max_frames must be"),
    ({"vhost": "/", "max_seconds": 0}, "max_seconds must be"),
    ({"vhost": "/", "max_seconds": "NaN"}, "max_seconds"),
    ({"vhost": "/", "body_bytes": 0}, "body_bytes must be"),
    ({"vhost": "/", "bodies": "yes"}, "bodies"),
    ({"vhost": "/", "colour": "red"}, "colour"),
    ({"vhost": "/", "file": "/tmp/elsewhere.jsonl"}, "a file name in the trace directory"),
    ({"vhost": "/", "file": "../escape.jsonl"}, "a file name in the trace directory"),
    ({"vhost": "/", "file": "sub/dir.jsonl"}, "a file name in the trace directory"),
    ({"vhost": "/", "file": ".."}, "a file name in the trace directory"),
    ({"vhost": "/", "file": ""}, "file"),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
async def test_bad_bodies_are_400(bare_proxy: RunningProxy, body: object, message: str) -> None:
    error = await rest(bare_proxy, "POST", "/traces", body, status=400)
    assert error["error"] == "invalid_argument" and message in error["message"]
    assert not bare_proxy.ctx.traces.all()


async def test_bad_json_and_lone_surrogates_are_400(bare_proxy: RunningProxy) -> None:
    url = f"{bare_proxy.admin_url}/api/v1/traces"
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        surrogate = b'{"vhost": "\\ud800"}'
        for raw, code in ((b"{not json", "invalid_json"), (surrogate, "invalid_argument")):
            async with http.post(url, data=raw, headers=headers) as response:
                assert response.status == 400
                assert (await response.json())["error"] == code
        async with http.post(url, data=b'["vhost"]', headers=headers) as response:
            assert response.status == 400


async def test_unknown_session_and_trace_are_404(bare_proxy: RunningProxy) -> None:
    error = await rest(bare_proxy, "POST", "/traces", {"session": 42}, status=404)
    assert error == {"error": "not_found", "message": "session 42 not found"}
    for method, path in (
        ("GET", "/traces/7"),
        ("DELETE", "/traces/7"),
        ("GET", "/traces/7/events"),
        ("GET", "/traces/x"),
        ("GET", "/traces/99999999999999999999999"),
    ):
        assert (await rest(bare_proxy, method, path, status=404))["error"] == "not_found"
    started = await rest(bare_proxy, "POST", "/traces", {"vhost": "/"}, status=201)
    error = await rest(bare_proxy, "GET", f"/traces/{started['id']}/events?format=xml", status=400)
    assert error["error"] == "invalid_argument"


async def test_trace_file_is_0600_in_its_directory_and_never_overwritten(
    bare_proxy: RunningProxy, tmp_socket_dir: str
) -> None:
    directory = Path(tmp_socket_dir) / "logs" / "traces"  # the default: under the logs
    body = {"vhost": "/", "file": "trace.jsonl"}
    started = await rest(bare_proxy, "POST", "/traces", body, 201)
    path = directory / "trace.jsonl"
    assert started["file"] == str(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    error = await rest(bare_proxy, "POST", "/traces", {**body, "file": str(path)}, 409)
    assert error["error"] == "already_exists"
    (directory / "link.jsonl").symlink_to(directory / "elsewhere")
    await rest(bare_proxy, "POST", "/traces", {**body, "file": "link.jsonl"}, 409)
    assert not (directory / "elsewhere").exists()
    reply = await ctl(bare_proxy.control_socket, "TRACE START VHOST / FILE trace.jsonl")
    assert reply == f"trace file {str(path)!r} exists; a trace never overwrites\n"
    directory.chmod(0o500)  # not writable (as root: only for others)
    try:
        if os.geteuid() != 0:
            error = await rest(bare_proxy, "POST", "/traces", {**body, "file": "new"}, 400)
            assert "cannot create trace file" in error["message"]
    finally:
        directory.chmod(0o700)


CONTROL_ERRORS = [
    ("TRACE", "Usage: TRACE START"),
    ("TRACE START", "Usage: TRACE START"),
    ("TRACE START VHOST", "Usage: TRACE START"),
    ("TRACE START QUEUE q", "Usage: TRACE START"),
    ("TRACE START SESSION abc", "session must be a positive integer: 'abc'\n"),
    ("TRACE START SESSION 42", "session 42 not found\n"),
    ("TRACE START SOURCE 999.1.1.1", "source must be an IP address: '999.1.1.1'\n"),
    ("TRACE START VHOST / BODIES BODIES", "Usage: TRACE START"),
    ("TRACE START VHOST / FILE", "Usage: TRACE START"),
    ("TRACE START VHOST / FILE /etc/x", "a trace file is a file name in the trace directory"),
    ("TRACE STOP", "Usage: TRACE STOP id\n"),
    ("TRACE STOP x", "Usage: TRACE STOP id\n"),
    ("TRACE STOP 9", "trace 9 not found\n"),
    ("TRACE PRINT", "No traces.\n"),
    ("TRACE PRINT extra", "Usage: TRACE START"),
]


@pytest.mark.parametrize(("line", "reply"), CONTROL_ERRORS)
async def test_control_errors(bare_proxy: RunningProxy, line: str, reply: str) -> None:
    got = await ctl(bare_proxy.control_socket, line)
    assert got.startswith(reply) if not reply.endswith("\n") else got == reply


async def test_hostile_vhost_names_are_escaped(bare_proxy: RunningProxy) -> None:
    """A vhost with non-ASCII letters is traced; printed, nothing in it can start a line
    or move the cursor. Control characters are refused outright (above)."""
    await rest(bare_proxy, "POST", "/traces", {"vhost": "örders\u2028x"}, status=400)
    started = await rest(bare_proxy, "POST", "/traces", {"vhost": "örders ünd"}, status=201)
    assert started["filter"] == {"vhost": "örders ünd"}
    printed = await ctl(bare_proxy.control_socket, "TRACE PRINT")
    assert printed.startswith("id=1 filter=VHOST:örders ünd state=running")
    assert printed.count("\n") == 1
