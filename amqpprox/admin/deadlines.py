"""Read deadlines of the HTTP admin plane: a client that sends half a request is dropped.

aiohttp has no per-request read timeout. Two guards, both set up by ``runtime`` when it
creates the admin runner:

* the request head (request line and headers) must arrive within
  ``Settings.admin_header_timeout`` of the connection opening or of the previous
  response: that is aiohttp's ``keepalive_timeout`` (``runner_options``), which closes a
  connection still waiting for a complete head then (an idle keep-alive one too);
* the body must have arrived whole within ``Settings.admin_body_timeout`` of its head:
  ``body_deadline`` (an outermost middleware) closes the connection if it has not, which
  makes the handler's read fail with ``ConnectionError`` (nothing answers; the client has
  stopped sending anyway).

Imports nothing of ours.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger("amqpprox.admin")


def runner_options(header_timeout: float) -> dict[str, Any]:
    """``web.AppRunner`` keyword arguments that bound the wait for a request head."""
    return {"keepalive_timeout": header_timeout}


def body_deadline(timeout: float) -> Middleware:
    """Close the connection of a request whose body is still incomplete after ``timeout``."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.can_read_body or request.content.is_eof():
            return await handler(request)
        expired = False

        def expire() -> None:
            nonlocal expired
            transport = request.transport
            if request.content.is_eof() or transport is None:
                return
            expired = True
            log.info(
                "Admin %s %s from %s: no complete body within %s s, connection closed",
                request.method,
                request.raw_path,
                request.remote or "unknown",
                timeout,
            )
            transport.close()

        timer = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            return await handler(request)
        except ConnectionError:
            if expired:  # nobody is listening: an answer only closes the handler's run
                return web.Response(status=408)
            raise
        finally:
            timer.cancel()

    return guard


def install(app: web.Application, body_timeout: float) -> None:
    """Put ``body_deadline`` first among ``app``'s middlewares (before it is frozen)."""
    app.middlewares.insert(0, body_deadline(body_timeout))
