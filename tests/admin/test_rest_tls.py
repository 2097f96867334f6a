"""REST for TLS and the PROXY protocol: /api/v1/tls, listeners' and backends' PROXY modes,
both in the definitions document, and the listener counters on /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from amqpprox.core.model import ListenerSpec
from amqpprox.proxy.tls import contexts_of
from amqpprox.runtime import Runtime
from tests.admin.conftest import API
from tests.admin.test_rest_definitions import NO_TLS
from tests.admin.test_rest_routes import expect_error
from tests.conftest import ctl
from tests.polling import until
from tests.rawamqp import handshake_bytes
from tests.tlscerts import Pki, make_pki

Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with tempfile.TemporaryDirectory(prefix="apx-pki") as directory:
        yield make_pki(directory)


def serving(pki: Pki, **more: Any) -> dict[str, Any]:
    return {"cert_chain_file": pki.server_cert, "key_file": pki.server_key, **more}


async def put_tls(client: Client, direction: str, body: object, status: int = 200) -> Any:
    response = await client.put(API + f"/tls/{direction}", json=body)
    assert response.status == status, await response.text()
    return await response.json()


# -- /api/v1/tls -------------------------------------------------------------------------------
async def test_get_of_an_unconfigured_direction(client: Client) -> None:
    for direction in ("ingress", "egress"):
        response = await client.get(API + f"/tls/{direction}")
        assert response.status == 200 and "ETag" in response.headers
        assert await response.json() == NO_TLS


async def test_put_replaces_the_whole_direction_and_the_context(
    client: Client, runtime: Runtime, pki: Pki
) -> None:
    before = contexts_of(runtime.ctx).context("INGRESS")
    etag = (await client.get(API + "/tls/ingress")).headers["ETag"]
    body = serving(pki, ca_cert_file=pki.ca_cert, verify_mode=["PEER", "FAIL_IF_NO_PEER_CERT"])
    response = await client.put(API + "/tls/ingress", json=body, headers={"If-Match": etag})
    assert response.status == 200
    assert response.headers["ETag"] != etag  # the TLS settings are configuration
    expected = {**NO_TLS, **body}
    assert await response.json() == expected
    assert await (await client.get(API + "/tls/ingress")).json() == expected
    assert contexts_of(runtime.ctx).context("INGRESS") is not before
    assert contexts_of(runtime.ctx).ingress_ready()
    # The whole direction: what the next PUT leaves out is no longer used. NONE is no mode.
    replaced = await put_tls(client, "ingress", serving(pki, verify_mode=["NONE"]))
    assert replaced == {**NO_TLS, **serving(pki)}
    assert runtime.ctx.tls.settings("INGRESS").ca_cert_file is None
    # The other direction is untouched.
    assert await (await client.get(API + "/tls/egress")).json() == NO_TLS
    # A stale If-Match is refused.
    stale = await client.put(API + "/tls/ingress", json={}, headers={"If-Match": etag})
    await expect_error(stale, 412, "precondition_failed")


async def test_parity_with_the_control_socket(client: Client, runtime: Runtime, pki: Pki) -> None:
    path = runtime.settings.control_socket
    assert await ctl(path, f"TLS EGRESS CA_CERT_FILE {pki.ca_cert}") == ""
    assert await ctl(path, "TLS EGRESS VERIFY_MODE PEER") == ""
    shown = await (await client.get(API + "/tls/egress")).json()
    assert shown == {**NO_TLS, "ca_cert_file": pki.ca_cert, "verify_mode": ["PEER"]}
    await put_tls(client, "egress", {"ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256"})
    printed = await ctl(path, "TLS EGRESS CIPHERS PRINT")
    response = await client.get(API + "/tls/egress/ciphers")
    assert response.status == 200 and "ETag" in response.headers
    ciphers = (await response.json())["ciphers"]
    assert printed == "Ciphers:\n" + "".join(f"{c}\n" for c in ciphers)
    assert ciphers[-1] == "ECDHE-ECDSA-AES128-GCM-SHA256"
    assert all(c.startswith("TLS_") for c in ciphers[:-1])  # TLS 1.3 suites lead


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"cert_chain_file": "/nonexistent/cert.pem"}, "'/nonexistent/cert.pem': No such file"),
        ({"key_file": "/nonexistent/key.pem"}, "key file '/nonexistent/key.pem': No such file"),
        ({"cert_chain_file": "GARBAGE"}, "certificate chain file 'GARBAGE': no PEM certificate"),
        ({"ca_cert_file": "GARBAGE"}, "CA file 'GARBAGE'"),
        ({"tmp_dh_file": "GARBAGE"}, "DH parameters file 'GARBAGE'"),
        ({"rsa_key_file": "CLIENT_KEY"}, "RSA key file 'CLIENT_KEY': not an RSA key"),
        (
            {"cert_chain_file": "SERVER_CERT", "key_file": "CLIENT_KEY"},
            "key file 'CLIENT_KEY': does not match the certificate chain 'SERVER_CERT'",
        ),
        ({"cert_chain_file": "DIRECTORY"}, "'DIRECTORY': not a regular file"),
        ({"ca_cert_file": "FIFO"}, "CA file 'FIFO': not a regular file"),
        ({"ciphers": "NO-SUCH-CIPHER"}, "the cipher list 'NO-SUCH-CIPHER' selects no cipher"),
    ],
)
async def test_a_context_that_does_not_build_is_400_and_the_previous_one_stays(
    client: Client, runtime: Runtime, pki: Pki, body: dict[str, str], message: str
) -> None:
    await put_tls(client, "ingress", serving(pki))
    working = contexts_of(runtime.ctx).context("INGRESS")
    version = runtime.ctx.state.version
    with tempfile.TemporaryDirectory(prefix="apx") as directory:
        fifo = os.path.join(directory, "fifo")
        os.mkfifo(fifo)  # opening it would block: it must be refused before that
        names = {
            "GARBAGE": pki.garbage,
            "CLIENT_KEY": pki.client_key,
            "SERVER_CERT": pki.server_cert,
            "DIRECTORY": directory,
            "FIFO": fifo,
        }
        real = {k: names.get(v, v) for k, v in body.items()}
        for placeholder, name in names.items():
            message = message.replace(placeholder, name)
        response = await client.put(API + "/tls/ingress", json=real)
        await expect_error(response, 400, "invalid_argument", message)
    assert await (await client.get(API + "/tls/ingress")).json() == {**NO_TLS, **serving(pki)}
    assert contexts_of(runtime.ctx).context("INGRESS") is working
    assert runtime.ctx.state.version == version


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"verify_mode": ["SOMETIMES"]}, "verify_mode.0: Must be one of"),
        ({"verify_mode": "PEER"}, "verify_mode: Not a valid list."),
        ({"key_file": ""}, "key_file: Shorter than minimum length 1."),
        ({"key_file": 5}, "key_file: Not a valid string."),
        ({"key_file": "a\u0000b"}, "key_file must be a non-empty path without NUL"),
        ({"ca_cert_file": "\ud800"}, "ca_cert_file: not valid Unicode"),
        ({"ciphers": "ÄES"}, "ciphers must be printable ASCII"),
        ({"ciphers": ""}, "ciphers: Shorter than minimum length 1."),
        ({"certificate": "x.pem"}, "certificate: Unknown field."),
        ([], "the body must be a JSON object"),
    ],
)
async def test_invalid_bodies_are_400(client: Client, body: object, message: str) -> None:
    response = await client.put(API + "/tls/egress", json=body)
    await expect_error(response, 400, "invalid_argument", message)
    assert await (await client.get(API + "/tls/egress")).json() == NO_TLS


async def test_request_errors(client: Client) -> None:
    for method, path in (
        ("GET", "/tls/sideways"),
        ("PUT", "/tls/sideways"),
        ("GET", "/tls/INGRESS"),
        ("GET", "/tls/sideways/ciphers"),
    ):
        response = await client.request(method, API + path, json={})
        await expect_error(response, 404, "not_found", "ingress or egress")
    await expect_error(await client.get(API + "/tls"), 404, "not_found")
    await expect_error(await client.put(API + "/tls/ingress"), 400, "invalid_body")
    response = await client.put(
        API + "/tls/ingress", data=b"{", headers={"Content-Type": "application/json"}
    )
    await expect_error(response, 400, "invalid_json")
    response = await client.put(
        API + "/tls/ingress", data=b"{}", headers={"Content-Type": "text/plain"}
    )
    await expect_error(response, 415, "unsupported_media_type")
    await expect_error(await client.delete(API + "/tls/ingress"), 405, "method_not_allowed")
    await expect_error(await client.put(API + "/tls/ingress/ciphers"), 405, "method_not_allowed")


async def _tls_handshake(port: int, pki: Pki) -> str | None:
    """Complete a TLS handshake with the listener on ``port``; the version agreed."""
    client_ctx = ssl.create_default_context(cafile=pki.ca_cert)
    _reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"),
        10,
    )
    version = writer.get_extra_info("ssl_object").version()
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), 10)
    return str(version)


async def test_a_secure_listener_serves_with_what_rest_configured(
    client: Client, pki: Pki, reserved_port: int
) -> None:
    await put_tls(client, "ingress", serving(pki))
    created = await client.put(API + f"/listeners/{reserved_port}", json={"tls": True})
    assert created.status == 201
    assert await _tls_handshake(reserved_port, pki) in ("TLSv1.2", "TLSv1.3")


# -- PROXY modes of listeners and backends -----------------------------------------------------
async def test_listener_proxy_protocol(
    client: Client, runtime: Runtime, reserved_port: int
) -> None:
    url = API + f"/listeners/{reserved_port}"
    body = {"tls": False, "proxy_protocol": True}
    response = await client.put(url, json=body)
    assert response.status == 201
    assert await response.json() == {
        "port": reserved_port,
        "address": "0.0.0.0",
        "tls": False,
        "proxy_protocol": True,
        "protocol": "amqp",
        "node": None,
    }
    assert runtime.ctx.listeners.specs()[0].proxy_protocol
    response = await client.put(url, json=body)
    assert response.status == 200  # idempotent
    response = await client.put(url, json={"tls": False})  # another mode: replaced
    assert response.status == 200
    assert (await response.json())["proxy_protocol"] is False
    assert not runtime.ctx.listeners.specs()[0].proxy_protocol
    await expect_error(
        await client.put(url, json={"tls": False, "proxy_protocol": 1}),
        400,
        "invalid_argument",
        "boolean",
    )


BACKEND = {"datacenter": "dc1", "host": "127.0.0.1", "port": 5672}


@pytest.mark.parametrize(
    ("given", "shown", "printed"),
    [
        (False, False, ""),
        (0, False, ""),
        (True, True, " PROXY PROTOCOL V1 ENABLED"),
        (1, True, " PROXY PROTOCOL V1 ENABLED"),
        (2, 2, " PROXY PROTOCOL V2 ENABLED"),
    ],
)
async def test_backend_proxy_protocol_versions(
    client: Client, runtime: Runtime, given: object, shown: object, printed: str
) -> None:
    response = await client.put(API + "/backends/b1", json={**BACKEND, "proxy_protocol": given})
    assert response.status == 201
    body = await response.json()
    assert body["proxy_protocol"] == shown and type(body["proxy_protocol"]) is type(shown)
    assert await ctl(runtime.settings.control_socket, "BACKEND PRINT") == (
        f"b1 (dc1): 127.0.0.1 127.0.0.1:5672{printed}\n"
    )
    # The definitions document carries it and gives it back unchanged.
    document = await (await client.get(API + "/definitions")).json()
    assert document["backends"][0]["proxy_protocol"] == shown
    result = await (await client.put(API + "/definitions", json=document)).json()
    assert result["changes"]["backends"] == {"added": [], "removed": [], "changed": []}


@pytest.mark.parametrize("bad", [3, -1, "2", "true", 1.0, None])
async def test_backend_proxy_protocol_is_validated(client: Client, bad: object) -> None:
    response = await client.put(API + "/backends/b1", json={**BACKEND, "proxy_protocol": bad})
    await expect_error(response, 400, "invalid_argument", "proxy_protocol")


# -- definitions -------------------------------------------------------------------------------
async def test_definitions_carry_tls_and_listener_modes(
    client: Client, runtime: Runtime, pki: Pki, reserved_port: int
) -> None:
    document = {
        "tls": {"ingress": serving(pki), "egress": {"ca_cert_file": pki.ca_cert}},
        "listeners": [{"port": reserved_port, "tls": True, "proxy_protocol": True}],
    }
    response = await client.put(API + "/definitions?dry_run=true", json=document)
    assert response.status == 200
    change = (await response.json())["changes"]["tls"]
    assert change["from"] == {"ingress": NO_TLS, "egress": NO_TLS}
    assert change["to"]["ingress"] == {**NO_TLS, **serving(pki)}
    assert runtime.ctx.tls.settings("INGRESS").cert_chain_file is None  # a dry run
    response = await client.put(API + "/definitions", json=document)
    assert response.status == 200, await response.text()
    exported = (await response.json())["definitions"]
    assert exported["tls"] == {
        "ingress": {**NO_TLS, **serving(pki)},
        "egress": {**NO_TLS, "ca_cert_file": pki.ca_cert},
    }
    assert exported["listeners"] == [
        {
            "port": reserved_port,
            "address": "0.0.0.0",
            "tls": True,
            "proxy_protocol": True,
            "protocol": "amqp",
            "node": None,
        }
    ]
    assert await (await client.get(API + "/tls/egress")).json() == exported["tls"]["egress"]
    # Round trip: applying the export changes nothing.
    result = await (await client.put(API + "/definitions", json=exported)).json()
    assert all(
        change is None or change == {"added": [], "removed": [], "changed": []}
        for change in result["changes"].values()
    ), result["changes"]
    # A direction left out keeps its settings; one given is replaced whole.
    response = await client.put(API + "/definitions", json={"tls": {"egress": {}}})
    assert response.status == 200
    assert runtime.ctx.tls.settings("INGRESS").cert_chain_file == pki.server_cert
    assert runtime.ctx.tls.settings("EGRESS").ca_cert_file is None


async def test_a_tls_part_that_does_not_build_fails_the_whole_document(
    client: Client, runtime: Runtime, pki: Pki, reserved_port: int
) -> None:
    before = await (await client.get(API + "/definitions")).json()
    document = {
        "datacenter": "elsewhere",
        "listeners": [{"port": reserved_port, "tls": True}],
        "tls": {"ingress": serving(pki), "egress": {"ca_cert_file": pki.garbage}},
    }
    response = await client.put(API + "/definitions", json=document)
    await expect_error(response, 400, "invalid_argument", f"tls.egress: CA file '{pki.garbage}'")
    assert await (await client.get(API + "/definitions")).json() == before
    assert runtime.ctx.listeners.specs() == []
    document["tls"] = {"ingress": {"verify_mode": ["MAYBE"]}}
    response = await client.put(API + "/definitions", json=document)
    await expect_error(response, 400, "invalid_argument", "tls.ingress.verify_mode.0")


async def test_tls_is_undone_when_a_listener_cannot_bind(
    client: Client, runtime: Runtime, pki: Pki
) -> None:
    working = contexts_of(runtime.ctx).context("INGRESS")
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        document = {"tls": {"ingress": serving(pki)}, "listeners": [{"port": port, "tls": True}]}
        response = await client.put(API + "/definitions", json=document)
        await expect_error(response, 409, "invalid_state", str(port))
    assert runtime.ctx.tls.settings("INGRESS").cert_chain_file is None
    assert contexts_of(runtime.ctx).context("INGRESS") is working


# -- /metrics ------------------------------------------------------------------------------------
def _metric(text: str, name: str, port: int) -> float | None:
    prefix = f'{name}{{port="{port}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


async def test_listener_refusals_are_exported(client: Client, runtime: Runtime, pki: Pki) -> None:
    await put_tls(client, "ingress", serving(pki))
    listeners = runtime.ctx.listeners
    secure_port = await listeners.start(ListenerSpec(0, tls=True))
    proxy_port = await listeners.start(ListenerSpec(0, proxy_protocol=True))
    text = await (await client.get("/metrics")).text()
    for port in (secure_port, proxy_port):
        assert _metric(text, "amqpprox_listener_tls_handshake_failures_total", port) == 0
        assert _metric(text, "amqpprox_listener_proxy_header_rejected_total", port) == 0
    # A plain AMQP client on the secure port; AMQP without a PROXY header on the other.
    for port in (secure_port, proxy_port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(handshake_bytes())
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(reader.read(), 10)
        writer.close()
    await until(
        lambda: (
            listeners.counters(secure_port)["tls_handshake_failures"] == 1
            and listeners.counters(proxy_port)["proxy_header_rejected"] == 1
        ),
        "the refusals to be counted",
    )
    text = await (await client.get("/metrics")).text()
    assert _metric(text, "amqpprox_listener_tls_handshake_failures_total", secure_port) == 1
    assert _metric(text, "amqpprox_listener_proxy_header_rejected_total", secure_port) == 0
    assert _metric(text, "amqpprox_listener_proxy_header_rejected_total", proxy_port) == 1
    assert "# TYPE amqpprox_listener_tls_handshake_failures_total counter" in text
    # Stopped listeners keep their counts.
    assert (await client.delete(API + f"/listeners/{proxy_port}")).status == 204
    text = await (await client.get("/metrics")).text()
    assert _metric(text, "amqpprox_listener_proxy_header_rejected_total", proxy_port) == 1
