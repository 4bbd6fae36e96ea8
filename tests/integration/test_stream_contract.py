"""The stream contract (DESIGN section 3), proven on the real `harmony-alerts` process.

Bad input never crashes and never costs a good record; signals and a closed stdout end the
command cleanly with its output flushed; exit codes and the stats line are as documented.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import orjson
import pytest

from tests.conftest import command_path, run_cli
from tests.helpers.logs import error_lines, log_lines
from tests.helpers.s3 import all_records, read_file_store
from tests.helpers.schemas import assert_valid

sys.path.insert(0, str(os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")))
from gen_corpus import make_event


def valid_lines(count: int, seed: int = 1) -> list[bytes]:
    from datetime import UTC, datetime, timedelta

    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [orjson.dumps(make_event(rng, start + timedelta(seconds=i), "fuzz-tenant")) for i in range(count)]


def mutate(line: bytes, rng: random.Random) -> bytes:
    data = bytearray(line)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(data)) if data else 0
        if op == 0 and data:
            del data[pos]
        elif op == 1:
            data.insert(pos, rng.choice(b'{}[]",:\\\x00\xff\xc3 0aZ'))
        elif op == 2 and data:
            data[pos] = rng.randrange(256)
        else:
            data = data[: rng.randrange(len(data) + 1)]
    return bytes(data).replace(b"\n", b" ")


def classify(line: bytes, max_line_bytes: int) -> str:
    """The oracle: 'blank', 'good' (a JSON object within the limit) or 'bad'."""
    if not line.strip():
        return "blank"
    if len(line) > max_line_bytes:
        return "bad"
    try:
        return "good" if type(orjson.loads(line)) is dict else "bad"
    except orjson.JSONDecodeError:
        return "bad"


def test_fuzz_never_crashes_counts_every_bad_line_and_keeps_every_good_one(tmp_path) -> None:
    rng = random.Random(20261125)
    base = valid_lines(300)
    lines = list(base)
    lines += [b'{"eventId": "trunc', b"[1, 2, 3]", b"42", b'"just a string"', b"null", b"\xff\xfe\xfd", b"{\x00}"]
    lines += [b'{"eventId":"nul\x00inside","type":"phishing"}', b'{"x":"' + b"a" * (2 << 20) + b'"}']
    lines += [mutate(rng.choice(base), rng) for _ in range(10_000)]
    rng.shuffle(lines)
    data = b"\n".join(lines) + b"\n"
    physical = data.split(b"\n")[:-1]
    verdicts = [classify(line, 1 << 20) for line in physical]
    expected_good = [orjson.loads(line) for line, v in zip(physical, verdicts, strict=True) if v == "good"]
    expected_bad_line_nos = [i + 1 for i, v in enumerate(verdicts) if v == "bad"]
    dead_letter = tmp_path / "dead.ndjson"

    result = run_cli(["harmony-alerts", "--all", "--no-dedupe", "--dead-letter", str(dead_letter)], data)

    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    stats = result.stats
    assert stats["bad_records"] == len(expected_bad_line_nos) > 1000
    assert stats["records_in"] == len(expected_good)
    got = [orjson.loads(line)["checkpoint_harmony"] for line in result.stdout_lines]
    assert got == expected_good  # every good line, in order, untouched
    dead = [orjson.loads(line) for line in dead_letter.read_bytes().splitlines()]
    assert [d["line_no"] for d in dead] == expected_bad_line_nos
    assert all(set(d) >= {"error", "line_no", "raw"} and d["error"] for d in dead)
    oversized = [d for d in dead if "longer than --max-line-bytes" in d["error"]]
    assert len(oversized) == 1 and len(oversized[0]["raw"]) <= 1024


def test_strict_stops_at_the_first_bad_record_with_exit_65() -> None:
    good = valid_lines(3)
    data = b"\n".join([good[0], b"not json", good[1], good[2]]) + b"\n"
    result = run_cli(["harmony-alerts", "--all", "--strict"], data)
    assert result.returncode == 65
    assert len(result.stdout_lines) == 1  # the record before the bad one was still written
    errors = error_lines(result.stderr)
    assert errors == [errors[0]] and "input line 2" in errors[0] and "--strict" in errors[0]
    assert result.stats["bad_records"] == 1


def test_usage_error_exits_2_with_one_readable_line() -> None:
    result = run_cli(["harmony-alerts", "--min-severity", "9"], b"")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--min-severity" in result.stderr


def test_stats_line_has_the_documented_fields() -> None:
    lines = valid_lines(50)
    result = run_cli(["harmony-alerts"], b"\n".join(lines + lines[:10]) + b"\n")
    stats = result.stats
    for field in ("records_in", "records_out", "bad_records", "bytes_in", "bytes_out", "elapsed_secs",
                  "rate_per_sec", "alerts", "duplicates", "filtered", "command"):  # fmt: skip
        assert field in stats
    assert stats["records_in"] == 60
    assert stats["duplicates"] == sum(
        1
        for line in lines[:10]
        if orjson.loads(line)["type"] in {"phishing", "malware", "alert", "dlp"}
        or int(orjson.loads(line)["severity"]) >= 4
    )
    assert stats["records_out"] == stats["alerts"] == len(result.stdout_lines)
    for line in result.stdout_lines:
        assert_valid("alert", orjson.loads(line))


def read_lines(stream, count: int, timeout_secs: float = 20) -> list[bytes]:
    """Read `count` lines from a child's stdout (each arrives once the child flushed it)."""
    lines: list[bytes] = []
    deadline = time.monotonic() + timeout_secs
    while len(lines) < count and time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        lines.append(line)
    return lines


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_stop_signal_makes_a_transform_read_on_to_the_end_of_input_and_exit_0(tmp_path, signame) -> None:
    """DESIGN 3.4: a transform keeps reading after the signal (the stage before it may still be
    writing what it checkpointed), processes everything, saves its state and exits 0."""
    proc = subprocess.Popen(
        [command_path("harmony-alerts"), "--all", "--state-dir", str(tmp_path / "state"), "--flush-idle-ms", "50"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines = valid_lines(30)
    proc.stdin.write(b"\n".join(lines[:20]) + b"\n")
    proc.stdin.flush()
    assert len(read_lines(proc.stdout, 20)) == 20  # it has read and flushed them: now it is idle
    proc.send_signal(getattr(signal, signame))
    proc.stdin.write(b"\n".join(lines[20:]) + b"\n")  # written after the signal: still read
    proc.stdin.flush()
    out, err = proc.communicate(timeout=20)  # closes stdin: the end of input
    assert proc.returncode == 0, err
    assert len(out.splitlines()) == 10
    assert signame.encode() in err and b"Traceback" not in err
    assert orjson.loads(err.splitlines()[-1])["stats"]["records_in"] == 30
    assert (tmp_path / "state" / "dedupe-keys.bin").stat().st_size == 8 + 30 * 12


def test_a_stop_signal_with_input_held_open_ends_after_the_shutdown_timeout_with_exit_75(tmp_path) -> None:
    proc = subprocess.Popen(
        [
            command_path("harmony-alerts"),
            "--all",
            "--state-dir",
            str(tmp_path / "state"),
            "--flush-idle-ms",
            "50",
            "--shutdown-timeout-secs",
            "0.5",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdin.write(b"\n".join(valid_lines(20)) + b"\n")
    proc.stdin.flush()
    assert len(read_lines(proc.stdout, 20)) == 20
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)  # stdin stays open (communicate() would close it): only the timeout ends it
    err = proc.stderr.read()
    proc.stdin.close()
    assert proc.returncode == 75, err
    assert time.monotonic() - started >= 0.5
    assert b"stopped reading after --shutdown-timeout-secs 0.5" in err
    assert err.count(b'{"stats"') == 1 and b"Traceback" not in err
    assert (tmp_path / "state" / "dedupe-keys.bin").stat().st_size == 8 + 20 * 12  # all it read is saved


def test_idle_input_is_flushed_without_waiting_for_eof() -> None:
    proc = subprocess.Popen(
        [command_path("harmony-alerts"), "--all", "--flush-idle-ms", "50"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    proc.stdin.write(valid_lines(1)[0] + b"\n")
    proc.stdin.flush()
    first = proc.stdout.readline()  # would block forever if output waited for a full buffer
    assert b"checkpoint_harmony" in first
    proc.stdin.close()
    proc.wait(timeout=10)
    assert proc.returncode == 0


def test_closed_stdout_ends_quietly_with_exit_75_and_saves_only_what_was_delivered(tmp_path) -> None:
    """`| head -1`: no traceback, one stats line, and exit 75 — the rest was not delivered (exit 0
    must mean done); keys are saved only for alerts the reader received, so a rerun delivers
    the rest."""
    big = tmp_path / "big.ndjson"
    big.write_bytes(b"\n".join(valid_lines(20_000)) + b"\n")
    state = tmp_path / "state"
    cmd = f"set -o pipefail; {command_path('harmony-alerts')} --all --state-dir {state} < {big} | head -1"
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=60)
    assert proc.returncode == 75, proc.stderr
    assert proc.stdout.count(b"\n") == 1
    assert b"Traceback" not in proc.stderr and b"BrokenPipe" not in proc.stderr
    assert proc.stderr.count(b'{"stats"') == 1
    assert b"stdout was closed by its reader" in proc.stderr
    saved = (state / "dedupe-keys.bin").stat().st_size - 8 if (state / "dedupe-keys.bin").exists() else 0
    assert saved // 12 < 20_000  # the undelivered alerts' keys were not saved
    rerun = run_cli(["harmony-alerts", "--all", "--state-dir", str(state)], big.read_bytes())
    assert rerun.returncode == 0
    assert len(rerun.stdout_lines) == 20_000 - saved // 12


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_format(fmt) -> None:
    result = run_cli(["harmony-alerts", "--log-format", fmt], valid_lines(1)[0] + b"\n")
    info = [line for line in result.stderr.splitlines() if "memory only" in line]
    assert len(info) == 1
    if fmt == "json":
        assert orjson.loads(info[0])["level"] == "info"
    else:
        assert [line["msg"] for line in log_lines(result.stderr, "info")] == [info[0].split(": info: ", 1)[1]]
        assert info[0].split(" ", 1)[1].startswith("harmony-alerts: info:")


def test_shared_state_root_gives_each_command_of_a_pipe_its_own_dir(tmp_path) -> None:
    """With HARMONY_PIPES_STATE_DIR exported, `harmony-alerts | s3-batch` must not fight over one
    locked directory: each command keeps its state in its own subfolder of the root."""
    root = tmp_path / "state"
    env = {**os.environ, "HARMONY_PIPES_STATE_DIR": str(root)}
    env.pop("HARMONY_ALERTS_STATE_DIR", None)
    env.pop("S3_BATCH_STATE_DIR", None)
    store = tmp_path / "store"
    lines = valid_lines(50)
    pipe = (
        f"{command_path('harmony-alerts')} --all | "
        f"{command_path('s3-batch')} --dest file://{store}/ --compression none > {tmp_path / 'receipts'}"
    )
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipe], input=b"\n".join(lines) + b"\n", env=env, capture_output=True
    )
    assert result.returncode == 0, result.stderr.decode()
    assert (root / "alerts" / "dedupe-keys.bin").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["alerts", "s3-batch"]
    stored = [orjson.loads(line) for p in store.rglob("*.ndjson") for line in p.read_bytes().splitlines()]
    assert len(stored) == 50
    # An explicit --state-dir (or the command's own env var) is used as given.
    own = tmp_path / "own"
    again = run_cli(["harmony-alerts", "--all"], b"\n".join(lines), env={"HARMONY_ALERTS_STATE_DIR": str(own)})
    assert again.returncode == 0, again.stderr
    assert (own / "dedupe-keys.bin").is_file()


def test_progress_lines_every_interval_and_one_final_stats_line() -> None:
    proc = subprocess.Popen(
        [command_path("harmony-alerts"), "--all", "--stats-interval-secs", "0.2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines = valid_lines(30)
    for part in (lines[:10], lines[10:20], lines[20:]):
        proc.stdin.write(b"\n".join(part) + b"\n")
        proc.stdin.flush()
        time.sleep(0.5)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    docs = [orjson.loads(line) for line in err.splitlines() if line.startswith(b"{")]
    progress = [d["progress"] for d in docs if "progress" in d]
    finals = [d["stats"] for d in docs if "stats" in d]
    assert len(progress) >= 2 and len(finals) == 1
    counts = [p["records_in"] for p in progress]
    assert counts == sorted(counts) and counts[-1] <= 30
    assert finals[0]["records_in"] == 30 == len(out.splitlines())


def test_live_status_line_on_a_terminal() -> None:
    """stderr on a terminal shows a self-overwriting status line, cleared before the stats line."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [command_path("harmony-alerts"), "--all"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    proc.stdin.write(b"\n".join(valid_lines(12)) + b"\n")
    proc.stdin.flush()
    time.sleep(1.6)  # the status line is refreshed once a second
    proc.stdin.close()
    out = proc.stdout.read()
    assert proc.wait(timeout=20) == 0
    screen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    assert len(out.splitlines()) == 12
    assert b"\rharmony-alerts: 12 in, 12 out, 0 bad, " in screen
    status_at = screen.index(b"\rharmony-alerts: 12 in")
    assert screen.index(b"\r\x1b[K", status_at) < screen.index(b'{"stats"')


def _catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for `signum` (SigCgt in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def _mapped(pid: int, library: str) -> bool:
    with open(f"/proc/{pid}/maps") as maps:
        return library in maps.read()


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
@pytest.mark.parametrize(("command", "args", "late_library"), [
    ("s3-batch", ["--dest", "file://{tmp}/store/", "--spool-dir", "{tmp}/spool"], "zlib_ng"),
    ("harmony-alerts", ["--all", "--state-dir", "{tmp}/state"], "orjson"),
])  # fmt: skip
def test_a_stop_signal_while_the_command_is_still_starting_is_a_graceful_stop(
    tmp_path, command: str, args: list[str], late_library: str
) -> None:
    """A pipe stopped at once signals every stage, and one may still be importing its modules
    (0.1-0.2 s, longer on a loaded machine): it must drain and commit its input like any stopped
    transform or sink, not die (it died: exit -15, no stats line, its input lost)."""
    argv = [command_path(command), *(arg.replace("{tmp}", str(tmp_path)) for arg in args)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not _catches(proc.pid, signal.SIGTERM):  # the first moment it can take the signal
        assert proc.poll() is None and time.monotonic() < deadline, "it never caught SIGTERM"
        time.sleep(0.0005)
    # the signal lands before the command's own modules are loaded (before the fix, SIGTERM was
    # caught only once the runner was up, long after every import)
    assert not _mapped(proc.pid, late_library)
    proc.send_signal(signal.SIGTERM)
    lines = valid_lines(40)
    out, err = proc.communicate(b"\n".join(lines) + b"\n", timeout=30)
    assert proc.returncode == 0, err
    assert b"SIGTERM" in err and b"Traceback" not in err
    assert orjson.loads(err.splitlines()[-1])["stats"]["records_in"] == 40
    if command == "s3-batch":
        stored = all_records(read_file_store(tmp_path / "store"))
        assert sorted(orjson.dumps(r) for r in stored) == sorted(orjson.dumps(orjson.loads(x)) for x in lines)
    else:
        assert len(out.splitlines()) == 40
