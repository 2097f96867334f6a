"""Frame layer: constants, encoder, FrameReader limits and errors (AMQP 0-9-1 §4.2.3)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from amqpprox.amqp import errors
from amqpprox.amqp.errors import ProtocolError
from amqpprox.amqp.frames import (
    FRAME_BODY,
    FRAME_END,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_OVERHEAD,
    HEARTBEAT_FRAME,
    LEGACY_PROTOCOL_HEADER,
    NEED_DATA,
    PROTOCOL_HEADER,
    Frame,
    FrameReader,
    encode_frame,
)

# Connection.TuneOk(2047, 131072, 60) on channel 0, written out by hand.
TUNE_OK_FRAME = (
    b"\x01"  # type: method
    b"\x00\x00"  # channel 0
    b"\x00\x00\x00\x0c"  # payload size 12
    b"\x00\x0a\x00\x1f"  # class 10, method 31
    b"\x07\xff"  # channel-max 2047
    b"\x00\x02\x00\x00"  # frame-max 131072
    b"\x00\x3c"  # heartbeat 60
    b"\xce"
)
TUNE_OK_PAYLOAD = TUNE_OK_FRAME[7:-1]


def test_constants() -> None:
    assert (FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT) == (1, 2, 3, 8)
    assert FRAME_END == 0xCE
    assert FRAME_OVERHEAD == 8
    assert PROTOCOL_HEADER == b"AMQP\x00\x00\x09\x01"
    assert LEGACY_PROTOCOL_HEADER == b"AMQP\x01\x01\x00\x09"
    assert HEARTBEAT_FRAME == b"\x08\x00\x00\x00\x00\x00\x00\xce"


def test_error_codes() -> None:
    assert errors.REPLY_SUCCESS == 200
    assert errors.CONNECTION_FORCED == 320
    assert errors.ACCESS_REFUSED == 403
    assert errors.FRAME_ERROR == 501
    assert errors.SYNTAX_ERROR == 502
    assert errors.COMMAND_INVALID == 503
    assert errors.CHANNEL_ERROR == 504
    assert errors.UNEXPECTED_FRAME == 505
    assert errors.RESOURCE_ERROR == 506
    assert errors.NOT_ALLOWED == 530
    assert errors.INTERNAL_ERROR == 541
    exc = ProtocolError(501, "bad")
    assert (exc.reply_code, exc.reply_text) == (501, "bad")
    assert str(exc) == "501 bad"


def test_encode_frame() -> None:
    assert encode_frame(FRAME_METHOD, 0, TUNE_OK_PAYLOAD) == TUNE_OK_FRAME
    assert encode_frame(FRAME_BODY, 0x0102, b"ab") == b"\x03\x01\x02\x00\x00\x00\x02ab\xce"


def test_reader_single_frame() -> None:
    reader = FrameReader()
    reader.feed(TUNE_OK_FRAME)
    assert reader.next_frame() == Frame(FRAME_METHOD, 0, TUNE_OK_PAYLOAD)
    assert reader.next_frame() is NEED_DATA
    assert reader.buffered == 0


def test_reader_byte_at_a_time() -> None:
    reader = FrameReader()
    stream = TUNE_OK_FRAME + HEARTBEAT_FRAME
    frames = []
    for i in range(len(stream)):
        reader.feed(stream[i : i + 1])
        while (frame := reader.next_frame()) is not NEED_DATA:
            frames.append(frame)
    assert frames == [Frame(1, 0, TUNE_OK_PAYLOAD), Frame(8, 0, b"")]


def test_reader_many_frames_in_one_chunk_and_compaction() -> None:
    body = encode_frame(FRAME_BODY, 7, b"x" * 1000)
    reader = FrameReader()
    count = 0
    for _ in range(10):
        reader.feed(body * 20 + body[:3])  # partial tail carried over each time
        while (frame := reader.next_frame()) is not NEED_DATA:
            assert frame == Frame(FRAME_BODY, 7, b"x" * 1000)
            count += 1
        reader.feed(body[3:])
        assert reader.next_frame() == Frame(FRAME_BODY, 7, b"x" * 1000)
        count += 1
    assert count == 210
    assert reader.buffered == 0


def test_oversize_rejected_from_header_alone() -> None:
    reader = FrameReader(max_frame_size=131072)
    # A 7-byte header announcing a 10 MB body; none of the body has arrived.
    reader.feed(b"\x03\x00\x01\x00\x98\x96\x80")
    with pytest.raises(ProtocolError) as info:
        reader.next_frame()
    assert info.value.reply_code == 501


def test_size_limit_is_inclusive_of_overhead() -> None:
    reader = FrameReader(max_frame_size=16)
    reader.feed(encode_frame(FRAME_BODY, 1, b"12345678"))  # exactly 16 bytes
    assert reader.next_frame() == Frame(FRAME_BODY, 1, b"12345678")
    reader.feed(b"\x03\x00\x01\x00\x00\x00\x09")  # 17 bytes announced
    with pytest.raises(ProtocolError) as info:
        reader.next_frame()
    assert info.value.reply_code == 501


def test_partial_header_needs_data() -> None:
    reader = FrameReader()
    reader.feed(b"\x01\x00\x00\x00\x00\x00")
    assert reader.next_frame() is NEED_DATA
    reader.feed(b"\x04")
    assert reader.next_frame() is NEED_DATA  # header complete, body + end missing


def test_bad_frame_end() -> None:
    reader = FrameReader()
    reader.feed(TUNE_OK_FRAME[:-1] + b"\x00")
    with pytest.raises(ProtocolError) as info:
        reader.next_frame()
    assert info.value.reply_code == 501
    assert "0xCE" in info.value.reply_text


@pytest.mark.parametrize("frame_type", [0, 4, 7, 9, 0x41, 0xFF])
def test_unknown_frame_type(frame_type: int) -> None:
    reader = FrameReader()
    reader.feed(bytes([frame_type]) + b"\x00\x00\x00\x00\x00\x00\xce")
    with pytest.raises(ProtocolError) as info:
        reader.next_frame()
    assert info.value.reply_code == 501


def test_take_buffered_returns_rest() -> None:
    reader = FrameReader()
    reader.feed(TUNE_OK_FRAME + b"\x01\x00\x01\x00")
    assert reader.next_frame() == Frame(1, 0, TUNE_OK_PAYLOAD)
    assert reader.take_buffered() == b"\x01\x00\x01\x00"
    assert reader.take_buffered() == b""
    assert reader.next_frame() is NEED_DATA


def test_max_frame_size_must_fit_overhead() -> None:
    with pytest.raises(ValueError):
        FrameReader(max_frame_size=7)


def test_need_data_is_a_singleton() -> None:
    assert repr(NEED_DATA) == "NEED_DATA"
    assert NEED_DATA is type(NEED_DATA).NEED_DATA


def test_codec_is_sans_io() -> None:
    """Nothing in amqpprox.amqp does I/O or reaches into the rest of amqpprox."""
    package = Path(__file__).resolve().parents[2] / "amqpprox" / "amqp"
    forbidden = {"asyncio", "socket", "ssl", "selectors", "threading", "uvloop", "aiohttp"}
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: relative import"
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in forbidden, f"{path.name} imports {name}"
                if top == "amqpprox":
                    assert name.startswith("amqpprox.amqp"), f"{path.name} imports {name}"
