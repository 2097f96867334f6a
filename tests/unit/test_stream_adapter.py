"""The stream adapter stands where the AMQP one does: the same methods for the session,
and AMQP reply codes mapped to stream response codes."""

from __future__ import annotations

import inspect

from amqpprox.proxy.amqp091 import Amqp091
from amqpprox.proxy.stream_adapter import StreamAdapter, stream_code
from amqpprox.stream import codec


def _public(cls: type) -> dict[str, inspect.Signature | None]:
    out: dict[str, inspect.Signature | None] = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_"):
            continue
        out[name] = inspect.signature(member) if inspect.isfunction(member) else None
    return out


def test_every_method_the_session_uses_exists_with_the_same_parameters() -> None:
    amqp, stream = _public(Amqp091), _public(StreamAdapter)
    missing = set(amqp) - set(stream)
    assert missing == set()
    for name, signature in amqp.items():
        if signature is not None:
            assert list(signature.parameters) == list(stream[name].parameters), name  # type: ignore[union-attr]


def test_reply_codes_map_to_stream_codes() -> None:
    assert stream_code(200) == codec.OK
    assert stream_code(403) == codec.ACCESS_REFUSED
    assert stream_code(506) == codec.VIRTUAL_HOST_ACCESS_FAILURE  # no route, no backend
    assert stream_code(530) == codec.VIRTUAL_HOST_ACCESS_FAILURE
    assert stream_code(501) == codec.FRAME_TOO_LARGE
    assert stream_code(541) == codec.INTERNAL_ERROR
    assert stream_code(codec.AUTHENTICATION_FAILURE) == codec.AUTHENTICATION_FAILURE
