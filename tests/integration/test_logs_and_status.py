"""Log lines, --log-level, progress bytes and the terminal status line, from real processes."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import command_path, run_cli
from tests.helpers.logs import LOG_LINE, error_lines, log_lines
from tests.integration.test_stream_contract import valid_lines

pytestmark = pytest.mark.integration

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
NO_STATE_INFO = "No --state-dir: dedupe keys are kept in memory only."


def check_every_line(stderr: str, fmt: str) -> list[dict]:
    """Every stderr line has an RFC 3339 UTC time and a level; returns them parsed."""
    parsed = []
    for line in stderr.splitlines():
        if fmt == "text" and not line.startswith("{"):
            match = LOG_LINE.match(line)
            assert match, f"not a log line: {line!r}"
            parsed.append(match.groupdict())
            continue
        doc = orjson.loads(line)
        assert RFC3339_UTC.match(doc["time"]) and doc["level"] in ("debug", "info", "warning", "error"), line
        parsed.append(doc)
    return parsed


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_stderr_line_has_a_time_and_a_level(tmp_path: Path, fmt: str) -> None:
    """s3-batch with a warning, info lines, a bad record under --strict (the error line), stats."""
    data = b'{"a": 1}\nnot json\n'
    args = ["s3-batch", "--dest", f"file://{tmp_path}/out/", "--strict"]  # no spool dir: a warning
    result = run_cli([*args, "--log-format", fmt], data)
    assert result.returncode == 65, result.stderr
    parsed = check_every_line(result.stderr, fmt)
    levels = [p["level"] for p in parsed]
    assert {"info", "warning", "error"} <= set(levels), result.stderr
    assert result.stderr.splitlines()[-1].startswith(("{", "20"))
    assert sum(1 for line in result.stderr.splitlines() if line.startswith('{"stats"')) == 1


def test_log_level_warning_silences_info_but_not_errors_or_stats(tmp_path: Path) -> None:
    event = valid_lines(1)[0] + b"\n"
    chatty = run_cli(["harmony-alerts", "--all"], event)
    assert [line["msg"] for line in log_lines(chatty.stderr, "info")] == [NO_STATE_INFO]
    for quiet in (
        run_cli(["harmony-alerts", "--all", "--log-level", "warning"], event),
        run_cli(["harmony-alerts", "--all"], event, env={"HARMONY_PIPES_LOG_LEVEL": "warning"}),
        run_cli(["harmony-alerts", "--all", "--log-level", "ERROR"], event),
    ):
        assert quiet.returncode == 0, quiet.stderr
        assert quiet.stderr.splitlines() == [quiet.stderr.splitlines()[-1]]  # only the stats line
        assert quiet.stats["records_in"] == 1 and len(quiet.stdout_lines) == 1
    failing = run_cli(["harmony-alerts", "--all", "--strict", "--log-level", "error"], event + b"[1]\n")
    assert failing.returncode == 65
    assert len(error_lines(failing.stderr)) == 1 and "input line 2" in error_lines(failing.stderr)[0]
    assert failing.stats["bad_records"] == 1
    assert not log_lines(failing.stderr, "info")


def test_log_level_is_on_every_command() -> None:
    for name in ("harmony-events", "harmony-alerts", "s3-batch", "aws-discovery", "hec-emulator"):
        result = run_cli([name, "--log-level", "loud"])
        assert result.returncode == 2, (name, result.stderr)
        assert "'loud' is not one of 'debug', 'info', 'warning', 'error'" in result.stderr, result.stderr


def test_debug_level_shows_debug_lines(tmp_path: Path) -> None:
    from tests.helpers.emulator import start_emulator
    from tests.helpers.events import collector_env

    with start_emulator("--generate", "3") as emu:
        env = collector_env(emu.url)
        quiet = run_cli(["harmony-events", "--once", "--start", "2h"], env=env)
        loud = run_cli(["harmony-events", "--once", "--start", "2h", "--log-level", "debug"], env=env)
    assert quiet.returncode == 0 and loud.returncode == 0, loud.stderr
    assert not log_lines(quiet.stderr, "debug")
    assert any(line["msg"].startswith("collecting from ") for line in log_lines(loud.stderr, "debug")), loud.stderr


def test_progress_lines_count_bytes_as_they_are_read() -> None:
    """bytes_in grows with each part written, long before end of input (it was 0 until exit)."""
    proc = subprocess.Popen(
        [command_path("harmony-alerts"), "--all", "--stats-interval-secs", "0.2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines = valid_lines(30)
    parts = [b"\n".join(lines[:10]) + b"\n", b"\n".join(lines[10:20]) + b"\n", b"\n".join(lines[20:]) + b"\n"]
    for part in parts:
        proc.stdin.write(part)
        proc.stdin.flush()
        time.sleep(0.6)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    docs = [orjson.loads(line) for line in err.splitlines() if line.startswith(b"{")]
    progress = [d["progress"] for d in docs if "progress" in d]
    seen = {(p["records_in"], p["bytes_in"]) for p in progress}
    written = [sum(len(p) for p in parts[: n + 1]) for n in range(3)]
    assert {(10, written[0]), (20, written[1]), (30, written[2])} <= seen, seen
    assert all(RFC3339_UTC.match(d["time"]) for d in docs)


def read_until(master: int, marker: bytes, timeout_secs: float = 20) -> bytes:
    """What the terminal showed until `marker` appeared (the process keeps running)."""
    import select

    screen = b""
    deadline = time.monotonic() + timeout_secs
    while marker not in screen and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            screen += os.read(master, 65536)
    assert marker in screen, screen
    return screen


def read_screen(master: int, screen: bytes = b"") -> bytes:
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    return screen


def test_terminal_status_line_of_s3_batch_on_a_regular_file(tmp_path: Path) -> None:
    """stdin a 2.8 MB file, stderr a terminal; a tiny spool and a refused destination hold s3-batch
    after its first 1 MiB read, so the status line shows records in, records accepted as "out"
    (no object is written: "0 objects"), MB/s and the percent of the file read."""
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"".join(orjson.dumps({"i": i, "pad": "x" * 50}) + b"\n" for i in range(40_000)))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the destination directory should be")
    master, slave = pty.openpty()
    with open(data, "rb") as stdin:
        proc = subprocess.Popen(
            [
                command_path("s3-batch"),
                "--dest",
                f"file://{blocked}/",
                "--compression",
                "none",
                "--max-spool-bytes",
                "1000",
                "--spool-dir",
                str(tmp_path / "spool"),
                "--retry-max-delay-secs",
                "0.2",
                "--drain-timeout-secs",
                "0.2",
                "--shutdown-timeout-secs",
                "0.5",
            ],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=slave,
        )
    os.close(slave)
    shown = read_until(master, b"%\x1b[K")  # the status line (drawn once a second) is on the screen
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    # the spool stays full (the destination is refused): reading cannot go on to the end of the
    # file, so the shutdown timeout ends it with 75 (everything read is spooled)
    assert proc.returncode == 75
    screen = read_screen(master, shown).decode()
    status = re.findall(
        r"\rs3-batch: ([\d,]+) in, ([\d,]+) out, 0 objects, \d+ bad, [\d,]+ rec/s, ([\d.]+) MB/s, (\d+)%\x1b\[K", screen
    )
    assert status, screen
    records_in, records_out, mb_per_sec, percent = status[-1]
    assert int(records_in.replace(",", "")) > 0 and records_out == records_in
    assert float(mb_per_sec) > 0
    size = data.stat().st_size
    assert int(percent) == (1 << 20) * 100 // size  # one 1 MiB chunk of the file read
    for line in screen.split("\r\n"):  # every log line starts clean (the status is cleared first)
        text = line.rsplit("\r\x1b[K", 1)[-1]
        if text.startswith("20"):
            assert LOG_LINE.match(text), repr(line)
