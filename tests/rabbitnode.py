"""A throwaway second RabbitMQ node on free ports, for tests that need a broker configured
differently from the shared one (started detached, stopped and removed at the end)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import free_closed_port

START_DEADLINE = 90.0


@dataclass(frozen=True)
class Node:
    port: int  # AMQP 0-9-1
    env: dict[str, str]


def _rabbitmq_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("rabbitmq")
    except KeyError:
        return None


def _log_tail(base: str, node: str) -> str:
    path = os.path.join(base, "log", f"{node}.log")
    try:
        with open(path) as log:
            return log.read()[-2000:]
    except OSError as error:
        return str(error)


@contextlib.contextmanager
def rabbitmq_node(node: str, conf: str, plugins: str = "") -> Iterator[Node]:
    """Start ``node`` with ``rabbitmq.conf`` text ``conf`` and ``enabled_plugins`` text
    ``plugins``; yield it once ``await_startup`` succeeds (a poll with a deadline)."""
    if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmq-server is not installed (.ci/run installs Debian's package)")
    base = tempfile.mkdtemp(prefix="apx-rmq-")
    with open(os.path.join(base, "rabbitmq.conf"), "w") as conf_file:
        conf_file.write(conf)
    with open(os.path.join(base, "enabled_plugins"), "w") as plugins_file:
        plugins_file.write(plugins)
    # The Debian wrappers run the node as the rabbitmq user: it must own its directories.
    owner = _rabbitmq_user()
    if owner is not None:
        for path in (base, *(os.path.join(base, n) for n in os.listdir(base))):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port, dist_port = free_closed_port(), free_closed_port()
    pid_file = os.path.join(base, "node.pid")
    env = {
        **os.environ,
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": os.path.join(base, "mnesia"),
        "RABBITMQ_LOG_BASE": os.path.join(base, "log"),
        "RABBITMQ_PID_FILE": pid_file,
        "RABBITMQ_CONFIG_FILE": os.path.join(base, "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(base, "enabled_plugins"),
    }
    subprocess.run(["rabbitmq-server", "-detached"], env=env, check=True, timeout=60)
    try:
        deadline = time.monotonic() + START_DEADLINE
        while True:  # each attempt blocks up to its own timeout: a poll with a deadline
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"{node} did not start in {START_DEADLINE} s: {_log_tail(base, node)}")
            probe = subprocess.run(
                ["rabbitmqctl", "-q", "-n", node, "await_startup", "--timeout", "10"],
                env=env, capture_output=True, timeout=max(remaining, 1) + 10, check=False,
            )  # fmt: skip
            if probe.returncode == 0:
                break
        yield Node(port, env)
    finally:
        # With the pid file, "stop" returns only once the node's process has exited.
        subprocess.run(
            ["rabbitmqctl", "-q", "-n", node, "stop", pid_file],
            env=env, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)
