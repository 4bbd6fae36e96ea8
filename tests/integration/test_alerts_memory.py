"""The issue's memory target on the real process: 1,000,000 dedupe keys cost <= 100 MB of RSS.

Each run is measured by a fresh Python wrapper that starts `harmony-alerts`, feeds it, counts its
output lines, and reports `ru_maxrss` of its children (the command alone: the wrapper's own
memory is not in RUSAGE_CHILDREN, and a fresh wrapper has no other children).
"""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from tests.conftest import command_path

pytestmark = pytest.mark.slow

KEYS = 1_000_000
RSS_LIMIT_BYTES = 100 * 1024 * 1024

WRAPPER = r"""
import json, resource, subprocess, sys, threading
argv, input_path, copies = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
def feed():
    with open(input_path, "rb") as source:
        data = source.read()
    for _ in range(copies):
        for start in range(0, len(data), 1 << 20):
            proc.stdin.write(data[start:start + (1 << 20)])
    proc.stdin.close()
feeder = threading.Thread(target=feed)
feeder.start()
stderr = []
reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()))
reader.start()
lines = 0
while chunk := proc.stdout.read1(1 << 20):
    lines += chunk.count(b"\n")
feeder.join(); reader.join()
code = proc.wait()
print(json.dumps({
    "returncode": code,
    "lines_out": lines,
    "maxrss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    "stderr": stderr[0].decode("utf-8", "replace"),
}))
"""


@pytest.fixture(scope="module")
def million_events(tmp_path_factory):
    """1,000,000 unique minimal events (an id, a tenant, an alert type), ~60 MB."""
    path = tmp_path_factory.mktemp("million") / "events.ndjson"
    with path.open("wb") as out:
        for start in range(0, KEYS, 100_000):
            out.write(
                b"".join(
                    b'{"eventId":"%032x","customerId":"exampletest","type":"phishing"}\n' % i
                    for i in range(start, start + 100_000)
                )
            )
    return path


def measured_run(args: list[str], input_path, copies: int = 1) -> dict:
    argv = [command_path("harmony-alerts"), *args]
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, orjson.dumps(argv).decode(), str(input_path), str(copies)],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    report = orjson.loads(done.stdout)
    assert report["returncode"] == 0, report["stderr"]
    stats_line = next(line for line in report["stderr"].splitlines() if line.startswith('{"stats"'))
    report["stats"] = orjson.loads(stats_line)["stats"]
    mib = report["maxrss_bytes"] / 2**20
    print(f"harmony-alerts {' '.join(args)} x{copies}: peak RSS {mib:.1f} MiB, {report['lines_out']} out")
    return report


def test_a_million_keys_in_memory_fit_in_100_mb_and_a_replay_is_all_duplicates(million_events) -> None:
    # the input twice in one stream: the second copy is the replay, with all 1,000,000 keys held
    report = measured_run([], million_events, copies=2)
    stats = report["stats"]
    assert report["lines_out"] == KEYS
    assert stats["alerts"] == KEYS and stats["duplicates"] == KEYS and stats["dedupe_keys"] == KEYS
    assert report["maxrss_bytes"] <= RSS_LIMIT_BYTES, f"peak RSS {report['maxrss_bytes'] / 2**20:.1f} MiB"


def test_a_million_keys_with_a_state_dir_fit_in_100_mb_and_a_replay_emits_nothing(million_events, tmp_path) -> None:
    state = ["--state-dir", str(tmp_path / "state")]
    first = measured_run(state, million_events)
    assert first["lines_out"] == KEYS and first["stats"]["alerts"] == KEYS
    assert first["maxrss_bytes"] <= RSS_LIMIT_BYTES, f"peak RSS {first['maxrss_bytes'] / 2**20:.1f} MiB"
    assert (tmp_path / "state" / "dedupe-keys.bin").stat().st_size == 8 + 12 * KEYS
    replay = measured_run(state, million_events)
    stats = replay["stats"]
    assert replay["lines_out"] == 0
    assert stats["dedupe_keys_loaded"] == KEYS and stats["duplicates"] == KEYS and stats["alerts"] == 0
    assert replay["maxrss_bytes"] <= RSS_LIMIT_BYTES, f"peak RSS {replay['maxrss_bytes'] / 2**20:.1f} MiB"
