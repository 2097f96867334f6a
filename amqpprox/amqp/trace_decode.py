"""One AMQP 0-9-1 frame as a plain JSON-able dict, for the trace (``core.traces``).

``decode_frame`` turns a frame (its type, channel and payload, as the trace tap kept it)
into a dict: for a method frame its ``Class.Method`` name and decoded arguments (the
whole 0-9-1 method set with RabbitMQ's extensions: Confirm.Select, Basic.Nack,
Exchange.Bind, ...), for a content header the body size and the properties that are
set, for a body its size and, when the trace asked for bodies, the first bytes kept
(base64, ``body_base64``; ``body_truncated`` says whether the body was longer).

The method codec is pamqp's (spec-generated); pamqp is used here and nowhere else in
amqpprox. Secrets are removed here, before anything can print them:
``Connection.StartOk``'s ``response`` is replaced by its mechanism's user name (PLAIN,
AMQPLAIN) and ``Connection.Secure``'s challenge and ``SecureOk``'s response by their
length only. Sans-IO: no asyncio, no sockets.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import math
import warnings
from typing import Any

from pamqp import commands, frame, header

from amqpprox.amqp.frames import (
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    encode_frame,
)
from amqpprox.amqp.identity import sasl_user

__all__ = [
    "FRAME_BODY",
    "FRAME_HEADER",
    "FRAME_HEARTBEAT",
    "FRAME_METHOD",
    "FRAME_TYPE_NAMES",
    "REDACTED",
    "decode_frame",
    "json_value",
]

FRAME_TYPE_NAMES = {
    FRAME_METHOD: "method",
    FRAME_HEADER: "header",
    FRAME_BODY: "body",
    FRAME_HEARTBEAT: "heartbeat",
}
REDACTED = "<redacted>"
# How deep nested tables and arrays are rendered; deeper ones are summarised.
_MAX_DEPTH = 8


def json_value(value: object, depth: int = 0) -> Any:
    """A decoded AMQP field value as JSON can carry it (bytes as text where they are UTF-8,
    else base64 under ``{"base64": ...}``; timestamps as ISO 8601; decimals as strings)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= _MAX_DEPTH:
        return "<nested too deep>"
    if isinstance(value, dict):
        return {str(k): json_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)


def _method_arguments(method: Any) -> dict[str, Any]:
    arguments = {name: json_value(value) for name, value in method}
    if isinstance(method, commands.Connection.StartOk):
        mechanism = str(method.mechanism)
        raw = method.response
        response = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
        arguments["response"] = REDACTED
        arguments["user"] = sasl_user(mechanism, response)
    elif isinstance(method, commands.Connection.Secure):
        arguments["challenge"] = f"{REDACTED} ({len(method.challenge or b'')} bytes)"
    elif isinstance(method, commands.Connection.SecureOk):
        arguments["response"] = f"{REDACTED} ({len(method.response or b'')} bytes)"
    return arguments


def _properties(content: header.ContentHeader) -> dict[str, Any]:
    return {
        name: json_value(value)
        for name, value in content.properties
        if value is not None and name != "reserved" and not (name == "cluster_id" and not value)
    }


def decode_frame(
    frame_type: int, channel: int, payload: bytes, size: int | None = None
) -> dict[str, Any]:
    """The frame as a dict: ``type`` (method, header, body, heartbeat), ``channel``, then
    what its type carries. ``payload`` is the part of the payload kept, ``size`` (when
    given) the payload's real length: a body's first bytes, or a method or header too
    large to keep (shown with its size, not decoded).

    A payload pamqp cannot read gives ``{"type": ..., "error": ...}``, never an exception.
    """
    kind = FRAME_TYPE_NAMES.get(frame_type, f"unknown({frame_type})")
    out: dict[str, Any] = {"type": kind, "channel": channel}
    if frame_type == FRAME_BODY:
        total = len(payload) if size is None else size
        out["body_size"] = total
        if payload:
            out["body_base64"] = base64.b64encode(payload).decode("ascii")
            out["body_truncated"] = len(payload) < total
        return out
    if frame_type == FRAME_HEARTBEAT:
        return out
    if frame_type not in (FRAME_METHOD, FRAME_HEADER):
        out["size"] = len(payload) if size is None else size
        return out
    if size is not None and size > len(payload):
        out["error"] = f"{kind} frame of {size} bytes: too large to keep, not decoded"
        out["size"] = size
        return out
    whole = encode_frame(frame_type, channel, payload)
    try:
        with warnings.catch_warnings():
            # pamqp warns when it builds a method 0-9-1 deprecates (Basic.RecoverAsync):
            # a client may still send one, and the trace shows it like any other.
            warnings.simplefilter("ignore", DeprecationWarning)
            _, _, value = frame.unmarshal(whole)
    except Exception as error:  # the peers' bytes: whatever pamqp raises, the event says so
        out["error"] = f"undecodable {kind} frame: {error}"
        out["size"] = len(payload)
        return out
    if isinstance(value, header.ContentHeader):
        out["class_id"] = value.class_id
        out["body_size"] = value.body_size
        out["properties"] = _properties(value)
    else:
        out["method"] = str(value.name)
        out["arguments"] = _method_arguments(value)
    return out
