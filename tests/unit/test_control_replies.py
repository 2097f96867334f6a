"""The control socket against the original amqpprox's exact replies.

``tests/data/original-replies.md`` (a copy of the reference run, kept in the repository)
holds 146 command lines sent in order to a fresh original proxy with no listener and no
clients, each with the exact bytes it answered. The replay sends the same lines in the same order
through the real Unix socket of a fresh in-process proxy and compares bytes, except:

* hash-ordered outputs (BACKEND PRINT) are compared as sets of lines;
* our deliberate differences (docs/control.md) are asserted with our text;
* HELP is the original's lines, byte for byte, plus our lines (``ADDED_HELP_LINES``),
  each after the original lines of its verb.

The other tests cover every error string of the reference §4 the replay does not reach.
"""

from __future__ import annotations

import ast
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from amqpprox import logsetup
from amqpprox.admin import control
from amqpprox.admin.control.commands.limits import print_limits
from amqpprox.core import limits as lim
from amqpprox.core import operations as ops
from amqpprox.runtime import Runtime
from tests.conftest import RunningProxy, ctl, free_closed_port, make_settings

REPLIES = Path(__file__).resolve().parents[1] / "data" / "original-replies.md"
HELP_MARK = "(the HELP text, as above)"

# Where we answer differently on purpose: (command line, occurrence) -> our reply.
DIFFERENCES: dict[tuple[str, int], str] = {
    # Members in FARM ADD order (the original: hash order), which is also round-robin order.
    ("FARM PRINT", 1): "f1: rabbit1 rabbit2 \n",
}
# Replies whose lines come in hash order upstream: compared as sets of lines.
UNORDERED = {"BACKEND PRINT", "CONN"}

# A deliberate difference: HELP lists our additions too, each on a line of its own after
# the original's lines of the same verb (whose bytes do not change).
ADDED_HELP_LINES = (
    "AUTH SERVICE hostname port target (PROTOBUF | JSON) - Send the auth service the "
    "original's protobuf body (the default) or its JSON mapping",
    "BACKEND (ADD | ADD_DNS) name datacenter host port SEND-PROXY-V2 [TLS] - Send the backend "
    "a binary PROXY protocol v2 header instead of the v1 text line",
    "BACKEND STREAM_PORT name port - Set the port of the backend's RabbitMQ Streams listener "
    "(default 5552)",
    "BACKEND STATE name (ready | drain | maint) - Let a backend take new sessions, or not "
    "(drain, maint); its sessions continue",
    "BACKEND HEALTH [name] - Print each backend's state, health, last check and consecutive counts",
    "BACKEND EVICT name [per_second] - Close the sessions on a backend gracefully "
    "(Connection.Close 320), per_second a second (default 10)",
    "BACKEND EVICTIONS [CANCEL id] - Print the evictions (running and recent) or cancel one",
    "HEALTH CHECK (backend | DEFAULT) interval_ms [timeout_ms rise fall] - Check a backend (or "
    "every backend without its own settings) with an AMQP handshake",
    "HEALTH DISABLE (backend | DEFAULT) - Stop the active checks of a backend, or the default ones",
    "LIMIT CONNECTIONS (VHOST vhostName | DEFAULT | TOTAL) numberOfConnections - Configure the "
    "most concurrent client connections of a vhost, of each vhost, or of all together",
    "LIMIT OUT_DATA_RATE (DEFAULT | VHOST vhostName) BytesPerSecond - Configure data rate "
    "limits for outgoing data to clients",
    "LIMIT DISABLE (CONNECTIONS | OUT_DATA_RATE) (VHOST vhostName | DEFAULT | TOTAL) - Disable "
    "concurrent connection or outgoing data rate limits (TOTAL: CONNECTIONS only)",
    "LISTEN (START | START_SECURE) port PROXY - Listen for clients behind a load balancer that "
    "sends a PROXY protocol (v1 or v2) header",
    "LISTEN (START | START_SECURE) port [PROXY] ADDRESS address - Listen on one address (IPv4, "
    "IPv6 or localhost) instead of every interface",
    "LISTEN PRINT - Print the listeners: port, address, TLS or not, PROXY protocol or not",
    "LISTEN (START_STREAM | START_SECURE_STREAM) port [NODE backend] [PROXY] [ADDRESS address] "
    "- Listen for RabbitMQ Streams clients; NODE sends every connection to that backend",
    "SESSION id# UNPAUSE - Resume a paused session, or release one held at Open",
    "VHOST MIGRATE vhost (FARM farm | BACKEND backend) [per_second] - Hold new sessions, map "
    "the vhost to the target, close its sessions at per_second a second (default 10), release",
    "VHOST MIGRATIONS [CANCEL id] - Print the migrations (running and recent) or cancel one",
    "TRACE START (SESSION id | VHOST vhost | SOURCE ip) [BODIES] [FILE name] - Trace the AMQP "
    "frames of one session, or of a vhost's or a client address's sessions",
    "TRACE STOP id - Stop a trace",
    "TRACE PRINT - Print the traces",
)


def our_help(original: str) -> str:
    """The original's HELP with ``ADDED_HELP_LINES`` after the last line of their verb
    (a verb of ours in its alphabetical place)."""
    lines = original.splitlines(keepends=True)
    for added in ADDED_HELP_LINES:
        verb = added.split(" ", 1)[0]
        same = [i for i, line in enumerate(lines) if line.split(" ", 1)[0] == verb]
        if same:
            lines.insert(same[-1] + 1, added + "\n")
        else:  # a verb of ours: in its alphabetical place
            after = [i for i, line in enumerate(lines) if line.split(" ", 1)[0] > verb]
            lines.insert(after[0] if after else len(lines), added + "\n")
    return "".join(lines)


def parse_replies(text: str) -> list[tuple[str, str]]:
    """The (command line, reply) pairs of the markdown file, in order."""
    pairs: list[tuple[str, str]] = []
    help_reply: str | None = None
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not (line.startswith("### `") and line.endswith("`")):
            continue
        command = line[len("### `") : -1]
        body = next(each for each in lines[index + 1 :] if each.strip())
        if body == HELP_MARK:
            assert help_reply is not None, "the HELP text must come first"
            reply = help_reply
        else:
            reply = ast.literal_eval(body)
            assert isinstance(reply, str)
        if command == "HELP":
            help_reply = reply
        pairs.append((command, reply))
    return pairs


def load_replies() -> list[tuple[str, str]]:
    if not REPLIES.is_file():
        pytest.fail(f"the reference replies are missing: {REPLIES}")
    return parse_replies(REPLIES.read_text(encoding="utf-8"))


@pytest.fixture
async def fresh(tmp_socket_dir: str) -> AsyncIterator[RunningProxy]:
    """A proxy as the reference run had it: nothing configured, no listener, no clients."""
    runtime = Runtime(make_settings(tmp_socket_dir))
    await runtime.start()
    try:
        yield RunningProxy(runtime, 0, runtime.settings.control_socket)
    finally:
        await runtime.stop()
        logsetup.unconfigure()


def test_reference_file_parses() -> None:
    pairs = load_replies()
    assert len(pairs) == 146
    assert pairs[0][0] == "HELP" and pairs[-1] == ("EXIT", "Exiting.\n")
    assert pairs[2] == ("BOGUS", pairs[0][1])


def test_help_is_the_originals_lines_plus_ours() -> None:
    original = load_replies()[0][1]
    ours = control.help_text()
    assert ours == our_help(original)
    # Every original line is there, byte for byte and in its order; ours are only added.
    assert [line for line in ours.splitlines() if line not in ADDED_HELP_LINES] == (
        original.splitlines()
    )


async def test_replay_the_original_replies_in_order(fresh: RunningProxy) -> None:
    seen: dict[str, int] = {}
    mismatches: list[str] = []
    original_help = load_replies()[0][1]
    for command, expected in load_replies():
        seen[command] = seen.get(command, 0) + 1
        got = await ctl(fresh.control_socket, command)
        key = (command, seen[command])
        if expected == original_help:
            want = our_help(original_help)
            ok = got == want
        elif key in DIFFERENCES:
            want = DIFFERENCES[key]
            assert sorted(want.split()) == sorted(expected.split()), "difference must be order only"
            ok = got == want
        elif command in UNORDERED:
            want = expected
            ok = sorted(got.splitlines(keepends=True)) == sorted(expected.splitlines(keepends=True))
        else:
            want = expected
            ok = got == want
        if not ok:
            mismatches.append(f"{command!r}: expected {want!r}, got {got!r}")
    assert not mismatches, "\n".join(mismatches)
    assert fresh.ctx.shutdown.is_set()  # the last line was EXIT


# -- error strings and behaviour the replay does not reach ------------------------------------
async def test_stat_lines_answer_the_originals_bytes(fresh: RunningProxy) -> None:
    stat_lines = [(c, r) for c, r in load_replies() if c.split(" ", 1)[0].upper() == "STAT"]
    assert len(stat_lines) == 15
    for command, expected in stat_lines:
        assert await ctl(fresh.control_socket, command) == expected, command
    path = fresh.control_socket
    assert await ctl(path, "STAT SEND 127.0.0.1 9999 process") == (
        "Filters aren't supported when sending metrics.\n"
    )
    assert await ctl(path, "STAT DISABLE") == "Missing enable/disable type.\n"
    assert await ctl(path, "STAT DISABLE foo") == (
        "Only LISTEN, SEND, STOP, ENABLE, and DISABLE subcommands are supported.\n"
    )
    assert await ctl(path, "STAT LISTEN json a=b=c") == "Filter specified incorrectly.\n"
    assert await ctl(path, "STAT STOP SEND") == "Stopped sending stats.\n"


async def test_backend_add_argument_errors(fresh: RunningProxy) -> None:
    path = fresh.control_socket
    for line in (
        "BACKEND ADD",
        "BACKEND ADD a dc localhost",
        "BACKEND ADD a dc localhost abc",
        "BACKEND ADD a dc localhost 70000",
        "BACKEND ADD a dc localhost -1",
        "BACKEND ADD_DNS a dc localhost 0",
        "BACKEND ADD " + "n" * 300 + " dc localhost 5672",
    ):
        assert await ctl(path, line) == "Arguments not correctly provided", line
    assert await ctl(path, "BACKEND PRINT") == ""


async def test_backend_flags_any_case_any_order_only_two_after_port(fresh: RunningProxy) -> None:
    path = fresh.control_socket
    assert await ctl(path, "backend add a dc 127.0.0.1 1 Tls SEND-proxy") == ""
    assert await ctl(path, "BACKEND ADD_DNS b dc localhost 2 extra TLS SEND-PROXY") == ""
    printed = set((await ctl(path, "BACKEND PRINT")).splitlines())
    assert printed == {
        "a (dc): 127.0.0.1 127.0.0.1:1 PROXY PROTOCOL V1 ENABLED TLS",
        "b (dc): localhost :2 TLS",  # SEND-PROXY was the third token: not looked at
    }


async def test_backend_delete_in_use_is_refused(fresh: RunningProxy) -> None:
    path = fresh.control_socket
    await ctl(path, "BACKEND ADD r1 dc 127.0.0.1 5672")
    await ctl(path, "BACKEND ADD r2 dc 127.0.0.1 5673")
    await ctl(path, "FARM ADD f round-robin r1")
    await ctl(path, "MAP BACKEND vh r2")
    assert await ctl(path, "BACKEND DELETE r1") == "Backend 'r1' is still used by farm f"
    assert await ctl(path, "BACKEND DELETE r2") == "Backend 'r2' is still used by mapping vh"
    await ctl(path, "FARM DELETE f")
    await ctl(path, "MAP UNMAP vh")
    assert await ctl(path, "BACKEND DELETE r1") == ""
    assert await ctl(path, "BACKEND DELETE r2") == ""
    assert await ctl(path, "BACKEND PRINT") == ""


async def test_farm_add_keeps_nothing_on_error_and_replaces(fresh: RunningProxy) -> None:
    path = fresh.control_socket
    await ctl(path, "BACKEND ADD r1 dc 127.0.0.1 5672")
    await ctl(path, "BACKEND ADD r2 dc 127.0.0.1 5673")
    assert await ctl(path, "FARM ADD f round-robin r1 nosuch") == (
        "Backend 'nosuch' not found\nFarm not inserted due to at least one missing Backend\n"
    )
    assert await ctl(path, "FARM PRINT") == ""
    assert await ctl(path, "FARM ADD_MANUAL f round-robin r2 r1 r2") == ""
    assert await ctl(path, "FARM PRINT") == "f: r2 r1 \n"
    assert await ctl(path, "FARM ADD f round-robin r1") == ""
    assert await ctl(path, "FARM PRINT") == "f: r1 \n"
    assert await ctl(path, "farm delete f") == ""
    assert await ctl(path, "FARM PRINT") == ""


async def test_map_print_sorted_and_default_not_shown(fresh: RunningProxy) -> None:
    path = fresh.control_socket
    for line in (
        "MAP FARM zz f",
        "MAP BACKEND aa b",
        "MAP FARM mm g",
        "MAP DEFAULT f",
        "MAP FARM aa f2",
    ):
        assert await ctl(path, line) == ""
    assert await ctl(path, "MAP PRINT") == '"aa" => Farm:f2\n"mm" => Farm:g\n"zz" => Farm:f\n'
    assert fresh.ctx.state.default_farm == "f"
    assert await ctl(path, "MAP REMOVE_DEFAULT") == ""
    assert fresh.ctx.state.default_farm is None


async def test_datacenter_set_without_name_clears_it(fresh: RunningProxy) -> None:
    path = fresh.control_socket
    await ctl(path, "DATACENTER SET here")
    assert await ctl(path, "datacenter print") == "here\n"
    assert await ctl(path, "DATACENTER SET") == ""
    assert await ctl(path, "DATACENTER PRINT") == "\n"


async def test_listen_start_stop_and_busy_port(fresh: RunningProxy) -> None:
    path = fresh.control_socket
    port = free_closed_port()
    assert await ctl(path, f"LISTEN START {port}") == ""
    assert [s.port for s in fresh.ctx.listeners.specs()] == [port]
    # Deliberate difference: the original printed nothing (and logged an error).
    assert await ctl(path, f"LISTEN START {port}") == f"Already listening on port: {port}\n"
    assert await ctl(path, "LISTEN START 0") == "Invalid port provided.\n"
    assert await ctl(path, "LISTEN START_SECURE") == "Invalid port provided.\n"
    assert await ctl(path, "LISTEN PRINT") == (
        f"port={port} address=0.0.0.0 tls=N proxyProtocol=N\n"
    )
    assert await ctl(path, "LISTEN BOGUS") == "Unknown subcommand.\n"
    assert await ctl(path, "LISTEN STOP") == ""
    assert await ctl(path, "LISTEN PRINT") == ""
    assert fresh.ctx.listeners.specs() == []


async def test_listen_on_a_port_in_use_is_an_error_and_the_proxy_keeps_serving(
    fresh: RunningProxy,
) -> None:
    path = fresh.control_socket
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        reply = await ctl(path, f"LISTEN START {port}")
    assert reply.startswith(f"Failed to listen on port {port}: ") and reply.endswith("\n")
    assert "in use" in reply
    other = free_closed_port()
    assert await ctl(path, f"LISTEN START {other}") == ""
    assert [s.port for s in fresh.ctx.listeners.specs()] == [other]


async def test_log_levels_change_at_run_time(fresh: RunningProxy, tmp_socket_dir: str) -> None:
    logsetup.configure(os.path.join(tmp_socket_dir, "logs"), 0)
    console, file = logsetup.sink("console"), logsetup.sink("file")
    assert console is not None and file is not None
    path = fresh.control_socket
    assert await ctl(path, "LOG CONSOLE 4") == ""
    assert console.level == logsetup.level_for(4)
    assert await ctl(path, "log file 1") == ""
    assert file.level == logsetup.level_for(1)
    assert await ctl(path, "LOG FILE 9") == ""  # no range check, as upstream: everything
    assert file.level <= logsetup.TRACE
    assert await ctl(path, "LOG CONSOLE -1") == ""  # and nothing at all
    assert console.level > logsetup.level_for(0)
    assert await ctl(path, "LOG BOGUS") == "Command or verbosity not found.\n"
    assert await ctl(path, "LOG FILE \u00b2") == "Command or verbosity not found.\n"


async def test_maphostname_dns(fresh: RunningProxy) -> None:
    assert not fresh.ctx.hostnames.enabled
    assert await ctl(fresh.control_socket, "MAPHOSTNAME dns") == (
        "Hostname mapper set for all current sessions.\n"
    )
    assert fresh.ctx.hostnames.enabled
    assert await fresh.ctx.hostnames.resolve("127.0.0.1") != ""


async def test_session_errors(fresh: RunningProxy) -> None:
    path = fresh.control_socket
    for line in (
        "SESSION 1 PAUSE",
        "SESSION 1 UNPAUSE",
        "SESSION -1 PAUSE",
        "SESSION 1x PAUSE",
        "SESSION \u00b2 PAUSE",  # a digit to str.isdigit(), not to int()
    ):
        assert await ctl(path, line) == "Session not found.\n", line


async def test_vhost_commands_without_vhost_and_unpause(fresh: RunningProxy) -> None:
    path = fresh.control_socket
    for line in (
        "VHOST UNPAUSE",
        "VHOST BACKEND_DISCONNECT",
        "VHOST FORCE_DISCONNECT",
        "VHOST BOGUS",
    ):
        assert await ctl(path, line) == "Session not found.\n", line
    assert await ctl(path, "vhost pause b") == ""
    assert await ctl(path, "VHOST PAUSE a") == ""
    assert await ctl(path, "VHOST UNPAUSE b") == ""
    assert await ctl(path, "VHOST PRINT") == "a = PAUSED\nb = UNPAUSED\n"


async def test_exit_replies_then_shuts_down(fresh: RunningProxy) -> None:
    assert not fresh.ctx.shutdown.is_set()
    assert await ctl(fresh.control_socket, "exit") == "Exiting.\n"
    assert fresh.ctx.shutdown.is_set()


async def test_an_unexpected_error_is_reported_and_the_socket_keeps_serving(
    fresh: RunningProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(ctx: object) -> list[object]:
        raise RuntimeError("bug")

    monkeypatch.setattr(ops, "list_backends", boom)
    assert (
        await ctl(fresh.control_socket, "BACKEND PRINT") == "Internal error; see the proxy's log.\n"
    )
    assert await ctl(fresh.control_socket, "DATACENTER PRINT") == "\n"


async def test_tls_lines_answer_the_originals_bytes(fresh: RunningProxy) -> None:
    tls_lines = [(c, r) for c, r in load_replies() if c.split(" ", 1)[0].upper() == "TLS"]
    assert len(tls_lines) == 11
    for command, expected in tls_lines:
        assert await ctl(fresh.control_socket, command) == expected, command


async def test_listen_print_one_line_per_listener_by_port(fresh: RunningProxy) -> None:
    path = fresh.control_socket
    low, high = sorted((free_closed_port(), free_closed_port()))
    assert low != high
    assert await ctl(path, f"LISTEN START {high} proxy") == ""
    assert await ctl(path, f"LISTEN START {low}") == ""
    assert await ctl(path, "listen print") == (
        f"port={low} address=0.0.0.0 tls=N proxyProtocol=N\n"
        f"port={high} address=0.0.0.0 tls=N proxyProtocol=Y\n"
    )
    assert await ctl(path, "LISTEN STOP") == ""


# -- names from outside: escaped in replies, refused with control characters ---------------
async def test_names_with_control_characters_are_refused(fresh: RunningProxy) -> None:
    path = fresh.control_socket
    esc = "x\x1b]0;pwned\x07"
    await ctl(path, "BACKEND ADD r1 dc 127.0.0.1 5672")
    assert await ctl(path, f"MAP BACKEND {esc} r1") == (
        "vhost name must be 1..255 characters without control characters: 'x\\x1b]0;pwned\\x07'"
    )
    assert await ctl(path, "MAP FARM v\x9bw f") == (
        "vhost name must be 1..255 characters without control characters: 'v\\x9bw'"
    )
    assert await ctl(path, f"BACKEND ADD {esc} dc 127.0.0.1 5672") == (
        "Arguments not correctly provided"
    )
    assert await ctl(path, "BACKEND ADD r2 d\x1bc 127.0.0.1 5672") == (
        "Arguments not correctly provided"
    )
    assert (await ctl(path, f"FARM ADD {esc} round-robin r1")).startswith(
        "farm name must be 1..255 printable characters without spaces: 'x\\x1b"
    )
    assert (await ctl(path, f"DATACENTER SET {esc}")).startswith(
        "datacenter name must be 0..255 characters without control characters: 'x\\x1b"
    )
    assert await ctl(path, "MAP PRINT") == ""
    assert await ctl(path, "FARM PRINT") == ""
    assert await ctl(path, "DATACENTER PRINT") == "\n"
    assert [b.name for b in ops.list_backends(fresh.ctx)] == ["r1"]
    # What the original accepts and is printable stays accepted, byte for byte.
    for line in (
        "MAP BACKEND vh\u00e9-\u00fc\\x r1",
        "BACKEND ADD r\u00e9 dc\u00e9 127.0.0.1 5673",
    ):
        assert await ctl(path, line) == "", line
    assert await ctl(path, "MAP PRINT") == '"vh\u00e9-\u00fc\\x" => Backend:r1\n'


async def test_outside_names_are_escaped_in_every_reply(fresh: RunningProxy) -> None:
    """A client's vhost (not ours to refuse) never adds a line nor a raw escape to a reply."""
    path = fresh.control_socket
    vhost = "a\nid=4242 vhost=forged\r\x1b]0;pwned\x07\u2028\ud800"
    shown = "a\\nid=4242 vhost=forged\\r\\x1b]0;pwned\\x07\\u2028\\ud800"
    ops.pause_vhost(fresh.ctx, vhost)
    assert await ctl(path, "VHOST PRINT") == f"{shown} = PAUSED\n"
    lim.set_limit(fresh.ctx, vhost, "connections", 3)
    assert print_limits(fresh.ctx, vhost) == (
        f"For vhost {shown}, allow at most 3 concurrent connections.\n"
    )
    # Whatever a command writes, no control character but the line feed gets through.
    out = control.ControlOutput()
    await out.write("one\x1b[2J\r\ntwo\t\n")
    assert out.parts == ["one\\x1b[2J\\r\ntwo\\t\n"]
