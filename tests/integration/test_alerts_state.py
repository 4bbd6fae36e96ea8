"""harmony-alerts state on real processes: --dedupe-ttl-secs through the command, kill -9 while
input is still flowing, and exit 1 when the key log cannot be written."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import threading
import time

import orjson

from harmony_pipes._core.output import DEFAULT_MAX_BUFFER_BYTES
from harmony_pipes.harmony_alerts.dedupe import ENTRY, LOG_MAGIC
from tests.conftest import command_path, run_cli
from tests.helpers.logs import error_lines
from tests.integration.test_stream_contract import valid_lines


def event_ids(stdout: bytes) -> list[str]:
    return [orjson.loads(line)["event_id"] for line in stdout.splitlines() if line]


def wait_until_second(target: int) -> None:
    """Sleep until the wall clock's whole second is >= target (key ages are whole seconds)."""
    while int(time.time()) < target:
        time.sleep(0.05)


# --- --dedupe-ttl-secs --------------------------------------------------------------------


def test_ttl_across_restarts_a_replay_after_the_ttl_emits_again(tmp_path) -> None:
    lines = valid_lines(60, seed=21)
    data = b"\n".join(lines) + b"\n"
    ids = [orjson.loads(line)["eventId"] for line in lines]
    state = ["--all", "--state-dir", str(tmp_path / "state")]
    first = run_cli(["harmony-alerts", *state, "--dedupe-ttl-secs", "60"], data)
    assert first.returncode == 0 and event_ids(first.stdout) == ids
    seen_by = int(time.time())  # every key's seen_at is <= this second
    before = run_cli(["harmony-alerts", *state, "--dedupe-ttl-secs", "60"], data)
    assert before.stdout == b"" and before.stats["duplicates"] == 60
    # a key seen at second S is older than 1 s from second S + 2 on
    wait_until_second(seen_by + 2)
    still_known = run_cli(["harmony-alerts", *state, "--dedupe-ttl-secs", "60"], data)
    assert still_known.stdout == b"" and still_known.stats["duplicates"] == 60  # time alone forgets nothing
    after = run_cli(["harmony-alerts", *state, "--dedupe-ttl-secs", "1"], data)
    assert after.returncode == 0, after.stderr
    assert event_ids(after.stdout) == ids  # every key had expired: each event is an alert again
    assert after.stats["duplicates"] == 0 and after.stats["dedupe_keys_loaded"] == 60
    again = run_cli(["harmony-alerts", *state, "--dedupe-ttl-secs", "60"], data)
    assert again.stdout == b"" and again.stats["duplicates"] == 60  # the re-emitted keys were saved


def test_ttl_within_one_run_a_repeat_after_the_ttl_is_an_alert_again() -> None:
    lines = valid_lines(40, seed=22)
    data = b"\n".join(lines) + b"\n"
    ids = [orjson.loads(line)["eventId"] for line in lines]
    proc = subprocess.Popen(
        [command_path("harmony-alerts"), "--all", "--dedupe-ttl-secs", "1", "--flush-idle-ms", "50"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdin.write(data + data)  # the second copy, inside the TTL: duplicates
    proc.stdin.flush()
    first = [proc.stdout.readline() for _ in range(40)]
    seen_by = int(time.time())
    wait_until_second(seen_by + 2)
    time.sleep(0.2)  # the command reads the clock on each idle tick (every --flush-idle-ms), not per record
    proc.stdin.write(data)  # the same events after the TTL
    proc.stdin.close()
    rest = proc.stdout.read()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 0, stderr
    assert event_ids(b"".join(first)) == ids
    assert event_ids(rest) == ids
    stats = orjson.loads(next(line for line in stderr.splitlines() if line.startswith('{"stats"')))["stats"]
    assert stats["duplicates"] == 40 and stats["alerts"] == 80


# --- kill -9 while busy ---------------------------------------------------------------------


class Feeder(threading.Thread):
    """Writes the input in slices, as a shipper would, until done or the pipe breaks."""

    def __init__(self, stdin, data: bytes, slice_bytes: int = 64 * 1024) -> None:
        super().__init__(daemon=True)
        self.stdin, self.data, self.slice_bytes = stdin, data, slice_bytes
        self.done = threading.Event()
        self.written = 0

    def run(self) -> None:
        try:
            for start in range(0, len(self.data), self.slice_bytes):
                self.stdin.write(self.data[start : start + self.slice_bytes])
                self.stdin.flush()
                self.written = start + self.slice_bytes
            self.stdin.close()
            self.done.set()
        except (BrokenPipeError, ValueError, OSError):
            pass


def run_and_kill(state_dir, data: bytes, kill_after_bytes: int) -> tuple[bytes, bool, int]:
    """Run with --state-dir on `data`, SIGKILL once `kill_after_bytes` of output arrived.

    Returns (complete output lines, whether input was still flowing at the kill, bytes fed)."""
    proc = subprocess.Popen(
        [command_path("harmony-alerts"), "--all", "--state-dir", str(state_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    feeder = Feeder(proc.stdin, data)
    feeder.start()
    out = bytearray()
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + 60
    while len(out) < kill_after_bytes and time.monotonic() < deadline:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        out += chunk
    busy = not feeder.done.is_set() and proc.poll() is None
    fed = feeder.written
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    while chunk := os.read(fd, 1 << 16):  # whatever was already in the pipe
        out += chunk
    proc.stdout.close()
    feeder.join(timeout=10)
    complete = bytes(out[: out.rfind(b"\n") + 1])  # a line torn by the kill is not an alert
    return complete, busy, fed


def test_kill_9_while_busy_then_replays_lose_nothing_and_repeat_at_most_one_batch(tmp_path) -> None:
    """Three kill -9s mid-stream (input still flowing), each followed by a replay of the whole
    input, then a run to the end: every alert comes out, and each crash repeats at most the last
    output batch (BatchWriter flushes at DEFAULT_MAX_BUFFER_BYTES, the README's promise)."""
    lines = valid_lines(8_000, seed=31)
    data = b"\n".join(lines) + b"\n"
    ids = [orjson.loads(line)["eventId"] for line in lines]
    assert len(set(ids)) == len(ids)
    state_dir = tmp_path / "state"
    runs: list[list[bytes]] = []
    for kill_after in (1_500_000, 1_800_000, 2_100_000):
        out, busy, fed = run_and_kill(state_dir, data, kill_after)
        assert busy, "the kill must land while input is still being fed"
        assert fed < len(data)
        runs.append(out.splitlines())
    final = run_cli(["harmony-alerts", "--all", "--state-dir", str(state_dir)], data)
    assert final.returncode == 0, final.stderr
    runs.append(final.stdout_lines)

    emitted = [event_ids(b"\n".join(run)) for run in runs]
    assert set().union(*map(set, emitted)) == set(ids)  # nothing lost
    for index, run_ids in enumerate(emitted):
        assert len(set(run_ids)) == len(run_ids)  # no duplicates within one run
        order = [i for i in ids if i in set(run_ids)]
        assert run_ids == order  # input order kept
        if index == 0:
            continue
        earlier = set().union(*map(set, emitted[:index]))
        repeated = [i for i in run_ids if i in earlier]
        # only the previous run's last batch can come again: its tail, at most one batch of bytes
        previous = runs[index - 1]
        tail = previous[len(previous) - len(repeated) :] if repeated else []
        assert repeated == event_ids(b"\n".join(tail)), "repeats must be the killed run's last lines"
        max_line = max(len(line) for line in previous)
        assert sum(len(line) + 1 for line in tail) <= DEFAULT_MAX_BUFFER_BYTES + max_line
    key_log = (state_dir / "dedupe-keys.bin").read_bytes()
    assert key_log.startswith(LOG_MAGIC) and (len(key_log) - len(LOG_MAGIC)) % ENTRY.size == 0
    replay = run_cli(["harmony-alerts", "--all", "--state-dir", str(state_dir)], data)
    assert replay.stdout == b"" and replay.stats["duplicates"] == len(ids)


# --- exit 1 ----------------------------------------------------------------------------------


def limit_file_size(limit_bytes: int):
    def apply() -> None:  # in the child, before exec; CPython ignores SIGXFSZ, so writes get EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, resource.RLIM_INFINITY))

    return apply


def test_key_log_that_cannot_grow_exits_1_with_one_line_and_a_restart_recovers(tmp_path) -> None:
    """A full disk, as near as a test can get without root mounts: RLIMIT_FSIZE stops the key log
    partway through an append (a short write, then EFBIG). Chmod would not do: tests run as root."""
    state_dir = tmp_path / "state"
    lines = valid_lines(300, seed=41)
    data = b"\n".join(lines) + b"\n"
    ids = [orjson.loads(line)["eventId"] for line in lines]
    limit = len(LOG_MAGIC) + 10 * ENTRY.size + 5  # room for ten keys and part of an eleventh
    proc = subprocess.run(
        [command_path("harmony-alerts"), "--all", "--state-dir", str(state_dir)],
        input=data,
        capture_output=True,
        preexec_fn=limit_file_size(limit),
        timeout=60,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    errors = error_lines(stderr)
    assert errors == [f"cannot write {state_dir / 'dedupe-keys.bin'}: File too large — check the state directory"]
    assert "Traceback" not in stderr and "internal error" not in stderr
    first_ids = event_ids(proc.stdout)
    assert first_ids == ids[: len(first_ids)] and first_ids  # what was written is in order
    assert (state_dir / "dedupe-keys.bin").stat().st_size == limit  # torn mid-entry
    # the disk has room again: the torn entry is dropped, the ten saved keys are duplicates, and
    # the alerts whose keys were not saved come out again (never lost)
    again = run_cli(["harmony-alerts", "--all", "--state-dir", str(state_dir)], data)
    assert again.returncode == 0, again.stderr
    assert again.stats["dedupe_keys_loaded"] == 10
    assert event_ids(again.stdout) == ids[10:]
    replay = run_cli(["harmony-alerts", "--all", "--state-dir", str(state_dir)], data)
    assert replay.stdout == b"" and replay.stats["duplicates"] == 300
