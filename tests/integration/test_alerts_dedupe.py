"""Dedupe across restarts and kill -9 with --state-dir: a replay emits nothing new."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import orjson

from tests.conftest import command_path, run_cli
from tests.helpers.wait import wait_until
from tests.integration.test_stream_contract import valid_lines


def event_ids(stdout: bytes) -> list[str]:
    return [orjson.loads(line)["event_id"] for line in stdout.splitlines() if line]


def test_replay_after_restart_emits_nothing_new(tmp_path) -> None:
    lines = valid_lines(400, seed=7)
    data = b"\n".join(lines) + b"\n"
    state = ["--all", "--state-dir", str(tmp_path / "state")]
    first = run_cli(["harmony-alerts", *state], data)
    assert first.returncode == 0 and len(first.stdout_lines) == 400
    replay = run_cli(["harmony-alerts", *state], data)
    assert replay.returncode == 0
    assert replay.stdout == b""
    assert replay.stats["duplicates"] == 400
    assert replay.stats["dedupe_keys_loaded"] == 400
    more = valid_lines(450, seed=7)[400:]  # same seed: the first 400 are the same events
    mixed = run_cli(["harmony-alerts", *state], data + b"\n".join(more) + b"\n")
    assert event_ids(mixed.stdout) == [orjson.loads(line)["eventId"] for line in more]


def test_without_state_dir_a_restart_forgets(tmp_path) -> None:
    data = b"\n".join(valid_lines(10)) + b"\n"
    assert len(run_cli(["harmony-alerts", "--all"], data).stdout_lines) == 10
    assert len(run_cli(["harmony-alerts", "--all"], data).stdout_lines) == 10


def test_kill_9_then_replay_loses_nothing_and_repeats_nothing_flushed(tmp_path) -> None:
    lines = valid_lines(600, seed=11)
    state_dir = tmp_path / "state"
    proc = subprocess.Popen(
        [command_path("harmony-alerts"), "--all", "--state-dir", str(state_dir), "--flush-idle-ms", "50"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    proc.stdin.write(b"\n".join(lines[:250]) + b"\n")
    proc.stdin.flush()
    before = []
    deadline = time.monotonic() + 20
    while len(before) < 250 and time.monotonic() < deadline:
        before.append(proc.stdout.readline())
    # the keys of what was flushed are saved right after the flush: wait for them, then kill
    key_log = state_dir / "dedupe-keys.bin"
    wait_until(lambda: key_log.exists() and key_log.stat().st_size == 8 + 250 * 12, what="250 keys saved")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(before) == 250  # everything fed was flushed while idle, before the kill
    after = run_cli(["harmony-alerts", "--all", "--state-dir", str(state_dir)], b"\n".join(lines) + b"\n")
    assert after.returncode == 0
    first_ids = event_ids(b"".join(before))
    second_ids = event_ids(after.stdout)
    assert not set(first_ids) & set(second_ids)  # nothing flushed before the kill comes out again
    assert first_ids + second_ids == [orjson.loads(line)["eventId"] for line in lines]  # nothing lost


def test_dedupe_max_keys_bounds_memory_by_forgetting_the_oldest(tmp_path) -> None:
    lines = valid_lines(30, seed=3)
    data = b"\n".join(lines + lines[:5] + lines[-5:]) + b"\n"
    result = run_cli(["harmony-alerts", "--all", "--dedupe-max-keys", "10"], data)
    # the first five were evicted by the time they came back; the last five were still known
    assert result.stats["duplicates"] == 5
    assert len(result.stdout_lines) == 35


def test_two_instances_cannot_share_a_state_dir(tmp_path) -> None:
    state_dir = tmp_path / "state"
    proc = subprocess.Popen(
        [command_path("harmony-alerts"), "--state-dir", str(state_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not (state_dir / ".lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        second = run_cli(["harmony-alerts", "--state-dir", str(state_dir)], b"")
        assert second.returncode == 2
        assert "in use by another running instance" in second.stderr
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def test_dedupe_key_option_keeps_two_detections_of_one_email(tmp_path) -> None:
    """A spam and a suspicious_phishing event share an eventId: the default key (tenant, eventId)
    keeps the first; `--dedupe-key tenant,eventId,type,eventCreated` keeps both, and still drops an
    identical copy."""
    spam = {"eventId": "4134ab", "customerId": "c", "type": "spam", "severity": "4", "entityId": "4134ab",
            "eventCreated": "2025-09-04T00:01:57.002329+00:00"}  # fmt: skip
    microsoft = dict(spam, type="suspicious_phishing", eventCreated="2025-08-30T15:55:30.899631+00:00")
    data = b"".join(orjson.dumps(e) + b"\n" for e in (spam, microsoft, spam))
    default = run_cli(["harmony-alerts", "--all"], data)
    assert default.returncode == 0 and len(default.stdout_lines) == 1 and default.stats["duplicates"] == 2
    wider = run_cli(["harmony-alerts", "--all", "--dedupe-key", "tenant,eventId,type,eventCreated"], data)
    assert wider.returncode == 0, wider.stderr
    assert [orjson.loads(line)["event_type"] for line in wider.stdout_lines] == ["spam", "suspicious_phishing"]
    assert wider.stats["duplicates"] == 1
    bad = run_cli(["harmony-alerts", "--dedupe-key", "tenant,eventid"], data)
    assert bad.returncode == 2 and "eventid" in bad.stderr and bad.stdout == b""
