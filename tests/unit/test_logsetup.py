"""Logging as the original's (reference §9.5): levels, line formats, sequenced rotating files."""

from __future__ import annotations

import logging
import os
import re
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
