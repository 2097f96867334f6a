"""The audit trail of the HTTP admin plane: one INFO line on ``amqpprox.admin`` per change.

The control socket logs every command as ``Control '<line>'``; REST and the dashboard log
theirs here, in the same style, saying who and what::

    REST 'PUT /api/v1/datacenter' from 127.0.0.1 with bearer token: put_datacenter
        {"name": "paris"} -> 200
    Dashboard 'POST /sessions/3/disconnect' from 127.0.0.1 with login: disconnect
        session 3 "OK"

(one line each; wrapped here).
Who: the remote address and the credential the request was let in with (``bearer
token``, ``login``, ``no token configured``), never the token itself. What: the method
and path (still percent-encoded, so nothing can break the line), the operation and its
arguments (JSON, ASCII-escaped, at most ``MAX_ARGUMENTS`` characters). ``admin.rest``
calls ``rest_change`` for every mutating request; the dashboard's handlers call
``audit``. Imports nothing of ours.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

log = logging.getLogger("amqpprox.admin")

MAX_ARGUMENTS = 2000
# The parsed JSON body of a request, as ``admin.rest`` read it.
BODY_KEY = web.RequestKey("audit_body", object)


def arguments(value: object) -> str:
    """``value`` as compact, ASCII-escaped JSON, cut at ``MAX_ARGUMENTS`` characters."""
    text = json.dumps(value, ensure_ascii=True, sort_keys=True, default=repr)
    if len(text) > MAX_ARGUMENTS:
        return text[:MAX_ARGUMENTS] + f"... ({len(text)} characters)"
    return text


def audit(request: web.BaseRequest, what: str, *, via: str, credential: str) -> None:
    """Log one change: ``<via> '<METHOD> <raw path>' from <address> with <credential>: <what>``."""
    log.info(
        "%s '%s %s' from %s with %s: %s",
        via,
        request.method,
        request.raw_path,
        request.remote or "unknown",
        credential,
        what,
    )


def rest_change(request: web.Request, status: int, *, token_configured: bool) -> None:
    """A mutating REST request that reached the API (the token middleware let it in)."""
    operation = getattr(request.match_info.handler, "__name__", "unknown")
    parts = [operation]
    params = dict(request.match_info)
    if params:
        parts.append(arguments(params))
    body = request.get(BODY_KEY)
    if body is not None:
        parts.append(arguments(body))
    reason = request.headers.get("X-Reason")
    if reason is not None:
        parts.append("X-Reason " + arguments(reason))
    credential = "bearer token" if token_configured else "no token configured"
    audit(request, f"{' '.join(parts)} -> {status}", via="REST", credential=credential)
