"""Coverage-guided fuzzing with atheris (``make soak``): the parsers outsiders feed.

Run as ``python -m tests.atheris_fuzz TARGET -runs=N``; TARGET is one of ``frames``,
``table``, ``proxy``, ``handshake``. Only each module's own typed error may escape; any
other exception is a crash that atheris reports with the input that caused it (turn it
into a regression test in tests/unit/test_fuzz_parsers.py).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports():
    from amqpprox.amqp import handshake as hs
    from amqpprox.amqp.errors import ProtocolError
    from amqpprox.amqp.fields import decode_table
    from amqpprox.amqp.frames import FrameReader, NeedData
    from amqpprox.amqp.scanner import FrameScanner
    from amqpprox.proxy import proxy_protocol as pp


def frames(data: bytes) -> None:
    reader = FrameReader(4096)
    scanner = FrameScanner(4096)
    half = len(data) // 2
    for chunk in (data[:half], data[half:]):
        bad = scanner.feed(chunk)
        assert bad == -1 or 0 <= bad <= len(chunk)
        reader.feed(chunk)
        try:
            while not isinstance(reader.next_frame(), NeedData):
                pass
        except ProtocolError:
            return


def table(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_table(data)


def proxy(data: bytes) -> None:
    with contextlib.suppress(pp.ProxyProtocolError):
        pp.parse(data)


def handshake(data: bytes) -> None:
    server = hs.ServerHandshake(frame_max=4096, max_frame_size=4096, version="0")
    with contextlib.suppress(ProtocolError):
        server.receive_data(b"AMQP\x00\x00\x09\x01" + data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "frames": frames,
    "table": table,
    "proxy": proxy,
    "handshake": handshake,
}

if __name__ == "__main__":
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()
