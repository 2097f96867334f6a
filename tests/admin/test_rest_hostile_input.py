"""Text that is not valid Unicode, at every door of the admin plane: refused with 400.

A JSON ``"\\ud800"`` escape decodes to a lone surrogate and a header byte that is not
UTF-8 to a surrogate escape; stored, either made every page that shows it answer 500.
REST refuses them before any handler runs (``admin.rest``, ``admin.text``), ``core.model``
refuses them in names whatever the front end, and ``admin.text.read_form`` turns a form
that is not UTF-8 into a 400 (for the dashboard's handlers). Also a partial body that
would have changed more than it says: a listener PUT without ``tls`` is refused.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from amqpprox.admin.text import first_invalid, header_text, read_form, valid_text
from amqpprox.core import operations as ops
from amqpprox.core.model import Backend, Farm, Mapping, validate_name
from amqpprox.errors import InvalidArgument
from amqpprox.runtime import Runtime
from tests.admin.conftest import API, ClientFactory
from tests.tlscerts import make_pki

Client = TestClient[Any, Any]
LONE = "\ud800"
JSON = {"Content-Type": "application/json"}


async def raw_http(port: int, request: bytes) -> tuple[int, bytes]:
    """One request on its own connection: the status code and the body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def _refused(response: Any, *fragments: str) -> dict[str, Any]:
    assert response.status == 400, await response.text()
    body = await response.json()
    assert body["error"] == "invalid_argument", body
    for fragment in fragments:
        assert fragment in body["message"], body
    return dict(body)


# -- admin.text ------------------------------------------------------------------------------
def test_valid_text() -> None:
    assert valid_text("") and valid_text("plain") and valid_text("Zürich ☃ 🐇")
    assert not valid_text(LONE)
    assert not valid_text("a\udcffb")  # a 0xff byte, as surrogateescape decodes it
    assert not valid_text(b"\xff".decode("utf-8", "surrogateescape"))


def test_first_invalid_names_the_place() -> None:
    assert first_invalid({"a": ["x", {"b": 1}], "c": None}) is None
    assert first_invalid(LONE) == "document"
    assert first_invalid({"name": LONE}) == "name"
    assert first_invalid({"backends": [{"name": "ok"}, {"host": "x" + LONE}]}) == (
        "backends.1.host"
    )
    assert first_invalid({"farms": [{LONE: 1}]}) == "a key of farms.0"
    deep: object = LONE
    for _ in range(5000):  # deeper than the recursion limit: iterative
        deep = [deep]
    assert first_invalid(deep) is not None


async def _form_app(aiohttp_client: ClientFactory) -> Client:
    async def handler(request: web.Request) -> web.Response:
        form = await read_form(request)
        token = header_text(request, "X-Token")
        return web.json_response({"form": dict(form), "token": token})

    app = web.Application()
    app.router.add_post("/", handler)
    return await aiohttp_client(app)


async def test_read_form_refuses_what_is_not_utf8(aiohttp_client: ClientFactory) -> None:
    client = await _form_app(aiohttp_client)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = await client.post("/", data=b"token=\xff\xfe", headers=headers)
    assert response.status == 400
    assert "not valid UTF-8" in await response.text()
    # Percent-escapes that are not UTF-8 decode to U+FFFD: text, never a surrogate.
    response = await client.post("/", data=b"token=%FF&t%ED%A0%80=1", headers=headers)
    assert response.status == 200
    form = (await response.json())["form"]
    assert form["token"] == "\ufffd" and all(valid_text(key) for key in form)
    response = await client.post("/", data="token=Zürich".encode(), headers=headers)
    assert response.status == 200
    assert await response.json() == {"form": {"token": "Zürich"}, "token": None}


async def test_header_text_treats_invalid_bytes_as_absent(
    aiohttp_client: ClientFactory,
) -> None:
    client = await _form_app(aiohttp_client)
    port = client.port
    assert port is not None
    head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n"
    status, body = await raw_http(port, head + b"X-Token: \xff\xfe\r\n\r\n")
    assert status == 200 and json.loads(body)["token"] is None
    status, body = await raw_http(port, head + b"X-Token: abc\r\n\r\n")
    assert status == 200 and json.loads(body)["token"] == "abc"


# -- core.model: every front end -------------------------------------------------------------
def test_model_refuses_lone_surrogates() -> None:
    with pytest.raises(InvalidArgument, match=r"valid Unicode|printable|control"):
        validate_name("farm", "f" + LONE)
    with pytest.raises(InvalidArgument, match=r"valid Unicode|printable|control"):
        Farm("f" + LONE, ("b1",))
    for name, dc, host in [(LONE, "dc", "h"), ("b", LONE, "h"), ("b", "dc", "h" + LONE)]:
        with pytest.raises(InvalidArgument, match=r"valid Unicode|printable|control"):
            Backend(name, dc, host, 5672)
    with pytest.raises(InvalidArgument, match=r"valid Unicode|printable|control"):
        Mapping(LONE, "farm", "f")
    assert Backend("b", "Zürich", "h", 5672).datacenter == "Zürich"


# -- REST --------------------------------------------------------------------------------------
async def test_lone_surrogate_datacenter_is_refused_and_pages_keep_working(
    client: Client, runtime: Runtime
) -> None:
    ops.set_datacenter(runtime.ctx, "paris")
    response = await client.put(API + "/datacenter", data=b'{"name": "\\ud800"}', headers=JSON)
    await _refused(response, "name", "Unicode")
    assert ops.get_datacenter(runtime.ctx) == "paris"
    for page in ("/", "/sessions", "/vhosts", "/backends", "/farms"):
        assert (await client.get(page)).status == 200, page
    response = await client.put(API + "/datacenter", json={"name": "Zürich"})
    assert response.status == 200 and await response.json() == {"name": "Zürich"}


@pytest.mark.parametrize(
    ("path", "body", "place"),
    [
        ("/backends/b1", {"datacenter": "dc", "host": "h" + LONE, "port": 5672}, "host"),
        ("/farms/f1", {"backends": ["b1", LONE]}, "backends.1"),
        ("/mappings/v1", {"farm": LONE}, "farm"),
        ("/default-farm", {"farm": LONE}, "farm"),
        ("/limits/vhosts/v1", {LONE: 1}, "a key of the document"),
        ("/tls/ingress", {"ciphers": LONE}, "ciphers"),
        ("/definitions", {"datacenter": LONE}, "datacenter"),
        ("/definitions", {"backends": [{"name": LONE}]}, "backends.0.name"),
    ],
)
async def test_every_json_body_refuses_lone_surrogates(
    client: Client, runtime: Runtime, path: str, body: dict[str, Any], place: str
) -> None:
    before = runtime.ctx.state.version
    data = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as \ud800
    assert b"\\ud800" in data
    await _refused(await client.put(API + path, data=data, headers=JSON), place)
    assert runtime.ctx.state.version == before
    assert ops.get_datacenter(runtime.ctx) == ""


async def test_headers_that_are_not_utf8_are_refused(runtime: Runtime) -> None:
    assert runtime.admin_port is not None
    body = b'{"name": "paris"}'
    head = (
        b"PUT /api/v1/datacenter HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    )
    for header in (b"If-Match: \xff\r\n", b"X-Reason: caf\xe9\r\n"):
        status, answer = await raw_http(runtime.admin_port, head + header + b"\r\n" + body)
        assert status == 400, answer
        reply = json.loads(answer)
        assert reply["error"] == "invalid_argument" and "header" in reply["message"]
    assert ops.get_datacenter(runtime.ctx) == ""
    status, _ = await raw_http(runtime.admin_port, head + b"\r\n" + body)
    assert status == 200
    assert ops.get_datacenter(runtime.ctx) == "paris"


async def test_query_and_path_parameters_stay_text(client: Client) -> None:
    # Percent-escapes that are not UTF-8 stay escaped (yarl): never a surrogate, no 500.
    for path in ("/backends/%FF", "/backends/%ED%A0%80", "/sessions?vhost=%ED%A0%80"):
        response = await client.get(API + path)
        assert response.status in (200, 404), path


# -- PUT states the resource whole ------------------------------------------------------------
@pytest.mark.parametrize("partial", [{"proxy_protocol": True}, {}, None])
async def test_a_partial_listener_put_leaves_a_tls_listener_tls(
    client: Client, runtime: Runtime, reserved_port: int, partial: dict[str, Any] | None
) -> None:
    with tempfile.TemporaryDirectory(prefix="apx-pki") as directory:
        pki = make_pki(directory)
        tls = {"cert_chain_file": pki.server_cert, "key_file": pki.server_key}
        assert (await client.put(API + "/tls/ingress", json=tls)).status == 200
        url = API + f"/listeners/{reserved_port}"
        created = await client.put(url, json={"tls": True})
        assert created.status == 201
        sent = client.put(url, json=partial) if partial is not None else client.put(url)
        response = await sent
        await _refused(response, "tls")
        assert await (await client.get(API + "/listeners")).json() == [
            {
                "port": reserved_port,
                "address": "0.0.0.0",
                "tls": True,
                "proxy_protocol": False,
                "protocol": "amqp",
                "node": None,
            }
        ]
        [spec] = runtime.ctx.listeners.specs()
        assert spec.tls and not spec.proxy_protocol
        both = await client.put(url, json={"tls": True, "proxy_protocol": True})
        assert both.status == 200
        assert await both.json() == {
            "port": reserved_port,
            "address": "0.0.0.0",
            "tls": True,
            "proxy_protocol": True,
            "protocol": "amqp",
            "node": None,
        }
