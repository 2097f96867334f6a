"""Logging as the original's (reference §9.5): levels, line formats, sequenced rotating files."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from amqpprox import logsetup


class _Session:
    def __init__(self, session_id: int, vhost: str) -> None:
        self.id = session_id
        self.vhost = vhost


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[Path]:
    logsetup.configure(str(tmp_path), 0, 3)
    try:
        yield tmp_path
    finally:
        logsetup.unconfigure()


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("amqpprox.session", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_levels_and_the_lenient_run_time_form() -> None:
    assert [logsetup.level_for(v) for v in range(6)] == [50, 40, 30, 20, 10, 5]
    with pytest.raises(ValueError):
        logsetup.level_for(6)
    assert logsetup.level_for_any(-1) > logging.CRITICAL
    assert logsetup.level_for_any(99) < logsetup.TRACE


def test_console_line_carries_vhost_and_connection_id() -> None:
    formatter = logsetup.ConsoleFormatter()
    fields = logsetup.SessionFields()
    record = _record("Selected farm: %s", "f1", vhost="vh", conn_id=7)
    fields.filter(record)
    assert formatter.format(record) == "INFO [vh] 7: Selected farm: f1"
    plain = _record("no session here")
    fields.filter(plain)
    assert formatter.format(plain) == "INFO: no session here"
    # The data plane's "session %d ..." convention yields the connection id.
    by_convention = _record("session %d: open", 12)
    fields.filter(by_convention)
    assert formatter.format(by_convention) == "INFO 12: session 12: open"


def test_adapter_and_context_variable_supply_the_session() -> None:
    session = _Session(3, "/")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("amqpprox.test-adapter")
    logger.propagate = False
    handler = Keep()
    handler.addFilter(logsetup.SessionFields())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logsetup.SessionLogAdapter(logger, session).info("paused")
        session.vhost = "changed"  # read at log time
        logsetup.SessionLogAdapter(logger, session).info("again")
        token = logsetup.session_context.set(_Session(9, "ctx"))
        try:
            logger.info("from context")
        finally:
            logsetup.session_context.reset(token)
    finally:
        logger.removeHandler(handler)
    assert [getattr(r, "session_tag", None) for r in records] == [
        " [/] 3",
        " [changed] 3",
        " [ctx] 9",
    ]


def test_file_name_format_and_line_format(configured: Path) -> None:
    logger = logging.getLogger("amqpprox.test-file")
    logsetup.SessionLogAdapter(logger, _Session(5, "vh")).info("hello %s", "file")
    logger.debug("not at INFO")
    sink = logsetup.sink("file")
    assert sink is not None
    sink.flush()
    names = os.listdir(configured)
    assert len(names) == 1 and re.fullmatch(r"amqpprox_\d{8}_00000\.log", names[0])
    lines = (configured / names[0]).read_text().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z 1 \d+-\d+ INFO \[vh\] 5: hello file", lines[0]
    ), lines[0]


def test_log_file_verbosity_changes_at_run_time(configured: Path) -> None:
    logger = logging.getLogger("amqpprox.test-level")
    logger.debug("hidden")
    logsetup.set_file_verbosity(4)
    logger.debug("shown")
    sink = logsetup.sink("file")
    assert sink is not None
    sink.flush()
    text = "".join(p.read_text() for p in configured.iterdir())
    assert "hidden" not in text and "DEBUG: shown" in text


def test_rotation_by_size_numbers_the_files(tmp_path: Path) -> None:
    handler = logsetup.SequencedFileHandler(str(tmp_path), max_bytes=200)
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        for index in range(10):
            handler.emit(_record("x" * 60 + f" {index}"))
    finally:
        handler.close()
    names = sorted(os.listdir(tmp_path))
    assert len(names) >= 3
    assert [n[-9:] for n in names[:3]] == ["00000.log", "00001.log", "00002.log"]
    assert all(os.path.getsize(tmp_path / n) <= 200 for n in names)
    text = "".join((tmp_path / n).read_text() for n in names)
    assert [line.split()[-1] for line in text.splitlines()] == [str(i) for i in range(10)]


def test_a_new_process_continues_the_numbering_and_a_new_day_restarts_it(tmp_path: Path) -> None:
    day1 = 1_700_000_000.0
    now = [day1]
    first = logsetup.SequencedFileHandler(str(tmp_path), clock=lambda: now[0])
    first.emit(_record("one"))
    first.close()
    second = logsetup.SequencedFileHandler(str(tmp_path), clock=lambda: now[0])
    second.setFormatter(logging.Formatter("%(message)s"))
    second.emit(_record("two"))
    now[0] = day1 + 86_400
    second.emit(_record("three"))
    second.close()
    names = sorted(os.listdir(tmp_path))
    assert names == [
        "amqpprox_20231114_00000.log",
        "amqpprox_20231114_00001.log",
        "amqpprox_20231115_00000.log",
    ]
    assert (tmp_path / names[2]).read_text() == "three\n"


def test_old_files_are_pruned_to_the_directory_cap(tmp_path: Path) -> None:
    for number in range(5):
        (tmp_path / f"amqpprox_20200101_{number:05d}.log").write_text("o" * 100)
    handler = logsetup.SequencedFileHandler(str(tmp_path), max_bytes=50, directory_max_bytes=250)
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        handler.emit(_record("a" * 40))
        handler.emit(_record("b" * 40))  # rolls over, then prunes the oldest
    finally:
        handler.close()
    total = sum(os.path.getsize(tmp_path / n) for n in os.listdir(tmp_path))
    assert total <= 250
    assert not (tmp_path / "amqpprox_20200101_00000.log").exists()


# -- untrusted text ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain / vhost", "plain / vhost"),
        ("caf\u00e9 \u65e5\u672c \\n stays", "caf\u00e9 \u65e5\u672c \\n stays"),  # printable
        ("nbsp\u00a0zwsp\u200b", "nbsp\u00a0zwsp\u200b"),  # not controls: kept
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("\x00\x1b]0;pwned\x07\x7f", "\\x00\\x1b]0;pwned\\x07\\x7f"),
        ("c1\x80\x85\x9b\x9f", "c1\\x80\\x85\\x9b\\x9f"),
        ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),
        ("lone\ud800\udfff", "lone\\ud800\\udfff"),
    ],
)
def test_escape_controls_is_visible_and_keeps_printable_text(raw: str, shown: str) -> None:
    assert logsetup.escape_controls(raw) == shown
    assert logsetup.has_controls(raw) == (raw != shown)
    assert logsetup.escape_lines(raw).replace("\n", "\\n") == shown  # all but the LF


FORGED = "x\n2030-01-01T00:00:00.000000Z 1 1-1 INFO 4242: forged\r\x1b]0;pwned\x07\u2028"


def test_a_forged_vhost_or_message_stays_on_its_record_line(configured: Path) -> None:
    logger = logging.getLogger("amqpprox.test-forge")
    adapter = logsetup.SessionLogAdapter(logger, _Session(5, FORGED))
    adapter.info('Starting connection for: connectionName="%s" vhost=%s', FORGED, FORGED)
    sink = logsetup.sink("file")
    assert sink is not None
    sink.flush()
    (name,) = os.listdir(configured)
    raw = (configured / name).read_bytes()
    lines = raw.decode().split("\n")
    assert lines[-1] == "" and len(lines) == 2  # one record: one line and its terminator
    line = lines[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z 1 \d+-\d+ INFO \[x\\n2030", line)
    for byte in (b"\r", b"\x1b", b"\x07", "\u2028".encode()):
        assert byte not in raw
    shown = logsetup.escape_controls(FORGED)
    assert line.endswith(f'connectionName="{shown}" vhost={shown}')


def test_console_line_is_escaped_and_a_traceback_is_marked_continuation() -> None:
    formatter = logsetup.ConsoleFormatter()
    try:
        raise ValueError(FORGED)
    except ValueError:
        record = logging.LogRecord(
            "amqpprox.x", logging.ERROR, __file__, 1, "failed %s", (FORGED,), sys.exc_info()
        )
    record.__dict__.update(vhost="v\x1bh", conn_id=3)
    logsetup.SessionFields().filter(record)
    text = formatter.format(record)
    first, *rest = text.split("\n")
    assert first == f"ERROR [v\\x1bh] 3: failed {logsetup.escape_controls(FORGED)}"
    assert rest and all(line.startswith(logsetup.CONTINUATION) for line in rest)
    assert "ValueError: x" in text
    assert not logsetup.has_controls(text.replace("\n", ""))
    file_text = logsetup.FileFormatter().format(record)
    assert file_text.split("\n")[1:] == rest


def test_log_files_are_readable_by_owner_and_group_only(tmp_path: Path) -> None:
    handler = logsetup.SequencedFileHandler(str(tmp_path), max_bytes=200)
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        for _ in range(5):  # a rotation too: every file the handler opens
            handler.emit(_record("x" * 80))
    finally:
        handler.close()
    files = sorted(tmp_path.iterdir())
    assert len(files) >= 2
    assert {f.stat().st_mode & 0o777 for f in files} == {0o640}


def test_bidirectional_controls_are_escaped_too() -> None:
    # U+202E would show "evil\u202etxt.exe" reversed on a terminal: escaped, it cannot.
    assert logsetup.escape_controls("evil\u202etxt.exe") == "evil\\u202etxt.exe"
    assert logsetup.escape_controls("a\u2066b\u200fc") == "a\\u2066b\\u200fc"
    assert logsetup.escape_controls("Zürich ÷ 東京") == "Zürich ÷ 東京"


# -- hot_info: the same file line, without a LogRecord ------------------------------------
HOT = 'Starting connection for: connectionName="%s" id=%d vhost=%s'


def _file_lines(directory: Path) -> list[str]:
    sink = logsetup.sink("file")
    assert sink is not None
    sink.flush()
    return "".join(p.read_text() for p in sorted(directory.iterdir())).splitlines()


def _after_stamp(line: str) -> str:
    """A file line without its time (the one part two records never share)."""
    return line.split(" ", 1)[1]


def test_hot_info_writes_the_line_logger_info_writes(configured: Path) -> None:
    logger = logging.getLogger("amqpprox.test-hot")
    logger.info(HOT, FORGED, 7, "/")
    logsetup.hot_info(logger, HOT, FORGED, 7, "/")
    token = logsetup.session_context.set(_Session(9, "ctx"))
    try:
        logger.info("session %d: %s", 9, "x")
        logsetup.hot_info(logger, "session %d: %s", 9, "x")
    finally:
        logsetup.session_context.reset(token)
    logsetup.hot_info(logger, "session %d: %s", 4, "by convention")
    logger.info("session %d: %s", 4, "by convention")
    lines = _file_lines(configured)
    assert len(lines) == 6  # one line each: the forged name cannot start a line
    shown = [_after_stamp(line) for line in lines]
    ids = [int(rest.split(" ", 1)[0]) for rest in shown]
    assert ids == [1, 2, 3, 4, 5, 6]  # one sequence of line ids for both ways
    bodies = [rest.split(" ", 1)[1] for rest in shown]
    assert bodies[0] == bodies[1] and bodies[2] == bodies[3] and bodies[4] == bodies[5]
    name = logsetup.escape_controls(FORGED)
    assert bodies[1].endswith(
        f'INFO: Starting connection for: connectionName="{name}" id=7 vhost=/'
    )
    assert bodies[3].endswith("INFO [ctx] 9: session 9: x")
    assert bodies[4].endswith("INFO 4: session 4: by convention")


def test_hot_info_honours_the_levels(configured: Path) -> None:
    logger = logging.getLogger("amqpprox.test-hot-levels")
    logsetup.set_file_verbosity(2)  # WARN: the file does not show INFO
    logsetup.hot_info(logger, "hidden %s", 1)
    logsetup.set_file_verbosity(3)
    logsetup.hot_info(logger, "shown %s", 2)
    logging.disable(logging.INFO)
    try:
        logsetup.hot_info(logger, "disabled %s", 3)
    finally:
        logging.disable(logging.NOTSET)
    lines = _file_lines(configured)
    assert [_after_stamp(line).split(" ", 1)[1] for line in lines][-1].endswith("INFO: shown 2")
    assert not any("hidden" in line or "disabled" in line for line in lines)


def test_hot_info_reaches_the_console_and_added_handlers_as_logger_info_does(
    configured: Path,
) -> None:
    logger = logging.getLogger("amqpprox.test-hot-others")
    console = logsetup.sink("console")
    assert isinstance(console, logging.StreamHandler)
    console.setStream(io.StringIO())
    logsetup.set_console_verbosity(3)  # the console shows INFO now
    logsetup.hot_info(logger, "to the console %s", 1)
    logsetup.set_console_verbosity(0)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    logger.addHandler(keep)
    try:
        logsetup.hot_info(logger, "to an added handler %s", 2)
    finally:
        logger.removeHandler(keep)
    parent = logging.getLogger("amqpprox")
    parent.addHandler(keep)
    try:
        logsetup.hot_info(logger, "to a handler on the parent %s", 3)
    finally:
        parent.removeHandler(keep)
    assert console.stream.getvalue() == "INFO: to the console 1\n"
    assert [r.getMessage() for r in records] == [
        "to an added handler 2",
        "to a handler on the parent 3",
    ]
    lines = _file_lines(configured)
    assert [line.rsplit(": ", 1)[1] for line in lines] == [
        "to the console 1",
        "to an added handler 2",
        "to a handler on the parent 3",
    ]
