"""The typed key under which the admin app keeps the one Context.

``admin.app`` stores the Context once, on the root app; handlers of the root app and of
its sub-apps read it as ``request.config_dict[CONTEXT]``. A module of its own so that
every admin module can import the key without importing ``admin.app``. Must not import
``proxy``.
"""

from __future__ import annotations

from aiohttp import web

from amqpprox.core.context import Context

CONTEXT = web.AppKey("context", Context)
