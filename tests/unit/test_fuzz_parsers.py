"""Fuzzing the parsers that read what outsiders send: only each module's own error may escape.

Extends tests/unit/test_codec_properties.py and tests/unit/test_proxy_protocol.py (which
feed plain garbage) with structure-aware inputs: the relay's ``FrameScanner`` against
the full ``FrameReader``, field tables with hostile nesting and declared lengths,
PROXY v1 lines and v2 headers built from plausible parts, and control-socket lines
built from the real verbs (``admin.control.execute``: every line finishes, none raises
or hits the internal-error path; an unknown verb gets HELP).
``AMQPPROX_FUZZ_EXAMPLES`` sets the examples per property (``make soak`` raises it).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from amqpprox.admin import control
from amqpprox.amqp import scanner as frame_walks
from amqpprox.amqp.errors import FRAME_ERROR, SYNTAX_ERROR, ProtocolError
from amqpprox.amqp.fields import MAX_NESTING, decode_table
from amqpprox.amqp.frames import FrameReader, NeedData, encode_frame
from amqpprox.amqp.scanner import FrameScanner, PyFrameScanner, Scanner
from amqpprox.core.context import Context, Settings
from amqpprox.core.model import ListenerSpec
from amqpprox.errors import InvalidState
from amqpprox.proxy import proxy_protocol as pp

EXAMPLES = int(os.environ.get("AMQPPROX_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_FRAME = 4096


# -- the relay's frame scanner ----------------------------------------------------------
def _chunks(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    start = 0
    for point in [*points, len(data)]:
        yield data[start:point]
        start = point


frame_specs = st.tuples(
    st.sampled_from([1, 2, 3, 8]),
    st.integers(0, 3),
    st.one_of(
        st.binary(max_size=64),
        # Connection.Close / CloseOk payloads, so the scanner's Close detection is exercised.
        st.sampled_from([b"\x00\x0a\x00\x32\x00\xc8\x00\x00\x00\x00", b"\x00\x0a\x00\x33"]),
    ),
    st.sampled_from(["ok", "ok", "ok", "bad_end", "oversize"]),
)


def _wire(spec: tuple[int, int, bytes, str]) -> bytes:
    frame_type, channel, payload, fault = spec
    if fault == "oversize":
        return bytes([frame_type]) + channel.to_bytes(2, "big") + (MAX_FRAME).to_bytes(4, "big")
    data = bytearray(encode_frame(frame_type, channel, payload))
    if fault == "bad_end":
        data[-1] = 0x00
    return bytes(data)


# The C extension, imported here whatever AMQPPROX_NO_EXTENSIONS says (that only decides
# what the relay runs); its tests are skipped where it was not built (no compiler).
try:
    from amqpprox.amqp import _framescan
except ImportError:
    _framescan = None  # type: ignore[assignment]
needs_c = pytest.mark.skipif(_framescan is None, reason="amqpprox.amqp._framescan was not built")

# Every scanner the relay can run: the C type, and the Python class (its reference and
# fallback) over either walk.
SCANNERS: dict[str, Callable[[], Scanner]] = {
    "c-type": lambda: _framescan.FrameScanner(MAX_FRAME),
    "python-c-walk": lambda: PyFrameScanner(MAX_FRAME, _framescan.scan),
    "python-python-walk": lambda: PyFrameScanner(MAX_FRAME, frame_walks.scan_py),
}
SCANNER_KINDS = [
    pytest.param(kind, marks=[] if kind == "python-python-walk" else [needs_c])
    for kind in sorted(SCANNERS)
]


@needs_c
def test_the_relay_runs_the_c_scanner_when_built() -> None:
    """`pip install` compiled amqpprox/amqp/_framescan.c: the relay does not fall back."""
    expected = "python" if frame_walks.extensions_disabled() else "c"
    assert expected == frame_walks.IMPLEMENTATION
    assert (FrameScanner is _framescan.FrameScanner) == (expected == "c")


def _observed(scanner: Scanner) -> tuple[object, ...]:
    return (
        scanner.frames,
        scanner.close_seen,
        scanner.close_ok_seen,
        scanner.close_offset,
        scanner.error,
        scanner.at_boundary,
    )


@needs_c
@FUZZ
@given(
    st.lists(frame_specs, max_size=8),
    st.binary(max_size=40),
    st.lists(st.integers(0, 1200), max_size=12),
    st.integers(20, 300),
)
def test_c_and_python_scanners_agree_read_by_read(
    specs: list[tuple[int, int, bytes, str]], noise: bytes, cuts: list[int], max_frame: int
) -> None:
    """After every read, the C scanner and its Python reference show the same state.

    Reads go on after a fault too, so every state transition is compared, split headers
    and split frames included, on any frame-max.
    """
    stream = b"".join(_wire(s) for s in specs) + noise
    c_scanner, py_scanner = _framescan.FrameScanner(max_frame), PyFrameScanner(max_frame)
    assert c_scanner.max_frame == py_scanner.max_frame == max_frame
    for chunk in _chunks(stream, cuts):
        assert c_scanner.boundary_offset(chunk) == py_scanner.boundary_offset(chunk)
        assert c_scanner.feed(chunk) == py_scanner.feed(chunk)
        assert _observed(c_scanner) == _observed(py_scanner)
    c_scanner.close_seen = py_scanner.close_seen = False  # the session resets these
    assert _observed(c_scanner) == _observed(py_scanner)


@needs_c
@FUZZ
@given(
    st.binary(max_size=300),
    st.integers(0, 300),
    st.integers(-9, 300),
    st.lists(frame_specs, max_size=6),
)
def test_c_and_python_frame_walks_agree(
    noise: bytes, pos: int, max_size: int, specs: list[tuple[int, int, bytes, str]]
) -> None:
    """Same result tuple from the C walk and its Python reference, on frames and garbage."""
    for data in (
        noise,
        b"".join(_wire(s) for s in specs),
        b"".join(_wire(s) for s in specs) + noise,
    ):
        start = min(pos, len(data))
        assert _framescan.scan(data, start, max_size) == frame_walks.scan_py(data, start, max_size)


@pytest.mark.parametrize("kind", SCANNER_KINDS)
@FUZZ
@given(st.lists(frame_specs, max_size=10), st.lists(st.integers(0, 2000), max_size=10))
def test_scanner_agrees_with_the_frame_reader_under_any_chunking(
    kind: str, specs: list[tuple[int, int, bytes, str]], cuts: list[int]
) -> None:
    """The relay's offset scanner and the handshake's reader: same frames, same first fault."""
    stream = b"".join(_wire(s) for s in specs)
    reader = FrameReader(MAX_FRAME)
    reader.feed(stream)
    good = 0
    reader_error = False
    while True:
        try:
            frame = reader.next_frame()
        except ProtocolError as error:
            assert error.reply_code == FRAME_ERROR
            reader_error = True
            break
        if isinstance(frame, NeedData):
            break
        good += 1
    frame_scanner = SCANNERS[kind]()
    consumed = 0
    scanner_error = False
    for chunk in _chunks(stream, cuts):
        bad = frame_scanner.feed(chunk)
        assert bad == -1 or 0 <= bad <= len(chunk)
        if bad >= 0:
            scanner_error = True
            assert frame_scanner.error
            break
        consumed += len(chunk)
    assert scanner_error == reader_error
    assert frame_scanner.frames == good
    if not scanner_error:
        assert frame_scanner.at_boundary == (reader.buffered == 0)
    # The fault is reported where its frame starts (the relay forwards everything before
    # it), or at 0 when that frame began in an earlier chunk.
    good_wires = [_wire(spec) for spec in specs[:good]]
    if scanner_error:
        fault_at = sum(len(w) for w in good_wires)
        assert consumed + bad == max(fault_at, consumed)
    # Channel-0 Connection.Close / CloseOk are spotted from their headers: in the good
    # frames, and in a faulty one whose size passed (its end octet is checked after).
    scanned = list(good_wires)
    if good < len(specs) and specs[good][3] == "bad_end":
        scanned.append(_wire(specs[good]))
    closes = {w[7:11] for w in scanned if w[0] == 1 and w[1:3] == b"\0\0" and len(w) >= 12}
    assert frame_scanner.close_seen == (b"\x00\x0a\x00\x32" in closes)
    assert frame_scanner.close_ok_seen == (b"\x00\x0a\x00\x33" in closes)


@pytest.mark.parametrize("kind", SCANNER_KINDS)
@FUZZ
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=12))
def test_scanner_never_raises_and_reports_offsets_inside_the_chunk(
    kind: str, data: bytes, cuts: list[int]
) -> None:
    scanner = SCANNERS[kind]()
    for chunk in _chunks(data, cuts):
        before = scanner.at_boundary
        offset = scanner.boundary_offset(chunk)
        assert offset == -1 or 0 <= offset <= len(chunk)
        if before:
            assert offset == 0
        bad = scanner.feed(chunk)
        assert bad == -1 or 0 <= bad <= len(chunk)
        if bad >= 0:
            break


# -- field tables ---------------------------------------------------------------------------
def _nest(kind: bytes, depth: int) -> bytes:
    inner = b""
    for _ in range(depth):
        if kind == b"F":
            inner = b"\x01kF" + len(inner).to_bytes(4, "big") + inner
        else:
            inner = b"A" + len(inner).to_bytes(4, "big") + inner
    return inner if kind == b"F" else b"\x01a" + inner


@FUZZ
@given(st.sampled_from([b"F", b"A"]), st.integers(MAX_NESTING + 1, 12_000))
@example(b"F", 10_000)
@example(b"A", 10_000)
def test_deep_nesting_is_a_syntax_error_never_a_recursion_error(kind: bytes, depth: int) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_table(_nest(kind, depth))
    assert info.value.reply_code == SYNTAX_ERROR


@FUZZ
@given(st.sampled_from([b"F", b"A"]), st.integers(1, MAX_NESTING))
def test_nesting_within_the_limit_decodes(kind: bytes, depth: int) -> None:
    assert isinstance(decode_table(_nest(kind, depth)), dict)


@FUZZ
@given(
    st.sampled_from(list(b"SFAx")),
    st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([2**31, 2**31 - 1, 2**32 - 1])),
    st.binary(max_size=64),
)
def test_declared_lengths_never_escape_the_container(tag: int, declared: int, rest: bytes) -> None:
    data = b"\x01k" + bytes([tag]) + declared.to_bytes(4, "big") + rest
    try:
        table = decode_table(data)
    except ProtocolError as error:
        assert error.reply_code == SYNTAX_ERROR
        return
    assert declared <= len(rest)
    assert "k" in table


# -- PROXY protocol ----------------------------------------------------------------------
_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_junk = st.text(alphabet=st.characters(codec="latin-1"), max_size=12)
_ports = st.one_of(st.integers(-5, 70000).map(str), _junk)
_v1_lines = st.builds(
    lambda fam, a, b, p, q, sep, end: (
        "PROXY" + sep + fam + sep + a + sep + b + sep + p + sep + q + end
    ).encode("latin-1"),
    st.sampled_from(["TCP4", "TCP6", "UNKNOWN", "tcp4", "TCP5", ""]),
    st.one_of(_ipv4, _ipv6, _junk),
    st.one_of(_ipv4, _ipv6, _junk),
    _ports,
    _ports,
    st.sampled_from([" ", "  ", "\t", ""]),
    st.sampled_from(["\r\n", "\n", "\r", "", "\r\nAMQP"]),
)
_v2_headers = st.builds(
    lambda vc, ft, length, body: (
        pp.V2_SIGNATURE + bytes([vc, ft]) + length.to_bytes(2, "big") + body
    ),
    st.sampled_from([0x20, 0x21, 0x11, 0x22, 0x2F, 0x31]),
    st.sampled_from([0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32, 0x13, 0xFF]),
    st.integers(0, 300),
    st.binary(max_size=300),
)


@FUZZ
@given(st.one_of(_v1_lines, _v2_headers), st.binary(max_size=8))
def test_proxy_headers_built_from_plausible_parts(header: bytes, trailing: bytes) -> None:
    data = header + trailing
    for end in range(len(data) + 1):  # every prefix: NEED_DATA, a header, or the typed error
        try:
            result = pp.parse(data[:end])
        except pp.ProxyProtocolError:
            continue
        if isinstance(result, tuple):
            parsed, consumed = result
            assert isinstance(parsed, pp.ProxyHeader)
            assert 0 < consumed <= end


# -- control lines --------------------------------------------------------------------------
class _Listeners:
    """No ports are bound by the fuzzer: LISTEN START is refused as a busy port."""

    async def start(self, spec: ListenerSpec) -> int:
        raise InvalidState(f"Failed to listen on port {spec.port}: fuzzing")

    async def stop(self, port: int | None = None) -> list[int]:
        return []

    def specs(self) -> list[ListenerSpec]:
        return []


class _Output(control.ControlOutput):
    """Collects the reply; reports the reader gone once something was written (STAT LISTEN)."""

    streaming = True

    @property
    def closed(self) -> bool:
        return bool(self.parts)


_tokens = st.one_of(
    st.sampled_from(
        [
            *control.COMMANDS,
            "ADD", "ADD_DNS", "DELETE", "PRINT", "START", "START_SECURE", "STOP", "PAUSE",
            "UNPAUSE", "DISCONNECT_GRACEFUL", "FORCE_DISCONNECT", "BACKEND_DISCONNECT",
            "DEFAULT", "REMOVE_DEFAULT", "FARM", "PARTITION", "SET", "LISTEN", "SEND",
            "json", "human", "overall", "vhost=/", "CONSOLE", "FILE", "DNS", "ON", "OFF",
            "SEND-PROXY", "TLS", "INGRESS", "EGRESS", "CONN_RATE", "DATA_RATE", "TOTAL",
            "127.0.0.1", "localhost", "5672", "0", "1", "-1", "65536", "99999999999999999999",
            "b1", "f1", "/", "%", "\x00", "\u2603", "1e9", "nan",
        ]
    ),
    st.text(max_size=12),
)  # fmt: skip
_lines = st.one_of(
    st.lists(_tokens, max_size=8).map(" ".join),
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode(errors="replace")),
)


def _local_only_getaddrinfo(real):  # type: ignore[no-untyped-def]
    def getaddrinfo(host, port, *args, **kw):  # type: ignore[no-untyped-def]
        text = host.decode() if isinstance(host, bytes) else str(host)
        if text.startswith("127.") or text == "localhost":
            return real(host, port, *args, **kw)
        raise socket.gaierror(socket.EAI_NONAME, "fuzzing: only local names resolve")

    return getaddrinfo


@FUZZ
@given(lines=st.lists(_lines, min_size=1, max_size=6))
def test_any_control_line_finishes_and_never_raises(
    lines: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    real = socket.getaddrinfo
    socket.getaddrinfo = _local_only_getaddrinfo(real)
    loop = asyncio.new_event_loop()
    try:
        directory = str(tmp_path_factory.mktemp("ctl"))
        ctx = loop.run_until_complete(_context(directory))
        for line in lines:
            out = _Output()
            try:
                loop.run_until_complete(asyncio.wait_for(control.execute(ctx, line, out), 5))
            except TimeoutError:
                # Only a streaming command may keep going, and it must have said something.
                assert line.split()[0].upper() == "STAT", line
            reply = "".join(out.parts)
            # As upstream, a successful command may answer with nothing but the close; an
            # unknown verb answers with HELP; nothing is an internal error.
            if line.strip("\r\n").lstrip(" ").partition(" ")[0].upper() not in control.COMMANDS:
                assert reply == control.help_text(), line
            assert "Internal error" not in reply, line
        ctx.stats.stop_senders()
    finally:
        socket.getaddrinfo = real
        loop.close()


async def _context(directory: str) -> Context:
    return Context(
        Settings(control_socket=os.path.join(directory, "c"), log_directory=directory),
        _Listeners(),
    )


# -- crashers found by the properties above, kept as regression tests ------------------------
@pytest.mark.parametrize("kind", SCANNER_KINDS)
@pytest.mark.parametrize("payload", [b"", b"\x00", b"\x00\x0a", b"\x00\x0a\x00"])
def test_scanner_counts_a_short_channel_0_method_frame_at_once(kind: str, payload: bytes) -> None:
    """Found by the scanner/reader agreement property: a complete channel-0 method frame
    shorter than 11 bytes was held back as a split header, uncounted, with the scanner
    off its frame boundary until more bytes came (a graceful close would then wait)."""
    scanner = SCANNERS[kind]()
    assert scanner.feed(encode_frame(1, 0, payload)) == -1
    assert (scanner.frames, scanner.at_boundary, scanner.close_seen) == (1, True, False)
    assert scanner.feed(b"") == -1
    assert scanner.feed(encode_frame(1, 0, b"\x00\x0a\x00\x32" + b"\x00" * 7)) == -1
    assert (scanner.frames, scanner.close_seen) == (2, True)
