"""A tiny blocking client for the proxy's HTTP admin plane (REST under /api/v1).

Used by the idle scenario: count the proxy's sessions, wait for them to drain, and
time requests while thousands of sessions are held. One fresh HTTP connection per
request, as a monitoring scraper or ``curl`` would make.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any

from bench.rawamqp import AmqpError

SESSIONS_PATH = "/api/v1/sessions"  # a page (default 100) of the sorted session list
READY_PATH = "/readyz"  # readiness: no per-session work
POLL_INTERVAL = 0.2


@dataclass(frozen=True)
class AdminApi:
    """The admin plane of one proxy process, at ``http://host:port``."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"http://{self.host}:{self.port}"

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """One GET on a fresh connection: (status, body)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def post_json(self, path: str, body: object, timeout: float = 10.0) -> tuple[int, Any]:
        """One POST of a JSON body on a fresh connection: (status, decoded JSON body)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"}
            conn.request("POST", path, body=json.dumps(body), headers=headers)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    def get_json(self, path: str) -> Any:
        """GET expecting 200 and a JSON body."""
        try:
            status, body = self.get(path)
        except OSError as exc:
            raise AmqpError(f"admin API {self}{path}: {exc}") from exc
        if status != 200:
            raise AmqpError(f"admin API {self}{path}: HTTP {status} {body[:200]!r}")
        return json.loads(body)

    def session_counts(self) -> tuple[int, int]:
        """(sessions listed, of which active): finished ones stay until the next cleanup."""
        total = self.get_json(f"{SESSIONS_PATH}?page_size=1")["total_count"]
        active = self.get_json(f"{SESSIONS_PATH}?page_size=1&state=active")["filtered_count"]
        return int(total), int(active)

    def wait_ready(self, timeout: float) -> None:
        """Poll ``/readyz`` until it answers 200."""
        deadline = time.monotonic() + timeout
        last = "never tried"
        while time.monotonic() < deadline:
            try:
                status, body = self.get(READY_PATH, timeout=2.0)
                if status == 200:
                    return
                last = f"HTTP {status} {body[:100]!r}"
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(POLL_INTERVAL)
        raise AmqpError(f"admin API {self} not ready after {timeout:.0f}s ({last})")

    def wait_sessions(self, total: int | None, active: int | None, timeout: float) -> int:
        """Poll until the listed (``total``) and/or ``active`` counts match; return active.

        Raises with the last counts seen when they do not match within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            seen_total, seen_active = self.session_counts()
            if total in (None, seen_total) and active in (None, seen_active):
                return seen_active
            if time.monotonic() > deadline:
                raise AmqpError(
                    f"proxy lists {seen_total} sessions ({seen_active} active) after "
                    f"{timeout:.0f}s, expected {_show(total)} ({_show(active)} active)"
                )
            time.sleep(POLL_INTERVAL)

    def time_gets(self, path: str, count: int) -> list[float]:
        """``count`` sequential GETs of ``path``; wall time of each in ms (200 required)."""
        times: list[float] = []
        for _ in range(count):
            t0 = time.perf_counter()
            status, body = self.get(path)
            times.append((time.perf_counter() - t0) * 1000.0)
            if status != 200:
                raise AmqpError(f"admin API {self}{path}: HTTP {status} {body[:200]!r}")
        return times


def _show(value: int | None) -> str:
    return "any" if value is None else str(value)
