"""AUTH SERVICE for stream sessions: asked with the SASL mechanism and response the
client gave the proxy; its deny and its replaced credentials, seen by a raw client."""

from __future__ import annotations

import pytest

from amqpprox.core import operations as ops
from amqpprox.stream import codec
from tests.conftest import RunningProxy
from tests.integration.test_auth import FakeAuthService, guarded, service
from tests.rawstream import (
    RawStream,
    stream_plugin,  # noqa: F401 (autouse)
)

__all__ = ["guarded", "service"]  # the fixtures, shared with the AMQP auth tests

pytestmark = pytest.mark.timeout(60)


async def _open(proxy: RunningProxy) -> tuple[RawStream, int]:
    port = await ops.start_listener(proxy.ctx, 0, host="127.0.0.1", protocol="stream")
    client = await RawStream.connect(port)
    await client.handshake()
    code, _props = await client.open("/")
    return client, code


async def test_allow_asks_with_the_sasl_credentials(
    guarded: RunningProxy, service: FakeAuthService
) -> None:
    client, code = await _open(guarded)
    client.close()
    assert code == codec.OK
    (request,) = service.requests
    assert request.vhostName == "/"
    assert request.authData.authMechanism == "PLAIN"
    assert request.authData.credentials == b"\0guest\0guest"


async def test_deny_answers_open_with_access_refused_and_the_reason(
    guarded: RunningProxy, service: FakeAuthService
) -> None:
    service.answer, service.reason = "deny", "streams are closed today"
    client, code = await _open(guarded)
    try:
        assert code == codec.ACCESS_REFUSED
        _corr, code, reason = await client.close_frame()
        assert code == codec.ACCESS_REFUSED
        assert reason == "streams are closed today"
    finally:
        client.close()
    [session] = [s for s in guarded.ctx.sessions if s.protocol == "stream"]
    assert session.auth_denied


async def test_replaced_credentials_reach_the_broker(
    guarded: RunningProxy, service: FakeAuthService
) -> None:
    """The service swaps guest's credentials for a user the broker does not know: the
    broker's authentication failure proves the replacement was replayed."""
    service.answer = "replace"
    client, code = await _open(guarded)
    client.close()
    assert code == codec.AUTHENTICATION_FAILURE
