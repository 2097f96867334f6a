"""Names from outside cannot forge log lines, control replies or the operator's terminal.

An unauthenticated AMQP client chooses its vhost and its ``connection_name``; with line
breaks and terminal escapes in them it must not add a line to the log file, a second
``CONN`` line for its session, a line to ``VHOST PRINT`` or ``STAT`` nor raw escape bytes
to what ``amqpprox_ctl`` prints. Names we store (mappings, backends, farms, the
datacenter) with control characters are refused by REST and the control socket alike.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from amqpprox import logsetup
from amqpprox.admin import control
from amqpprox.amqp.frames import PROTOCOL_HEADER
from amqpprox.amqp.methods import ConnectionOpen, ConnectionTuneOk, encode_method
from tests.conftest import RunningProxy, ctl, running_proxy
from tests.rawamqp import RawClient, start_ok

pytestmark = pytest.mark.broker

CTL = str(Path(sys.executable).with_name("amqpprox_ctl"))
VHOST = "x\nid=4242 vhost=/ disconnected=N\r\x1b]0;pwned\x07\x1b[2J\u2028\x85"
NAME = "n\n2030-01-01T00:00:00.000000Z 9 1-1 INFO: forged line\x1b]0;pwned\x07"
SHOWN_VHOST = "x\\nid=4242 vhost=/ disconnected=N\\r\\x1b]0;pwned\\x07\\x1b[2J\\u2028\\x85"
SHOWN_NAME = "n\\n2030-01-01T00:00:00.000000Z 9 1-1 INFO: forged line\\x1b]0;pwned\\x07"
LOG_PREFIX = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \d+ \d+-\d+ (FATAL|ERROR|WARN|INFO|DEBUG|TRACE)"
    r"( \[[^\]]*\])?( \d+)?: "
)
RAW = (b"\x1b", b"\r", b"\x07", "\u2028".encode(), "\x85".encode())


@pytest.fixture
async def logged_proxy(tmp_socket_dir: str) -> AsyncIterator[RunningProxy]:
    """A proxy in simple mode in front of the broker, logging to files at INFO."""
    logsetup.configure(os.path.join(tmp_socket_dir, "logs"), 0, 3)
    try:
        async with running_proxy(tmp_socket_dir) as running:
            yield running
    finally:
        logsetup.unconfigure()


async def hostile_session(proxy: RunningProxy) -> None:
    """Open with the hostile vhost and connection name; the broker refuses the vhost."""
    client = await RawClient.connect(proxy.port)
    await client.send(
        PROTOCOL_HEADER
        + encode_method(start_ok(name=NAME))
        + encode_method(ConnectionTuneOk(2047, 131072, 0))
        + encode_method(ConnectionOpen(VHOST))
    )
    while type(await client.read_method()).__name__ != "ConnectionClose":
        pass  # Start, Tune, then the broker's answer to the unknown vhost
    await client.close_ok()


async def run_ctl(path: str, *words: str) -> bytes:
    """The real console script, as an operator runs it; its stdout as bytes."""
    proc = await asyncio.create_subprocess_exec(
        CTL, path, *words, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err
    return out


def log_lines(proxy: RunningProxy) -> list[str]:
    sink = logsetup.sink("file")
    assert sink is not None
    sink.flush()
    directory = Path(proxy.runtime.settings.log_directory)
    raw = b"".join(p.read_bytes() for p in sorted(directory.iterdir()))
    for byte in RAW:
        assert byte not in raw, byte
    return raw.decode().splitlines()


async def test_a_hostile_vhost_and_connection_name_forge_nothing(
    logged_proxy: RunningProxy,
) -> None:
    proxy = logged_proxy
    await hostile_session(proxy)

    # The log file: every line is a record with its prefix; the names are escaped in place.
    lines = log_lines(proxy)
    assert lines and all(LOG_PREFIX.match(line) for line in lines), lines
    starting = [line for line in lines if "Starting connection for" in line]
    assert len(starting) == 1
    assert f'connectionName="{SHOWN_NAME}"' in starting[0]
    assert f"vhost={SHOWN_VHOST} " in starting[0]
    assert not any("forged line" in line and "Starting" not in line for line in lines)

    # CONN: one line for the one session, its vhost one field.
    conn = await ctl(proxy.control_socket, "CONN")
    assert conn.count("\n") == 1 and conn.startswith("id=")
    assert f" vhost={SHOWN_VHOST} disconnected=" in conn

    # A vhost a client only named is no state: VHOST PRINT does not list it...
    assert await ctl(proxy.control_socket, "VHOST PRINT") == ""
    # ... until the operator makes it one (pausing it, here): then on one line, escaped.
    url = f"{proxy.admin_url}/api/v1/vhosts/{quote(VHOST, safe='')}/pause"
    async with aiohttp.ClientSession() as http, http.post(url, json={}) as response:
        assert response.status == 200, await response.text()
    vhosts = await ctl(proxy.control_socket, "VHOST PRINT")
    assert vhosts == f"{SHOWN_VHOST} = PAUSED\n"

    # What the operator's terminal gets through amqpprox_ctl: no raw escape, no extra line.
    for words, count in ((("CONN",), 1), (("VHOST", "PRINT"), 1)):
        out = await run_ctl(proxy.control_socket, *words)
        for byte in RAW:
            assert byte not in out, (words, byte)
        assert out.count(b"\n") == count, out
        assert SHOWN_VHOST.encode() in out

    # STAT human: the vhost is one row of the Vhosts table.
    proxy.runtime.cleanup_once()
    report = await control.run_line(proxy.ctx, "STAT LISTEN human all")
    rows = report.splitlines()
    assert rows[rows.index("Vhosts:") + 1].startswith(f"{SHOWN_VHOST}: Paused: ")
    assert not any(row.startswith("id=4242") for row in rows)


async def test_names_with_control_characters_are_refused_by_rest_and_control(
    logged_proxy: RunningProxy,
) -> None:
    proxy = logged_proxy
    url = proxy.admin_url + "/api/v1/mappings/"
    async with aiohttp.ClientSession() as http:
        for encoded in ("a%0Ab", "a%1B%5D0%3Bpwned%07", "a%E2%80%A8b", "a%C2%85b"):
            async with http.put(URL(url + encoded, encoded=True), json={"farm": "f"}) as reply:
                assert reply.status == 400, encoded
                body = await reply.json()
                assert body["error"] == "invalid_argument"
                assert "control characters" in body["message"]
        async with http.put(URL(url + "caf%C3%A9", encoded=True), json={"farm": "f"}) as reply:
            assert reply.status == 201  # printable non-ASCII stays accepted
        async with http.get(proxy.admin_url + "/api/v1/mappings") as reply:
            assert [m["vhost"] for m in await reply.json()] == ["caf\u00e9"]
    reply = await ctl(proxy.control_socket, "MAP BACKEND a\x1b]0;pwned\x07 default-backend")
    assert reply == (
        "vhost name must be 1..255 characters without control characters: 'a\\x1b]0;pwned\\x07'"
    )
    assert await ctl(proxy.control_socket, "MAP PRINT") == '"caf\u00e9" => Farm:f\n'
    log_lines(proxy)  # and the refused names reached the log escaped
