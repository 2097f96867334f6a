"""Typed errors of the control plane, each with a stable code.

Every front end (REST, control socket, dashboard) maps these the same way: REST to an
HTTP status and ``{"error": code, "message": ...}``, the control socket to the
original amqpprox's text for that case (carried in ``legacy_text`` when it differs
from the message). Imports nothing of ours.
"""

from __future__ import annotations


class AmqpproxError(Exception):
    """Base of every error a user can cause through a front end."""

    code = "error"
    http_status = 500

    def __init__(self, message: str, *, legacy_text: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # The exact reply the original amqpprox's control socket gave for this case.
        self.legacy_text = legacy_text if legacy_text is not None else message


class NotFound(AmqpproxError):
    code = "not_found"
    http_status = 404


class AlreadyExists(AmqpproxError):
    code = "already_exists"
    http_status = 409


class InvalidArgument(AmqpproxError):
    code = "invalid_argument"
    http_status = 400


class InvalidState(AmqpproxError):
    code = "invalid_state"
    http_status = 409
