"""The codec's single error type and the AMQP 0-9-1 reply codes it carries.

Owns: :class:`ProtocolError` and the reply-code constants (AMQP 0-9-1 §1.9,
"Constants"). Every malformed input the sans-IO codec sees is reported as a
``ProtocolError`` whose ``reply_code`` is what a ``Connection.Close`` to the peer
should say. Imports nothing.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACCESS_REFUSED",
    "CHANNEL_ERROR",
    "COMMAND_INVALID",
    "CONNECTION_FORCED",
    "FRAME_ERROR",
    "INTERNAL_ERROR",
    "NOT_ALLOWED",
    "NOT_IMPLEMENTED",
    "REPLY_SUCCESS",
    "RESOURCE_ERROR",
    "SYNTAX_ERROR",
    "UNEXPECTED_FRAME",
    "ProtocolError",
]

REPLY_SUCCESS: Final = 200
CONNECTION_FORCED: Final = 320
ACCESS_REFUSED: Final = 403
FRAME_ERROR: Final = 501
SYNTAX_ERROR: Final = 502
COMMAND_INVALID: Final = 503
CHANNEL_ERROR: Final = 504
UNEXPECTED_FRAME: Final = 505
RESOURCE_ERROR: Final = 506
NOT_ALLOWED: Final = 530
NOT_IMPLEMENTED: Final = 540
INTERNAL_ERROR: Final = 541


class ProtocolError(Exception):
    """The peer broke AMQP 0-9-1; ``reply_code``/``reply_text`` are what to tell it."""

    def __init__(self, reply_code: int, reply_text: str) -> None:
        super().__init__(reply_code, reply_text)
        self.reply_code = reply_code
        self.reply_text = reply_text

    def __str__(self) -> str:
        return f"{self.reply_code} {self.reply_text}"
