"""The auth interceptor: ask an HTTP auth service about a connection before connecting out.

One POST per AMQP connection, with the original's protobuf ``AuthRequest`` as the body
(``application/octet-stream``) or, in JSON mode, the proto3 JSON mapping of the same
message (``application/json``). The answer is an ``AuthResponse`` in the same encoding.
Everything that goes wrong (no connection, a slow or failing service, a body that does
not parse, an HTTP status other than 2xx, an unknown result) is a DENY with a reason, and
the whole exchange has one deadline (``Settings.auth_timeout``). Each call runs in its
session's own task, so a slow service never holds up another session.

Deliberate difference: the original ignored the HTTP status (so a 500 with an empty body
was an ALLOW); here a non-2xx status is a DENY. An empty 2xx body is still an ALLOW: that
is how protobuf encodes ``result=ALLOW`` with nothing else set.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from amqpprox import __version__
from amqpprox.core.model import AuthConfig
from amqpprox.proxy.proto import authproto_pb2 as pb

ALWAYS_ALLOW_REASON = "Default route auth used - always allow"
MAX_BODY = 64 * 1024
PROTOBUF_TYPE = "application/octet-stream"
JSON_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class AuthRequest:
    vhost: str
    mechanism: str
    credentials: bytes
    client_hostname: str
    connection_name: str


@dataclass(frozen=True, slots=True)
class AuthDecision:
    """ALLOW or DENY; ``mechanism``/``credentials`` set: replace the client's StartOk ones.

    ``failure``: ``error`` or ``timeout`` when the DENY is the service's fault (no
    usable answer), for the statistics; ``result`` is what they count."""

    allow: bool
    reason: str
    mechanism: str | None = None
    credentials: bytes | None = None
    # The service failed: ``failure`` says how (``error`` or ``timeout``, a metric label),
    # ``fault`` what went wrong, for the log only. The client is told no more than
    # UNAVAILABLE (the reason): the service's address and its errors are the operator's.
    failure: str | None = None
    fault: str | None = None

    @property
    def result(self) -> str:
        """``allow``, ``deny``, ``error`` or ``timeout`` (``core.stats.AUTH_RESULTS``)."""
        return self.failure or ("allow" if self.allow else "deny")


UNAVAILABLE = "Authentication service unavailable"


def _fault(detail: str, failure: str = "error") -> AuthDecision:
    return AuthDecision(False, UNAVAILABLE, failure=failure, fault=detail)


def encode_request(request: AuthRequest, fmt: str) -> bytes:
    message = pb.AuthRequest(
        vhostName=request.vhost,
        authData=pb.SASL(authMechanism=request.mechanism, credentials=request.credentials),
        clientHostname=request.client_hostname,
        connectionName=request.connection_name,
    )
    if fmt == "json":
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


def decode_response(body: bytes, fmt: str) -> AuthDecision:
    """The service's answer as a decision; a body that does not parse is a DENY."""
    response = pb.AuthResponse()
    try:
        if fmt == "json":
            json_format.Parse(body.decode("utf-8"), response, ignore_unknown_fields=True)
        else:
            response.ParseFromString(body)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError, ValueError) as error:
        return _fault(f"Auth service response could not be parsed: {error}")
    if response.result == pb.AuthResponse.ALLOW:
        if response.HasField("authData"):
            data = response.authData
            return AuthDecision(True, response.reason, data.authMechanism, data.credentials)
        return AuthDecision(True, response.reason)
    if response.result == pb.AuthResponse.DENY:
        return AuthDecision(False, response.reason)
    return _fault(f"Auth service returned an unknown result {response.result}")


async def ask(config: AuthConfig, request: AuthRequest, timeout: float) -> AuthDecision:
    """One request to the auth service of ``config``; never raises for the service's faults."""
    if not config.service:
        return AuthDecision(True, ALWAYS_ALLOW_REASON)
    body = encode_request(request, config.format)
    headers = {
        "Content-Type": JSON_TYPE if config.format == "json" else PROTOBUF_TYPE,
        "User-Agent": f"amqpprox/{__version__}",
    }
    try:
        async with asyncio.timeout(timeout):
            # One connection per request, as the original: nothing is kept between sessions.
            connector = aiohttp.TCPConnector(force_close=True, limit=1)
            async with (
                aiohttp.ClientSession(connector=connector) as http,
                http.post(config.url, data=body, headers=headers) as response,
            ):
                payload = await response.content.read(MAX_BODY + 1)
                status = response.status
    except TimeoutError:
        return _fault(f"Auth service {config.url} did not answer within {timeout}s", "timeout")
    except (aiohttp.ClientError, OSError, ValueError) as error:
        text = str(error) or type(error).__name__
        return _fault(f"Unable to reach auth service {config.url}: {text}")
    if not 200 <= status < 300:
        return _fault(f"Auth service {config.url} answered HTTP {status}")
    if len(payload) > MAX_BODY:
        return _fault(f"Auth service response larger than {MAX_BODY} bytes")
    return decode_response(payload, config.format)
