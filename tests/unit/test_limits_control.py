"""LIMIT and AUTH on the control socket: our additions and the errors the replay misses.

The original's own replies are replayed byte for byte by test_control_replies.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from amqpprox.core.model import Limits
from amqpprox.proxy import auth
from amqpprox.proxy.proto import authproto_pb2 as pb
from amqpprox.runtime import Runtime
from tests.conftest import RunningProxy, ctl, make_settings


@pytest.fixture
async def fresh(tmp_socket_dir: str) -> AsyncIterator[RunningProxy]:
    runtime = Runtime(make_settings(tmp_socket_dir))
    await runtime.start()
    try:
        yield RunningProxy(runtime, 0, runtime.settings.control_socket)
    finally:
        await runtime.stop()


async def test_connections_and_out_data_rate(fresh: RunningProxy) -> None:
    path = fresh.control_socket
    assert await ctl(path, "LIMIT CONNECTIONS DEFAULT 10") == (
        "Default limit for any vhost, allow at most 10 concurrent connections.\n"
    )
    assert await ctl(path, "limit connections total 100") == (
        "Total limit for all vhosts, allow at most 100 concurrent connections.\n"
    )
    assert await ctl(path, "LIMIT CONNECTIONS VHOST vh 3") == (
        "For vhost vh, allow at most 3 concurrent connections.\n"
    )
    assert await ctl(path, "LIMIT OUT_DATA_RATE VHOST vh 5000") == (
        "For vhost vh, allow max 5000 bytes per second to clients.\n"
    )
    assert await ctl(path, "LIMIT OUT_DATA_RATE DEFAULT 7000") == (
        "Default data limit for any vhost, allow max 7000 bytes per second to clients.\n"
    )
    assert await ctl(path, "LIMIT PRINT") == (
        "Default limit for any vhost, allow at most 10 concurrent connections.\n"
        "Default data limit for any vhost, allow max 7000 bytes per second to clients.\n"
        "Total limit for all vhosts, allow at most 100 concurrent connections.\n"
    )
    assert await ctl(path, "LIMIT PRINT vh") == (
        "For vhost vh, allow at most 3 concurrent connections.\n"
        "For vhost vh, allow max 5000 bytes per second to clients.\n"
    )
    assert await ctl(path, "LIMIT PRINT other") == (
        "For vhost other, allow at most 10 concurrent connections.\n"
        "For vhost other, allow max 7000 bytes per second to clients.\n"
    )
    assert fresh.ctx.state.limits_for("vh") == Limits(
        connections=3, out_data_rate=5000, total_connections=100
    )
    assert await ctl(path, "LIMIT DISABLE CONNECTIONS TOTAL") == (
        "Successfully disabled total concurrent connection limit\n"
    )
    assert await ctl(path, "LIMIT DISABLE OUT_DATA_RATE VHOST vh") == (
        "Successfully disabled specific data rate limit to clients for vhost vh\n"
    )
    assert await ctl(path, "LIMIT DISABLE CONNECTIONS DEFAULT") == (
        "Successfully disabled default concurrent connection limit\n"
    )
    assert fresh.ctx.state.limits_for("vh") == Limits(connections=3, out_data_rate=7000)


async def test_limit_errors(fresh: RunningProxy) -> None:
    path = fresh.control_socket
    invalid = "Invalid subcommand provided for LIMIT command.\n"
    assert await ctl(path, "LIMIT CONN_RATE TOTAL 5") == invalid
    assert await ctl(path, "LIMIT CONN_RATE VHOST") == (
        "Failed to read (VHOST vhostName | DEFAULT) for CONN_RATE"
    )
    assert (
        await ctl(path, "LIMIT CONN_RATE DEFAULT -1") == "Invalid numberOfConnections provided.\n"
    )
    assert await ctl(path, "LIMIT CONN_RATE DEFAULT 4294967296") == (
        "Invalid numberOfConnections provided.\n"
    )
    assert await ctl(path, "LIMIT CONN_RATE DEFAULT 0") == (
        "Default connection rate limit is set to 0 connections per second.\n"
    )
    assert await ctl(path, "LIMIT DATA_RATE DEFAULT 0") == "Failed to read bytesPerSecond"
    assert await ctl(path, "LIMIT DISABLE DATA_RATE") == (
        "Failed to read (VHOST vhostName | DEFAULT) for DATA_RATE"
    )


async def test_auth_commands(fresh: RunningProxy) -> None:
    path = fresh.control_socket
    assert await ctl(path, "AUTH SERVICE auth.example 8080 /check JSON") == (
        "HTTP Auth service will be used to authn/authz client connections: "
        "http://auth.example:8080/check (JSON)\n"
    )
    assert fresh.ctx.state.auth.format == "json"
    assert await ctl(path, "AUTH SERVICE auth.example 8080 /check XML") == (
        "Unknown format; use PROTOBUF or JSON.\n"
    )
    assert await ctl(path, "AUTH SERVICE auth.example 70000 /check") == "Invalid port provided.\n"
    assert await ctl(path, "AUTH SERVICE auth.example 8080 check") == (
        "auth service target must be a path: 'check'\n"
    )
    assert await ctl(path, "AUTH PRINT") == (
        "HTTP Auth service will be used to authn/authz client connections: "
        "http://auth.example:8080/check (JSON)\n"
    )


def test_auth_codec_round_trips_both_encodings() -> None:
    request = auth.AuthRequest("vh", "PLAIN", b"\0u\0p", "host", "conn")
    for fmt in ("protobuf", "json"):
        raw = auth.encode_request(request, fmt)
        message = pb.AuthRequest()
        if fmt == "json":
            assert b'"vhostName": "vh"' in raw and b'"credentials": "AHUAcA=="' in raw
        else:
            message.ParseFromString(raw)
            assert message.authData.credentials == b"\0u\0p"
    # An empty body is protobuf's ALLOW with nothing else set (as the original reads it).
    assert auth.decode_response(b"", "protobuf") == auth.AuthDecision(True, "")
    deny = pb.AuthResponse(result=pb.AuthResponse.DENY, reason="no").SerializeToString()
    assert auth.decode_response(deny, "protobuf") == auth.AuthDecision(False, "no")
    assert auth.decode_response(b'{"result": "DENY", "reason": "no"}', "json") == (
        auth.AuthDecision(False, "no")
    )
    replaced = auth.decode_response(
        b'{"reason": "r", "authData": {"authMechanism": "PLAIN", "credentials": "AHUAcA=="}}',
        "json",
    )
    assert replaced == auth.AuthDecision(True, "r", "PLAIN", b"\0u\0p")
    unknown = pb.AuthResponse(result=7).SerializeToString()  # type: ignore[arg-type]
    assert not auth.decode_response(unknown, "protobuf").allow
    assert not auth.decode_response(b"{not json", "json").allow
