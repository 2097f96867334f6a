"""contrib/systemd: the unit passes ``systemd-analyze verify`` and its offline security
review, and the proxy relays under MemoryDenyWriteExecute's rule (no memory both
writable and executable), which the unit sets."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from amqpprox.core.context import Settings
from tests.conftest import BROKER_PORT, free_closed_port, pika_round_trip, wait_listening

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "systemd" / "amqpprox.service"
INSTALLED = "/usr/local/bin/amqpprox"
# The console script of the environment running the tests, as an installed one would be.
SCRIPT = Path(sys.executable).with_name("amqpprox")


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool is not None, "systemd-analyze missing: Debian's systemd package brings it"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this environment's amqpprox (verify checks it)."""
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED} " in text
    copy = tmp_path / "amqpprox.service"
    copy.write_text(text.replace(INSTALLED, str(SCRIPT)))
    return copy


def test_the_unit_verifies_without_a_warning(unit: Path) -> None:
    result = _analyze("verify", str(unit))
    # Unknown or misspelt keys are only warnings (exit 0): stderr must be empty too.
    assert (result.returncode, result.stderr) == (0, ""), result


def test_verify_catches_a_missing_binary_and_a_misspelt_key(tmp_path: Path) -> None:
    # The check above would be worth little if verify let these through.
    copy = tmp_path / "amqpprox.service"
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/amqpprox", "/nonexistent/amqpprox"))
    missing = _analyze("verify", str(copy))
    assert missing.returncode != 0 and "/nonexistent/amqpprox" in missing.stderr
    copy.write_text(
        UNIT.read_text()
        .replace(INSTALLED, str(SCRIPT))
        .replace("LockPersonality=", "LockPersonalty=")
    )
    assert "Unknown key 'LockPersonalty'" in _analyze("verify", str(copy)).stderr


def test_the_offline_security_review_rates_the_unit_ok(unit: Path) -> None:
    result = _analyze("security", "--offline=yes", str(unit))
    assert result.returncode == 0, result
    found = re.search(
        r"Overall exposure level for amqpprox\.service: (\d+\.\d+) (\w+)", result.stdout
    )
    assert found is not None, result.stdout
    assert float(found[1]) <= 2.0 and found[2] == "OK", found[0]


def test_the_unit_drains_within_its_stop_timeout() -> None:
    text = UNIT.read_text()
    stop = re.search(r"^TimeoutStopSec=(\d+)$", text, re.M)
    assert stop is not None
    settings = Settings()
    # SIGTERM: Close 320, up to drain_timeout for the sessions, then the forced ends.
    assert int(stop[1]) > settings.drain_timeout + settings.graceful_close_timeout
    assert re.search(r"^KillSignal=SIGTERM$", text, re.M)
    assert re.search(r"^MemoryDenyWriteExecute=yes$", text, re.M)
    # The unit's directories are the paths its ExecStart gives the proxy.
    assert "--controlSocket /run/amqpprox/ctl" in text and "RuntimeDirectory=amqpprox" in text
    assert "--logDirectory /var/log/amqpprox" in text and "LogsDirectory=amqpprox" in text


# Applies the kernel's own form of MemoryDenyWriteExecute (PR_SET_MDWE,
# PR_MDWE_REFUSE_EXEC_GAIN: kept across fork and exec), shows that it holds, then runs
# the proxy with the scanner it loaded named on stderr.
UNDER_MDWE = """
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(f"PR_SET_MDWE failed: errno {ctypes.get_errno()}")
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    pass
else:
    sys.exit("PR_SET_MDWE is set but a writable executable mapping was allowed")
from amqpprox.amqp import scanner
print("scanner:", scanner.IMPLEMENTATION, file=sys.stderr, flush=True)
from amqpprox.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.broker
def test_the_proxy_relays_with_no_writable_executable_memory(tmp_socket_dir: str) -> None:
    port = free_closed_port()
    control = os.path.join(tmp_socket_dir, "ctl")
    proc = subprocess.Popen(
        [sys.executable, "-c", UNDER_MDWE, "--listenPort", str(port),
         "--listenHost", "127.0.0.1", "--destinationDNS", "127.0.0.1",
         "--destinationPort", str(BROKER_PORT), "--controlSocket", control,
         "--logDirectory", os.path.join(tmp_socket_dir, "logs"), "--adminPort", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline() == "scanner: c\n"  # the C extension, under MDWE
        wait_listening(proc, port)
        body = b"x" * 200_000  # several frames, scanned
        assert pika_round_trip(port, body) == body
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_the_sysusers_file_creates_the_units_user(tmp_path: Path) -> None:
    tool = shutil.which("systemd-sysusers")
    assert tool is not None, "systemd-sysusers missing: Debian's systemd package brings it"
    (tmp_path / "etc").mkdir()
    conf = UNIT.with_name("amqpprox.sysusers.conf")
    subprocess.run(
        [tool, f"--root={tmp_path}", str(conf)], check=True, capture_output=True, timeout=60
    )
    users = {
        line.split(":")[0]: line.split(":")
        for line in (tmp_path / "etc" / "passwd").read_text().splitlines()
    }
    text = UNIT.read_text()
    assert "User=amqpprox\n" in text and "Group=amqpprox\n" in text
    assert users["amqpprox"][5:] == ["/var/lib/amqpprox", "/usr/sbin/nologin"]
    assert "amqpprox:" in (tmp_path / "etc" / "group").read_text()
