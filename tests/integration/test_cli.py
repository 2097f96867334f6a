"""The command lines: exit codes, usage and the startup/shutdown lines, as real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BROKER_PORT, free_closed_port, pika_round_trip

PY = sys.executable


def run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def test_help_prints_usage_and_exits_1() -> None:
    result = run(PY, "-m", "amqpprox", "--help")
    assert result.returncode == 1
    assert "amqpprox AMQP v0.9.1 proxy:" in result.stdout
    for flag in (
        "--listenPort",
        "--destinationDNS",
        "--controlSocket",
        "--adminPort",
        "--coalesceReadsMs",
        "--clientHandshakeTimeout",
        "--connectTimeout",
        "--brokerHandshakeTimeout",
        "--gracefulCloseTimeout",
        "--healthPassiveRetry",
    ):
        assert flag in result.stdout


def test_unknown_option_exits_1() -> None:
    result = run(PY, "-m", "amqpprox", "--bogus")
    assert result.returncode == 1
    assert "Unknown command line option" in result.stderr


def test_partial_simple_mode_exits_2() -> None:
    result = run(PY, "-m", "amqpprox", "--listenPort", "5999")
    assert result.returncode == 2
    assert result.stdout.strip() == (
        "If configuring in simple mode, the --listenPort, --destinationPort and "
        "--destinationDNS must all be set"
    )


def test_verbosity_above_5_exits_3() -> None:
    result = run(PY, "-m", "amqpprox", "-v", "6")
    assert result.returncode == 3
    assert result.stdout.strip() == "Console log verbosity must be between 0 and 5"


@pytest.mark.parametrize("value", ["101", "-1"])
def test_coalesce_window_out_of_range_exits_2(value: str) -> None:
    result = run(PY, "-m", "amqpprox", "--coalesceReadsMs", value)
    assert result.returncode == 2
    assert result.stdout.strip() == "--coalesceReadsMs must be between 0 and 100"


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--connectTimeout", "0"),
        ("--gracefulCloseTimeout", "-1"),
        ("--clientHandshakeTimeout", "nan"),
        ("--healthPassiveRetry", "0"),
        ("--healthPassiveRetry", "3601"),
    ],
)
def test_deadline_out_of_range_exits_2(flag: str, value: str) -> None:
    result = run(PY, "-m", "amqpprox", flag, value)
    assert result.returncode == 2
    assert result.stdout.strip() == f"{flag} must be more than 0 and at most 3600 seconds"


def test_coalesce_window_not_a_number_exits_1() -> None:
    result = run(PY, "-m", "amqpprox", "--coalesceReadsMs", "soon")
    assert result.returncode == 1
    assert "--coalesceReadsMs" in result.stderr


def test_ctl_usage_and_unreachable_socket(tmp_path: Path) -> None:
    usage = run(PY, "-m", "amqpprox.ctl", str(tmp_path / "x"))
    assert usage.returncode == 1
    assert usage.stderr.strip() == "Usage: amqpprox_ctl <control_socket> ARGS"
    missing = run(PY, "-m", "amqpprox.ctl", str(tmp_path / "nosock"), "HELP")
    assert missing.returncode == 2
    assert str(tmp_path / "nosock") in missing.stderr


@pytest.mark.broker
def test_simple_mode_process_serves_and_exits_on_exit_command(tmp_socket_dir: str) -> None:
    control = os.path.join(tmp_socket_dir, "ctl")
    logs = os.path.join(tmp_socket_dir, "logs")
    proc = subprocess.Popen(
        [PY, "-m", "amqpprox", "--listenPort", str(free_closed_port()),
         "--destinationDNS", "127.0.0.1",
         "--destinationPort", str(BROKER_PORT), "--controlSocket", control,
         "--logDirectory", logs, "--adminPort", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        assert first == f"Starting amqpprox, logging to: '{logs}' control using: '{control}'\n"
        deadline = time.monotonic() + 10
        while not os.path.exists(control):
            assert time.monotonic() < deadline, "control socket never appeared"
            time.sleep(0.02)
        assert oct(os.stat(control).st_mode & 0o777) == "0o600"
        help_text = run(PY, "-m", "amqpprox.ctl", control, "HELP").stdout
        assert help_text.startswith("AUTH (SERVICE hostname port target")
        backends = run(PY, "-m", "amqpprox.ctl", control, "BACKEND", "PRINT").stdout
        assert backends == f"default-backend (none): 127.0.0.1 :{BROKER_PORT}\n"
        assert run(PY, "-m", "amqpprox.ctl", control, "EXIT").stdout == "Exiting.\n"
        out, _err = proc.communicate(timeout=15)
        assert proc.returncode == 0
        assert f"Stopping amqpprox, instance: '{control}'" in out
        assert not os.path.exists(control)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@contextlib.contextmanager
def simple_mode(tmp_socket_dir: str, *extra: str, dns: str = "127.0.0.1") -> Iterator[str]:
    """A proxy process in simple mode in front of the broker (``proxy_process``)."""
    with proxy_process(
        tmp_socket_dir, "--listenPort", str(free_closed_port()), "--destinationDNS", dns,
        "--destinationPort", str(BROKER_PORT), *extra,
    ) as control:  # fmt: skip
        yield control


@contextlib.contextmanager
def proxy_process(tmp_socket_dir: str, *extra: str) -> Iterator[str]:
    """A proxy process (admin API on a free port, logs and control socket in
    ``tmp_socket_dir``); its control socket's path once it is there. Terminated (if still
    running) on exit."""
    control = os.path.join(tmp_socket_dir, "ctl")
    proc = subprocess.Popen(
        [PY, "-m", "amqpprox", "--controlSocket", control,
         "--logDirectory", os.path.join(tmp_socket_dir, "logs"), "--adminPort", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(control):
            assert time.monotonic() < deadline, "control socket never appeared"
            time.sleep(0.02)
        yield control
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=15)


@pytest.mark.broker
def test_sigterm_drains_and_exits_zero(tmp_socket_dir: str) -> None:
    control = os.path.join(tmp_socket_dir, "ctl")
    proc = subprocess.Popen(
        [PY, "-m", "amqpprox", "--listenPort", str(free_closed_port()),
         "--destinationDNS", "127.0.0.1",
         "--destinationPort", str(BROKER_PORT), "--controlSocket", control,
         "--logDirectory", os.path.join(tmp_socket_dir, "logs"), "--adminPort", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(control):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        out, _err = proc.communicate(timeout=15)
        assert proc.returncode == 0
        assert "Stopping amqpprox" in out
        assert not os.path.exists(control)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.broker
def test_health_checks_in_the_real_process_see_the_broker_up(tmp_socket_dir: str) -> None:
    """The process runs on uvloop, whose transports are no asyncio.Transport subclasses:
    the AMQP check must still send its header there and see Connection.Start."""
    with simple_mode(tmp_socket_dir, dns="localhost") as control:
        checked = run(PY, "-m", "amqpprox.ctl", control, "HEALTH", "CHECK", "DEFAULT", "50")
        assert checked.stdout == ""
        line = ""
        deadline = time.monotonic() + 10
        while "health=up" not in line:
            assert time.monotonic() < deadline, f"never up: {line!r}"
            line = run(PY, "-m", "amqpprox.ctl", control, "BACKEND", "HEALTH").stdout
        assert line.startswith("default-backend state=ready health=up last_check=ok"), line


@pytest.mark.broker
def test_trace_directory_flag_says_where_trace_files_go(tmp_socket_dir: str) -> None:
    traces = os.path.join(tmp_socket_dir, "tr")
    with simple_mode(tmp_socket_dir, "--traceDirectory", traces) as control:
        started = run(
            PY, "-m", "amqpprox.ctl", control, "TRACE", "START", "VHOST", "/", "FILE", "t"
        )
        assert started.stdout.startswith("Trace 1 started"), started.stdout
        path = os.path.join(traces, "t")
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        assert oct(os.stat(traces).st_mode & 0o777) == "0o700"
        assert not os.path.exists(os.path.join(tmp_socket_dir, "logs", "traces"))


@pytest.mark.broker
def test_health_passive_retry_flag_sets_the_back_off_of_a_backend_sessions_failed_to_reach(
    tmp_socket_dir: str,
) -> None:
    """b1 refuses, b2 is the broker: three sessions that start at b1 mark it down, then
    sessions pass over it until --healthPassiveRetry has run out and one tries it again
    (its fourth failure). With the default back-off (10 s) that would not happen here,
    and without a back-off the next session starting at b1 would try it at once."""
    with proxy_process(tmp_socket_dir, "--healthPassiveRetry", "1") as control:
        port = free_closed_port()
        for line in (
            f"BACKEND ADD b1 dc 127.0.0.1 {free_closed_port()}",
            f"BACKEND ADD b2 dc 127.0.0.1 {BROKER_PORT}",
            "FARM ADD f round-robin b1 b2",
            "MAP DEFAULT f",
            f"LISTEN START {port}",
        ):
            assert run(PY, "-m", "amqpprox.ctl", control, *line.split()).stdout == "", line

        def failures() -> int:
            health = run(PY, "-m", "amqpprox.ctl", control, "BACKEND", "HEALTH", "b1").stdout
            return int(health.split(" failures=")[1].split()[0])

        before_third = None  # a time before b1's third failed attempt
        passed_over = 0  # sessions served while b1 was down, without trying it
        deadline = time.monotonic() + 10
        seen = failures()
        while seen < 4:
            assert time.monotonic() < deadline, "b1 was never tried again"
            started = time.monotonic()
            assert pika_round_trip(port, b"p") == b"p"  # b2 answers every one
            now_seen = failures()
            if now_seen == 3 and seen < 3:
                before_third = started
            elif now_seen == seen == 3:
                passed_over += 1
            seen = now_seen
        assert before_third is not None
        # The fourth attempt came no sooner than the back-off after the third...
        assert time.monotonic() - before_third >= 1.0
        # ...and sessions starting at b1 meanwhile went to b2 (round-robin: every other).
        assert passed_over >= 2
