"""TLS: the TLS commands, secure listeners with real clients, and TLS to backends.

A throwaway CA, server and client certificates are made for the run. Egress TLS is
tested against a real TLS endpoint in front of RabbitMQ: a second in-process proxy with
a secure listener (proxy A --TLS--> proxy B --plain--> RabbitMQ).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator

import aio_pika
import aiormq.exceptions
import pika
import pika.exceptions
import pytest

from amqpprox.core.model import ListenerSpec
from amqpprox.proxy import proxy_protocol as pp
from amqpprox.proxy.listener import ListenerManager
from amqpprox.proxy.session import Session
from amqpprox.runtime import Runtime
from tests.conftest import BROKER_PORT, RunningProxy, ctl, free_closed_port, make_settings
from tests.polling import until
from tests.rawamqp import handshake_bytes
from tests.tlscerts import Pki, make_pki

pytestmark = pytest.mark.broker

MISSING = "Error: asio.ssl:-2147483646"  # the original's bytes for a file that is not there


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with tempfile.TemporaryDirectory(prefix="apx-pki") as directory:
        yield make_pki(directory)


async def _start(directory: str, *lines: str) -> Runtime:
    runtime = Runtime(make_settings(directory, tls_handshake_timeout=2.0))
    await runtime.start()
    for line in lines:
        reply = await ctl(runtime.settings.control_socket, line)
        assert reply == "", (line, reply)
    return runtime


def _serving(pki: Pki) -> list[str]:
    return [
        f"TLS INGRESS CERT_CHAIN_FILE {pki.server_cert}",
        f"TLS INGRESS KEY_FILE {pki.server_key}",
    ]


def _to_rabbit() -> list[str]:
    return [f"BACKEND ADD rabbit dc 127.0.0.1 {BROKER_PORT}", "MAP BACKEND / rabbit"]


@pytest.fixture
async def secure(pki: Pki) -> AsyncIterator[RunningProxy]:
    """A proxy with a secure listener (server certificate for localhost) to RabbitMQ."""
    with tempfile.TemporaryDirectory(prefix="apx") as directory:
        runtime = await _start(directory, *_serving(pki), *_to_rabbit())
        port = free_closed_port()
        assert await ctl(runtime.settings.control_socket, f"LISTEN START_SECURE {port}") == ""
        try:
            yield RunningProxy(runtime, port, runtime.settings.control_socket)
        finally:
            await runtime.stop()


def _client_context(
    pki: Pki, *, cert: bool = False, version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki.ca_cert)
    if cert:
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def _pika_roundtrip(port: int, ctx: ssl.SSLContext) -> bytes:
    params = pika.ConnectionParameters(
        "127.0.0.1",
        port,
        "/",
        pika.PlainCredentials("guest", "guest"),
        ssl_options=pika.SSLOptions(ctx, "localhost"),
        connection_attempts=1,
        socket_timeout=5,
    )
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.basic_publish("", queue, b"over TLS")
        for _method, _props, body in ch.consume(queue, auto_ack=True, inactivity_timeout=5):
            return body or b""
        return b""
    finally:
        conn.close()


def _sessions(proxy: RunningProxy) -> list[Session]:
    return [s for s in proxy.ctx.sessions if isinstance(s, Session)]


def _listeners(runtime: Runtime) -> ListenerManager:
    assert isinstance(runtime.listeners, ListenerManager)
    return runtime.listeners


# -- the TLS commands ------------------------------------------------------------------------
async def test_tls_commands_keep_the_working_context_when_a_file_is_bad(
    secure: RunningProxy, pki: Pki
) -> None:
    path = secure.control_socket
    tls = secure.ctx.tls
    before = tls.settings("INGRESS")
    assert await ctl(path, "TLS INGRESS KEY_FILE /nonexistent.pem") == MISSING
    assert await ctl(path, "tls egress ca_cert_file /nonexistent.pem") == MISSING
    reply = await ctl(path, f"TLS INGRESS CERT_CHAIN_FILE {pki.garbage}")
    assert reply.startswith("Error: certificate chain file") and pki.garbage in reply
    reply = await ctl(path, f"TLS INGRESS KEY_FILE {pki.client_key}")  # not the cert's key
    assert reply.startswith("Error: key file") and "does not match" in reply
    assert await ctl(path, f"TLS INGRESS CA_CERT_FILE {pki.garbage}") != ""
    assert await ctl(path, f"TLS INGRESS TMP_DH_FILE {pki.garbage}") != ""
    assert await ctl(path, "TLS INGRESS VERIFY_MODE PEER BOGUS") == "Unknown mode: BOGUS\n"
    assert await ctl(path, "TLS INGRESS BOGUS_FILE x") == ""  # silently nothing, as upstream
    assert await ctl(path, "TLS SIDEWAYS KEY_FILE x") == "Direction must be INGRESS or EGRESS\n"
    assert await ctl(path, "TLS EGRESS CA_CERT_FILE") == "File must be specified\n"
    assert tls.settings("INGRESS") == before
    # ... and the listener still serves with the context that worked.
    assert await asyncio.to_thread(_pika_roundtrip, secure.port, _client_context(pki)) == (
        b"over TLS"
    )


async def test_cipher_commands(secure: RunningProxy) -> None:
    path = secure.control_socket
    reply = await ctl(path, "TLS INGRESS CIPHERS SET ECDHE-ECDSA-AES128-GCM-SHA256")
    assert reply == (
        "Updated cipher list:\nTLS_AES_256_GCM_SHA384\nTLS_CHACHA20_POLY1305_SHA256\n"
        "TLS_AES_128_GCM_SHA256\nECDHE-ECDSA-AES128-GCM-SHA256\n"
    )
    assert await ctl(path, "TLS INGRESS CIPHERS PRINT") == "Ciphers:\n" + reply.split("\n", 1)[1]
    failed = await ctl(path, "TLS INGRESS CIPHERS SET NO-SUCH-CIPHER")
    assert failed == "Failed to set cipher suite. " + reply
    assert await ctl(path, "TLS INGRESS CIPHERS print") == ""  # PRINT is case-sensitive


# -- secure listeners --------------------------------------------------------------------------
async def test_pika_and_aio_pika_over_tls_1_2_and_1_3(secure: RunningProxy, pki: Pki) -> None:
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = _client_context(pki, version=version)
        assert await asyncio.to_thread(_pika_roundtrip, secure.port, ctx) == b"over TLS"
    ctx = _client_context(pki)
    connection = await aio_pika.connect(
        f"amqps://guest:guest@localhost:{secure.port}/", ssl_context=ctx, timeout=10
    )
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"aio"), routing_key=queue.name)
        message = await queue.get(timeout=5)
        assert message is not None and message.body == b"aio"
        live = [s for s in _sessions(secure) if not s.finished]
        assert len(live) == 1 and live[0].secure
        tls = live[0].client_transport.get_extra_info("ssl_object")
        assert tls is not None and tls.version() == "TLSv1.3"
        # RabbitMQ is told the client came over TLS.
        listing = await asyncio.to_thread(
            subprocess.run,
            ["rabbitmqctl", "-q", "list_connections", "client_properties"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        client = live[0].client
        assert f"{client[0]}:{client[1]} TLS" in listing.stdout
    # The version each session actually negotiated, seen while it is live.
    for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            secure.port,
            ssl=_client_context(pki, version=version),
            server_hostname="localhost",
        )
        writer.write(handshake_bytes())
        await asyncio.wait_for(reader.readexactly(8), 5)
        [live_session] = [s for s in _sessions(secure) if not s.finished]
        tls = live_session.client_transport.get_extra_info("ssl_object")
        assert tls is not None and tls.version() == name
        writer.close()
        await until(lambda: all(s.finished for s in _sessions(secure)), timeout=5.0)


async def test_failed_handshakes_are_counted_and_the_listener_carries_on(
    secure: RunningProxy, pki: Pki
) -> None:
    listeners = _listeners(secure.runtime)
    # A plain AMQP client on the TLS port.
    reader, writer = await asyncio.open_connection("127.0.0.1", secure.port)
    writer.write(handshake_bytes())
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    # A TLS client that does not trust the proxy's CA.
    untrusting = ssl.create_default_context(cafile=pki.other_ca_cert)
    with pytest.raises(ssl.SSLError):
        await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", secure.port, ssl=untrusting, server_hostname="localhost"
            ),
            5,
        )
    await until(lambda: listeners.counters(secure.port)["tls_handshake_failures"] == 2, timeout=5.0)
    assert _sessions(secure) == []
    assert await asyncio.to_thread(_pika_roundtrip, secure.port, _client_context(pki)) == (
        b"over TLS"
    )


async def test_a_port_scan_is_counted_but_logged_once_and_not_as_an_error(
    secure: RunningProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="amqpprox.listener")
    listeners = _listeners(secure.runtime)
    for _ in range(20):  # what a scanner does: connect, say something that is not TLS, go
        reader, writer = await asyncio.open_connection("127.0.0.1", secure.port)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 5)
        writer.close()
    await until(lambda: listeners.counters(secure.port)["tls_handshake_failures"] == 20)
    lines = [r for r in caplog.records if "TLS handshake with" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.INFO


async def test_client_certificates_required(secure: RunningProxy, pki: Pki) -> None:
    path = secure.control_socket
    assert await ctl(path, f"TLS INGRESS CA_CERT_FILE {pki.ca_cert}") == ""
    assert await ctl(path, "TLS INGRESS VERIFY_MODE PEER FAIL_IF_NO_PEER_CERT") == ""
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        await asyncio.to_thread(_pika_roundtrip, secure.port, _client_context(pki))
    listeners = _listeners(secure.runtime)
    await until(lambda: listeners.counters(secure.port)["tls_handshake_failures"] == 1, timeout=5.0)
    with_cert = _client_context(pki, cert=True)
    assert await asyncio.to_thread(_pika_roundtrip, secure.port, with_cert) == b"over TLS"
    # PEER alone: a certificate is asked for, not required.
    assert await ctl(path, "TLS INGRESS VERIFY_MODE PEER") == ""
    assert await asyncio.to_thread(_pika_roundtrip, secure.port, _client_context(pki)) == (
        b"over TLS"
    )


# -- TLS to backends ---------------------------------------------------------------------------
async def test_egress_tls_sni_hostname_checks_and_failover(pki: Pki) -> None:
    """proxy A --TLS (SNI localhost, verified)--> proxy B --plain--> RabbitMQ."""
    with (
        tempfile.TemporaryDirectory(prefix="apx") as dir_a,
        tempfile.TemporaryDirectory(prefix="apx") as dir_b,
    ):
        b = await _start(dir_b, *_serving(pki), *_to_rabbit())
        a = await _start(dir_a)
        try:
            b_port = await b.listeners.start(ListenerSpec(0, tls=True))
            b_proxy_port = await b.listeners.start(ListenerSpec(0, tls=True, proxy_protocol=True))
            path = a.settings.control_socket
            for line in (
                f"TLS EGRESS CA_CERT_FILE {pki.ca_cert}",
                "TLS EGRESS VERIFY_MODE PEER",
                # The certificate names localhost only: 127.0.0.1 fails the host name check.
                f"BACKEND ADD by-ip dc 127.0.0.1 {b_port} TLS",
                f"BACKEND ADD by-name dc localhost {b_port} TLS",
                f"BACKEND ADD by-name-proxy dc localhost {b_proxy_port} TLS SEND-PROXY-V2",
                "FARM ADD f round-robin by-ip by-name",
                "MAP FARM / f",
            ):
                assert await ctl(path, line) == "", line
            a_port = await a.listeners.start(ListenerSpec(0))
            a_proxy = RunningProxy(a, a_port, path)
            b_proxy = RunningProxy(b, b_port, b.settings.control_socket)
            conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{a_port}/", timeout=10)
            async with conn:
                [session] = [s for s in _sessions(a_proxy) if not s.finished]
                assert session.backend_name == "by-name"
                assert a.plane.connect_failures["by-ip"] == 1
                tls = session.broker_transport.get_extra_info("ssl_object")  # type: ignore[union-attr]
                assert tls.server_hostname == "localhost"  # SNI
                [on_b] = [s for s in _sessions(b_proxy) if not s.finished]
                assert on_b.secure and on_b.egress_remote == ("127.0.0.1", BROKER_PORT)
            # PROXY v2 before TLS: B (a secure PROXY listener) sees A's client.
            assert await ctl(path, "MAP BACKEND / by-name-proxy") == ""
            conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{a_port}/", timeout=10)
            await conn.close()
            [via_a] = [s for s in _sessions(a_proxy) if s.backend_name == "by-name-proxy"]
            [via_b] = [s for s in _sessions(b_proxy) if s.listen_port == b_proxy_port]
            assert via_b.client == via_a.client and via_b.secure
            # Without the CA, nothing verifies: every TLS backend fails, the client is told.
            assert await ctl(path, "MAP FARM / f") == ""
            assert await ctl(path, f"TLS EGRESS CA_CERT_FILE {pki.other_ca_cert}") == ""
            with pytest.raises(aiormq.exceptions.AMQPError):
                await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{a_port}/", timeout=10)
            assert a.plane.connect_failures["by-name"] == 1
        finally:
            await a.stop()
            await b.stop()


async def test_secure_proxy_listener_reads_the_header_before_tls(
    secure: RunningProxy, pki: Pki
) -> None:
    port = await secure.runtime.listeners.start(ListenerSpec(0, tls=True, proxy_protocol=True))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(pp.encode_v1(("192.0.2.44", 6000), ("192.0.2.1", 5671)))
    await writer.drain()
    await writer.start_tls(_client_context(pki), server_hostname="localhost")
    writer.write(handshake_bytes())
    assert (await asyncio.wait_for(reader.readexactly(8), 5))[:1] == b"\x01"  # Connection.Start
    live = [s for s in _sessions(secure) if not s.finished]
    assert [s.client for s in live] == [("192.0.2.44", 6000)] and live[0].secure
    writer.close()
