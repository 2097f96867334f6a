"""What the trace tests share: REST calls on a running proxy, reading a trace's events."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tests.conftest import RunningProxy


async def rest(
    proxy: RunningProxy, method: str, path: str, body: object = None, status: int = 200
) -> Any:
    """One REST call; asserts the status; the JSON body (or the text for JSON lines)."""
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{proxy.admin_url}/api/v1{path}", **kwargs) as response,
    ):
        text = await response.text()
        assert response.status == status, f"{method} {path}: {response.status} {text}"
        if response.content_type == "application/json":
            return json.loads(text)
        return text


async def events(proxy: RunningProxy, trace_id: int) -> list[dict[str, Any]]:
    """The events a trace has buffered (?format=jsonl)."""
    text = await rest(proxy, "GET", f"/traces/{trace_id}/events?format=jsonl")
    return [json.loads(line) for line in text.splitlines()]


def methods(found: list[dict[str, Any]], session: int | None = None) -> list[str]:
    return [
        e["method"]
        for e in found
        if e["type"] == "method" and (session is None or e["session"] == session)
    ]


def first(found: list[dict[str, Any]], method: str) -> dict[str, Any]:
    return next(e for e in found if e.get("method") == method)
