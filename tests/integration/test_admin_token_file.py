"""--adminTokenFile: the admin token read from a file, so that ``ps`` does not show it.

Through ``python -m amqpprox`` in a subprocess: with the file, REST writes need the
token, and the token is nowhere in the process's command line. A file others may read,
an empty one, or one given together with --adminToken stops the start with exit code 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_closed_port

PY = sys.executable
TOKEN = "file-" + uuid.uuid4().hex


def _token_file(tmp_path: Path, text: str, mode: int = 0o600) -> str:
    path = tmp_path / "token"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return str(path)


def _put_datacenter(port: int, name: str, token: str | None) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/datacenter",
        data=json.dumps({"name": name}).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _wait_ready(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 15
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        assert time.monotonic() < deadline, "the admin plane never became ready"
        time.sleep(0.05)


def test_the_token_comes_from_the_file_and_not_the_command_line(
    tmp_path: Path, tmp_socket_dir: str
) -> None:
    token_file = _token_file(tmp_path, TOKEN + "\n")
    admin_port = free_closed_port()
    env = {k: v for k, v in os.environ.items() if k != "AMQPPROX_ADMIN_TOKEN"}
    proc = subprocess.Popen(
        [PY, "-m", "amqpprox", "--adminTokenFile", token_file,
         "--adminPort", str(admin_port),
         "--controlSocket", os.path.join(tmp_socket_dir, "ctl"),
         "--logDirectory", os.path.join(tmp_socket_dir, "logs")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        _wait_ready(admin_port, proc)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert token_file.encode() in cmdline
        assert TOKEN.encode() not in cmdline
        assert _put_datacenter(admin_port, "paris", None) == 401
        assert _put_datacenter(admin_port, "paris", TOKEN + "x") == 401
        assert _put_datacenter(admin_port, "paris", TOKEN) == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert proc.returncode == 0


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "AMQPPROX_ADMIN_TOKEN"}
    return subprocess.run(
        [PY, "-m", "amqpprox", *args],
        capture_output=True, text=True, timeout=20, check=False, env={**base, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        (TOKEN, 0o604, "readable or writable by others (mode 0604)"),
        (TOKEN, 0o602, "readable or writable by others"),
        ("\n", 0o600, "is empty"),
        ("a\nb\n", 0o600, "one line"),
    ],
    ids=["other-readable", "other-writable", "empty", "two-lines"],
)
def test_an_unusable_token_file_exits_2(tmp_path: Path, text: str, mode: int, message: str) -> None:
    result = _run("--adminTokenFile", _token_file(tmp_path, text, mode))
    assert result.returncode == 2
    assert message in result.stdout


def test_a_missing_token_file_exits_2(tmp_path: Path) -> None:
    result = _run("--adminTokenFile", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert f"cannot read --adminTokenFile {tmp_path / 'nope'}" in result.stdout


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--adminToken", "t"], {}), ([], {"AMQPPROX_ADMIN_TOKEN": "t"})],
    ids=["flag", "environment"],
)
def test_token_and_token_file_conflict(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    result = _run(*args, "--adminTokenFile", _token_file(tmp_path, TOKEN), env=env)
    assert result.returncode == 2
    assert result.stdout.strip() == (
        "--adminTokenFile cannot be combined with --adminToken or AMQPPROX_ADMIN_TOKEN"
    )
