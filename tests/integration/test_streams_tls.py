"""A secure stream listener (the ingress TLS settings AMQP listeners use): rstream over
TLS 1.2 and 1.3, hostname checked, publishing with confirms; the advertised host is the
certificate's name (--streamAdvertisedHost)."""

from __future__ import annotations

import ssl
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from rstream import AMQPMessage, ConfirmationStatus, Producer

from amqpprox.runtime import Runtime
from tests.conftest import (
    BROKER_PASSWORD,
    BROKER_PORT,
    BROKER_USER,
    ctl,
    free_closed_port,
    make_settings,
)
from tests.polling import until
from tests.rawstream import (
    RawStream,
    peer_properties,
    stream_plugin,  # noqa: F401 (autouse)
)
from tests.tlscerts import Pki, make_pki

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with tempfile.TemporaryDirectory(prefix="apx-pki") as directory:
        yield make_pki(directory)


@pytest.fixture
async def secure_stream(pki: Pki) -> AsyncIterator[tuple[Runtime, int]]:
    with tempfile.TemporaryDirectory(prefix="apx") as directory:
        settings = make_settings(directory, stream_advertised_host="localhost")
        runtime = Runtime(settings)
        await runtime.start()
        port = free_closed_port()
        try:
            for line in (
                f"TLS INGRESS CERT_CHAIN_FILE {pki.server_cert}",
                f"TLS INGRESS KEY_FILE {pki.server_key}",
                f"BACKEND ADD rabbit dc 127.0.0.1 {BROKER_PORT}",
                "MAP BACKEND / rabbit",
                f"LISTEN START_SECURE_STREAM {port} ADDRESS 127.0.0.1",
            ):
                assert await ctl(settings.control_socket, line) == "", line
            yield runtime, port
        finally:
            await runtime.stop()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_rstream_over_tls(
    secure_stream: tuple[Runtime, int], pki: Pki, version: ssl.TLSVersion
) -> None:
    runtime, port = secure_stream
    context = ssl.create_default_context(cafile=pki.ca_cert)
    context.minimum_version = context.maximum_version = version
    confirmed: list[int] = []

    def on_confirm(status: ConfirmationStatus) -> None:
        if status.is_confirmed:
            confirmed.append(status.message_id)

    producer = Producer(
        "localhost",
        port,
        ssl_context=context,
        username=BROKER_USER,
        password=BROKER_PASSWORD,
    )
    await producer.start()
    stream = f"amqpprox-tls-{uuid.uuid4().hex[:8]}"
    try:
        await producer.create_stream(stream, exists_ok=True)
        batch = [AMQPMessage(body=f"t{i}".encode()) for i in range(100)]
        await producer.send_batch(stream, batch, on_publish_confirm=on_confirm)
        await until(lambda: len(confirmed) >= 100, "100 confirms")
        sessions = [s for s in runtime.ctx.sessions if s.protocol == "stream"]
        assert sessions and all(s.secure for s in sessions)
        assert all(s.local[1] == port for s in sessions)  # metadata led back to the proxy
    finally:
        await producer.delete_stream(stream, missing_ok=True)
        await producer.close()


async def test_a_plain_client_on_a_secure_stream_listener_is_counted(
    secure_stream: tuple[Runtime, int],
) -> None:
    runtime, port = secure_stream
    client = await RawStream.connect(port)
    try:
        client.send(peer_properties(1))
        assert await client.closed()
    finally:
        client.close()
    await until(
        lambda: runtime.listeners.counters(port)["tls_handshake_failures"] >= 1,
        "the failed handshake counted",
    )
