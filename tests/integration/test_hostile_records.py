"""Issue 11: record content can never crash or block a processor (real processes, file:// store).

Case 1: a time field no key can hold (1e308, "Infinity", year 10000 after the offset ...) makes
s3-batch use the record's arrival time (documented in docs/s3-batch.md) and harmony-alerts write
`timestamp: null` (docs/harmony-alerts.md); every record around it is stored / emitted once, also
after a kill -9 and a restart on the same spool (recovery re-reads the record times).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tests.conftest import run_cli
from tests.helpers.s3 import KillAt, all_records, kill_trial, make_records, read_file_store
from tests.integration.test_stream_contract import valid_lines

# JSON texts of time values nobody can store in a key (orjson refuses bare NaN / Infinity / 1e400
# as invalid JSON: those lines are bad records already, so they come as strings here)
POISON_JSON = [
    b"1e308",
    b"1e25",
    b"-1e306",
    b'"Infinity"',
    b'"-Infinity"',
    b'"NaN"',
    b'"1e400"',
    b"99999999999999999999999",
    b"-99999999999999999999999",
    b'"9999-12-31T23:59:59-14:00"',
    b'"0001-01-01T00:00:00+14:00"',
]
TIME_FIELDS = ("timestamp", "eventCreated", "auditEventTime")
GOOD_BEFORE = 1000
GOOD_AFTER = 1000


def poison_stream() -> tuple[bytes, int]:
    """1,000 good records, every poison value in every time field, 1,000 good records."""
    poison = []
    n = GOOD_BEFORE
    for field in TIME_FIELDS:
        for value in POISON_JSON:
            poison.append(b'{"i":%d,"%s":%s,"tenantid":"t0"}\n' % (n, field.encode(), value))
            n += 1
    after = make_records(GOOD_AFTER, start=n)
    return make_records(GOOD_BEFORE) + b"".join(poison) + after, n + GOOD_AFTER


def utc_today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def check_store(root: Path, total: int, days: set[str]) -> None:
    objects = read_file_store(root)
    numbers = sorted(r["i"] for r in all_records(objects))
    assert numbers == list(range(total)), f"{len(numbers)} stored of {total}"
    poison_keys = {key for key, body in objects.items() if "dt=2024-05-01/" not in key}
    # the poison records are filed under their arrival day, the good ones under their own
    assert poison_keys and all(key.split("/")[0].removeprefix("dt=") in days for key in poison_keys)


def test_s3_batch_poison_times_fall_back_to_arrival_time(tmp_path: Path) -> None:
    data, total = poison_stream()
    day_before = utc_today()
    result = run_cli(["s3-batch", "--dest", f"file://{tmp_path}/store/", "--spool-dir", str(tmp_path / "s")], data)
    assert result.returncode == 0, result.stderr
    assert "internal error" not in result.stderr
    check_store(tmp_path / "store", total, {day_before, utc_today()})
    receipts = [orjson.loads(line) for line in result.stdout_lines]
    assert sum(r["records"] for r in receipts) == total
    assert result.stats["records_accepted"] == total and result.stats["bad_records"] == 0


def test_s3_batch_poison_times_survive_kill_and_restart(tmp_path: Path) -> None:
    """Recovery of the open bodies re-reads every record's time: the poison must not stop it."""
    data, total = poison_stream()
    spool = str(tmp_path / "s")
    args = [
        "--dest",
        f"file://{tmp_path}/store/",
        "--spool-dir",
        spool,
        "--max-age-secs",
        "600",
        "--fsync-interval-ms",
        "20",
        "--stats-interval-secs",
        "0.02",
        "--flush-idle-ms",
        "20",
    ]
    day_before = utc_today()
    killed = kill_trial(args, data, kill_at=KillAt("records_accepted", total))
    assert killed.accepted == total and not killed.receipts  # all open, nothing sealed yet
    restart = run_cli(["s3-batch", *args], b"")
    assert restart.returncode == 0, restart.stderr
    assert "sealed now from" in restart.stderr
    check_store(tmp_path / "store", total, {day_before, utc_today()})


ALERT_POISON_JSON = [
    b"-1e306",
    b"1e308",
    b"1e25",
    b"-1e25",
    b"99999999999999999999999",
    b"-99999999999999999999999",
    b'"Infinity"',
    b'"1e400"',
    b'"9999-12-31T23:59:59-14:00"',
    b'"0001-01-01T00:00:00+14:00"',
]


@pytest.mark.parametrize("output_format", ["native", "ecs", "ocsf"])
def test_harmony_alerts_poison_event_created_gives_a_null_time(tmp_path: Path, output_format: str) -> None:
    before = valid_lines(GOOD_BEFORE, seed=5)
    after = valid_lines(GOOD_AFTER, seed=6)
    poison = []
    for k, value in enumerate(ALERT_POISON_JSON):
        event = orjson.loads(before[0])
        event["eventId"] = f"poison-{k}"
        poison.append(orjson.dumps(event).replace(b'"eventCreated":"', b'"eventCreated":' + value + b',"was":"'))
    lines = [*before, *poison, *after]
    ids = [orjson.loads(line)["eventId"] for line in lines]
    args = ["harmony-alerts", "--all", "--format", output_format, "--state-dir", str(tmp_path / "state")]
    result = run_cli(args, b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.stderr
    alerts = [orjson.loads(line) for line in result.stdout_lines]
    if output_format == "native":
        got_ids = [a["event_id"] for a in alerts]
        times = {a["event_id"]: a["timestamp"] for a in alerts}
    elif output_format == "ecs":
        got_ids = [a["event"]["id"] for a in alerts]
        times = {a["event"]["id"]: a["@timestamp"] for a in alerts}
    else:
        got_ids = [a["metadata"]["uid"] for a in alerts]
        times = {a["metadata"]["uid"]: a["time"] for a in alerts}
    assert got_ids == ids
    assert all(times[f"poison-{k}"] is None for k in range(len(ALERT_POISON_JSON)))
    assert times[ids[0]] is not None
    # after a restart on the same state every key is known: nothing is emitted twice
    again = run_cli(args, b"\n".join(lines) + b"\n")
    assert again.returncode == 0, again.stderr
    assert again.stdout_lines == [] and again.stats["duplicates"] == len(ids)
