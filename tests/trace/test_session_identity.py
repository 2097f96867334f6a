"""Each session's AMQP identity: the user, mechanism, client properties and negotiated
limits, as REST, the session filter and the dashboard show them; CONN unchanged."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pika
import pytest

from tests.conftest import BROKER_USER, RunningProxy, ctl, pika_params
from tests.polling import until

pytestmark = pytest.mark.broker


def _open(port: int, name: str) -> pika.BlockingConnection:
    params = pika_params(port, heartbeat=17, channel_max=99, frame_max=65536)
    params.client_properties = {"connection_name": name}
    return pika.BlockingConnection(params)


async def test_rest_shows_identity_and_filters_by_user(proxy: RunningProxy) -> None:
    conn = await asyncio.to_thread(_open, proxy.port, "identity-test")
    try:
        base = proxy.admin_url + "/api/v1/sessions"
        async with aiohttp.ClientSession() as http:
            async with http.get(base, params={"user": BROKER_USER}) as response:
                assert response.status == 200
                page = await response.json()
            assert page["filtered_count"] == 1
            session = page["items"][0]
            assert session["user"] == BROKER_USER
            assert session["mechanism"] == "PLAIN"
            assert session["connection_name"] == "identity-test"
            assert session["client_product"] == "Pika Python Client Library"
            assert session["client_version"] == pika.__version__
            assert session["client_platform"].startswith("Python ")
            assert (session["channel_max"], session["frame_max"], session["heartbeat"]) == (
                99,
                65536,
                17,
            )
            async with http.get(base, params={"user": "nobody"}) as response:
                assert (await response.json())["filtered_count"] == 0
            async with http.get(f"{proxy.admin_url}/sessions/{session['id']}") as response:
                html = await response.text()
            assert "AMQP identity" in html and "Pika Python Client Library" in html
            async with http.get(f"{proxy.admin_url}/sessions?user=nobody") as response:
                assert "No session matches these filters." in await response.text()
        # CONN keeps the original's line format: nothing of the identity is added.
        conn_text = await ctl(proxy.control_socket, "CONN")
        assert BROKER_USER not in conn_text and "Pika" not in conn_text
        assert re.fullmatch(
            r"id=1 vhost=/ disconnected=N paused=N authDenied=N ingressRemote=\S+ "
            r"ingressLocal=\S+ egressLocal=\S+ egressRemote=\S+ inBytes=\d+ inFrames=\d+ "
            r"inPackets=\d+ outBytes=\d+ outFrames=\d+ outPackets=\d+ [0-9.]+:[0-9.]+\n",
            conn_text,
        ), conn_text
    finally:
        await asyncio.to_thread(conn.close)


async def test_identity_before_open_is_empty(proxy: RunningProxy) -> None:
    """A client that has not opened yet shows empty identity fields, not an error."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(b"AMQP\x00\x00\x09\x01")
        await reader.readexactly(7)  # the start of Connection.Start: the session exists
        session = await until(lambda: proxy.ctx.sessions.get(1), "the session")
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{proxy.admin_url}/api/v1/sessions/{session.id}") as response,
        ):
            body = await response.json()
        assert body["user"] == "" and body["heartbeat"] == 0 and body["mechanism"] == ""
    finally:
        writer.close()
