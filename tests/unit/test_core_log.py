"""_core.log and the terminal status line of _core.stats: exact lines with a fixed clock."""

from __future__ import annotations

import io
import os

import orjson
import pytest

from harmony_pipes import __version__
from harmony_pipes._core.log import Log, rfc3339_utc
from harmony_pipes._core.stats import Stats
from tests.helpers.logs import error_lines, log_lines

T0 = 1_700_000_000.123_9  # 2023-11-14T22:13:20.123Z


def make_log(fmt: str = "text", **kwargs) -> tuple[Log, io.StringIO]:
    stream = io.StringIO()
    return Log("harmony-alerts", fmt, stream, clock=lambda: T0, **kwargs), stream


def test_rfc3339_utc_with_milliseconds():
    assert rfc3339_utc(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339_utc(T0) == "2023-11-14T22:13:20.123Z"
    assert rfc3339_utc(951_782_400.999_9) == "2000-02-29T00:00:00.999Z"  # truncated, never rounded up a second


def test_text_lines_carry_time_command_level():
    log, stream = make_log()
    log.info("No --state-dir: dedupe keys are kept in memory only.")
    log.warning("spool full", used_bytes=10)
    log.fatal("cannot write /s/dedupe-keys.bin: File too large", "check the state directory", 1)
    assert stream.getvalue().splitlines() == [
        "2023-11-14T22:13:20.123Z harmony-alerts: info: No --state-dir: dedupe keys are kept in memory only.",
        "2023-11-14T22:13:20.123Z harmony-alerts: warning: spool full used_bytes=10",
        "2023-11-14T22:13:20.123Z harmony-alerts: error: cannot write /s/dedupe-keys.bin: File too large"
        " — check the state directory",
    ]
    assert error_lines(stream.getvalue()) == [
        "cannot write /s/dedupe-keys.bin: File too large — check the state directory"
    ]
    assert [line["level"] for line in log_lines(stream.getvalue())] == ["info", "warning", "error"]


def test_json_lines_carry_time_and_level():
    log, stream = make_log("json")
    log.warning("spool full", used_bytes=10)
    log.fatal("bad record at input line 2", "fix the input or drop --strict", 65)
    assert [orjson.loads(line) for line in stream.getvalue().splitlines()] == [
        {
            "level": "warning",
            "time": "2023-11-14T22:13:20.123Z",
            "command": "harmony-alerts",
            "msg": "spool full",
            "used_bytes": 10,
        },
        {
            "level": "error",
            "time": "2023-11-14T22:13:20.123Z",
            "command": "harmony-alerts",
            "msg": "bad record at input line 2",
            "fix": "fix the input or drop --strict",
            "exit_code": 65,
        },
    ]


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("debug", ["debug", "info", "warning", "error", "error"]),
        ("info", ["info", "warning", "error", "error"]),
        ("warning", ["warning", "error", "error"]),
        ("error", ["error", "error"]),
    ],
)
def test_level_threshold_never_drops_the_fatal_line_or_the_stats_line(level, shown):
    log, stream = make_log(level=level)
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.fatal("f", None, 1)
    log.record("stats", {"records_in": 1})
    lines = stream.getvalue().splitlines()
    assert [line["level"] for line in log_lines(stream.getvalue())] == shown
    assert orjson.loads(lines[-1]) == {"stats": {"records_in": 1}, "level": "info", "time": "2023-11-14T22:13:20.123Z"}
    assert lines[-1].startswith('{"stats"')


def test_debug_flag_means_debug_level():
    log, _ = make_log(debug=True)
    assert log.level == "debug" and log.debug_enabled
    assert not make_log(level="info")[0].debug_enabled


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_stats(command: str = "harmony-alerts") -> tuple[Stats, io.StringIO, Clock]:
    clock = Clock()
    log, stream = make_log()
    log.command = command
    return Stats(command, log, live_status=True, clock=clock), stream, clock


def test_final_stats_line_carries_the_version():
    stats, stream, _ = make_stats()
    stats.emit_final()
    doc = orjson.loads(stream.getvalue())
    assert doc["stats"]["version"] == __version__ and doc["stats"]["command"] == "harmony-alerts"
    assert doc["time"] == "2023-11-14T22:13:20.123Z" and doc["level"] == "info"


def test_status_line_of_a_transform_on_a_regular_file(tmp_path):
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"x" * 10_000_000)
    stats, stream, clock = make_stats()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, 1_000_000, os.SEEK_SET)  # stdin may start part-way into the file: count from there
        stats.watch_input(fd)
    finally:
        os.close(fd)
    assert stats.input_total_bytes == 9_000_000
    stats.counters.update(records_in=70_000, records_out=69_800, bytes_in=3_870_000)
    clock.now += 2.0
    assert stats.status_line() == "harmony-alerts: 70,000 in, 69,800 out, 0 bad, 35,000 rec/s, 1.9 MB/s, 43%"
    stats.tick()
    assert stream.getvalue() == "\r" + stats.status_line() + "\x1b[K"


def test_status_line_of_a_sink_counts_accepted_records_and_objects():
    """s3-batch's stdout carries receipts (one per object): "out" is what it accepted, not receipts."""
    stats, _, clock = make_stats("s3-batch")
    read_fd, write_fd = os.pipe()
    try:
        stats.watch_input(read_fd)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert stats.input_total_bytes is None  # a pipe: no percent
    stats.status_out_counter = "records_accepted"
    stats.counters.update(records_in=70_000, records_out=2, records_accepted=69_000, objects=2, bytes_in=5_000_000)
    clock.now += 1.0
    assert stats.status_line() == "s3-batch: 70,000 in, 69,000 out, 2 objects, 0 bad, 70,000 rec/s, 5.0 MB/s"


def test_status_line_of_a_source_shows_output_only():
    stats, _, clock = make_stats("harmony-events")
    stats.counters.update(records_out=1_500, bytes_out=3_000_000)
    clock.now += 3.0
    assert stats.status_line() == "harmony-events: 1,500 out, 0 bad, 500 rec/s, 1.0 MB/s"


def test_a_log_line_clears_the_status_line_first():
    stats, stream, clock = make_stats()
    clock.now += 1.0
    stats.tick()
    stats.log.warning("w")
    assert stream.getvalue() == (
        "\r" + stats.status_line() + "\x1b[K" + "\r\x1b[K" + "2023-11-14T22:13:20.123Z harmony-alerts: warning: w\n"
    )
