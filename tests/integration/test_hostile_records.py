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
from tests.helpers.logs import error_lines
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
        # @timestamp falls back to the time of processing (a data stream refuses a document
        # without one); event.created, the event's own time, is null
        got_ids = [a["event"]["id"] for a in alerts]
        times = {a["event"]["id"]: a["event"].get("created") for a in alerts}
        assert all(a["@timestamp"] for a in alerts)
    else:
        # OCSF requires `time`: the time of processing; the finding's created_time stays unset
        got_ids = [a["metadata"]["uid"] for a in alerts]
        times = {a["metadata"]["uid"]: a["finding_info"].get("created_time") for a in alerts}
        assert all(isinstance(a["time"], int) for a in alerts)
    assert got_ids == ids
    assert all(times[f"poison-{k}"] is None for k in range(len(ALERT_POISON_JSON)))
    assert times[ids[0]] is not None
    # after a restart on the same state every key is known: nothing is emitted twice
    again = run_cli(args, b"\n".join(lines) + b"\n")
    assert again.returncode == 0, again.stderr
    assert again.stdout_lines == [] and again.stats["duplicates"] == len(ids)


# --- case 2: key templates, record values in keys, objects that can never be written ---------


@pytest.mark.parametrize(
    ("template", "dest", "why"),
    [
        ("../escape/{hash}{ext}", "file", "'..'"),
        ("../escape/{hash}{ext}", "s3", "'..'"),
        ("{prefix}", "file", "no {hash}"),
        ("{prefix}", "s3", "no {hash}"),
        ("{prefix}{t3}{ext}", "file", "no {hash}"),
        ("{prefix}.s3-batch-tmp/{hash}{ext}", "file", "starts with '.'"),
        ("/abs/{hash}{ext}", "file", "must not start with '/'"),
        ("{prefix}a//{hash}{ext}", "s3", "empty path segment"),
        ("{prefix}{field:a}{field:b}/{hash}{ext}", "file", "longer than a file name"),
    ],
)
def test_key_templates_that_can_never_work_are_refused_at_start(
    tmp_path: Path, template: str, dest: str, why: str
) -> None:
    url = f"file://{tmp_path}/store/" if dest == "file" else "s3://never-contacted-bucket/p/"
    spool = tmp_path / "spool"
    result = run_cli(["s3-batch", "--dest", url, "--key-template", template, "--spool-dir", str(spool)], b'{"a":1}\n')
    assert result.returncode == 2, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and errors[0].startswith("--key-template") and why in errors[0], result.stderr
    others = [line for line in result.stderr.splitlines() if not line.startswith('{"stats"') and " error: " not in line]
    assert others == [] and result.stdout == b""
    assert not spool.exists() and not (tmp_path / "store").exists()


def test_a_destination_prefix_with_dot_dot_is_refused_at_start(tmp_path: Path) -> None:
    result = run_cli(["s3-batch", "--dest", "s3://b/../up/", "--spool-dir", str(tmp_path / "s")], b"")
    assert result.returncode == 2 and "'..'" in result.stderr and "Traceback" not in result.stderr


def test_a_field_value_never_reaches_the_scratch_folder_or_leaves_the_store(tmp_path: Path) -> None:
    """`{field:t}` = ".s3-batch-tmp" used to land in the scratch folder the next start empties."""
    values = ["a", ".s3-batch-tmp", "..", ".", ".hidden", "../../etc", "b"]
    data = b"".join(orjson.dumps({"i": i, "t": values[i % len(values)]}) + b"\n" for i in range(12))
    args = ["s3-batch", "--dest", f"file://{tmp_path}/store/", "--key-template", "{prefix}{field:t}/{hash}{ext}"]
    first = run_cli([*args, "--spool-dir", str(tmp_path / "s")], data)
    assert first.returncode == 0, first.stderr
    again = run_cli([*args, "--spool-dir", str(tmp_path / "s")], b"")  # a start empties .s3-batch-tmp
    assert again.returncode == 0, again.stderr
    objects = read_file_store(tmp_path / "store")
    assert sorted(r["i"] for r in all_records(objects)) == list(range(12))
    assert not any(part.startswith(".") for key in objects for part in key.split("/"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s", "store"]  # nothing written beside the store


def spool_one_paused_object(tmp_path: Path, dest: str, count: int = 7, env: dict | None = None) -> tuple[Path, Path]:
    """A spool holding one sealed object not yet delivered (its destination paused)."""
    spool = tmp_path / "spool"
    spool.mkdir()
    assert run_cli(["s3-batch", "pause", "--spool-dir", str(spool)]).returncode == 0
    data = b"".join(orjson.dumps({"i": i, "old": True}) + b"\n" for i in range(count))
    first = run_cli(["s3-batch", "--dest", dest, "--spool-dir", str(spool), "--no-startup-check"], data, env=env)
    assert first.returncode == 0, first.stderr
    assert run_cli(["s3-batch", "resume", "--spool-dir", str(spool)]).returncode == 0
    (manifest,) = (spool / "objects").glob("*.json")
    return spool, manifest


def status_of(spool: Path) -> dict:
    result = run_cli(["s3-batch", "status", "--spool-dir", str(spool)])
    assert result.returncode == 0, result.stderr
    (row,) = [orjson.loads(line) for line in result.stdout_lines]
    return row


def test_an_object_whose_key_can_never_be_written_is_set_aside_and_new_data_flows(tmp_path: Path) -> None:
    """A key frozen into a manifest (an older version accepted '../escape/{hash}{ext}') must not
    block the queue: the object is kept in quarantine/, reported, counted; new records flow."""
    store = f"file://{tmp_path}/store/"
    spool, manifest_path = spool_one_paused_object(tmp_path, store)
    manifest = orjson.loads(manifest_path.read_bytes())
    manifest["keys"]["file"] = "../escape/" + manifest["keys"]["file"].rsplit("/", 1)[1]
    manifest_path.write_bytes(orjson.dumps(manifest))
    new = b"".join(orjson.dumps({"i": 100 + i}) + b"\n" for i in range(5))
    result = run_cli(["s3-batch", "--dest", store, "--spool-dir", str(spool)], new)
    assert result.returncode == 0, result.stderr
    assert "set aside" in result.stderr and "fix --key-template" in result.stderr
    assert result.stats["objects_quarantined"] == 1
    assert sorted(r["i"] for r in all_records(read_file_store(tmp_path / "store"))) == list(range(100, 105))
    assert not (tmp_path / "escape").exists()
    row = status_of(spool)
    assert (row["backlog_objects"], row["quarantined_objects"], row["damaged_objects"]) == (0, 1, 0)
    seq = manifest["seq"]
    kept = spool / "quarantine" / f"{seq}.body"
    assert [r["i"] for r in all_records({manifest["keys"]["file"]: kept.read_bytes()})] == list(range(7))
    why = orjson.loads((spool / "quarantine" / f"{seq}.dest-file.json").read_bytes())
    assert why["key"].startswith("../escape/") and "'..'" in why["reason"]


def test_a_damaged_manifest_is_reported_and_its_object_set_aside(tmp_path: Path) -> None:
    store = f"file://{tmp_path}/store/"
    spool, manifest_path = spool_one_paused_object(tmp_path, store)
    seq = manifest_path.stem
    manifest_path.write_bytes(b'{"seq": "' + seq.encode() + b'", "keys": 17')  # damaged
    row = status_of(spool)
    assert (row["backlog_objects"], row["damaged_objects"]) == (0, 1), "status must not say all is well"
    result = run_cli(["s3-batch", "--dest", store, "--spool-dir", str(spool)], b'{"i": 100}\n')
    assert result.returncode == 0, result.stderr
    assert f"spool object {seq} set aside" in result.stderr and result.stats["objects_quarantined"] == 1
    assert [r["i"] for r in all_records(read_file_store(tmp_path / "store"))] == [100]
    body = (spool / "quarantine" / f"{seq}.body").read_bytes()
    assert [r["i"] for r in all_records({"x.ndjson.gz": body})] == list(range(7))
    row = status_of(spool)
    assert (row["backlog_objects"], row["damaged_objects"]) == (0, 1)
    assert not list((spool / "objects").iterdir())


def test_unicode_digits_in_severity_are_not_a_crash(tmp_path: Path) -> None:
    """Found by the property test: "²".isdigit() is True but int("²") raises."""
    lines = []
    for k, severity in enumerate(["²", "٣", "¹²", "5", "𝟓"]):
        event = orjson.loads(valid_lines(1, seed=k)[0])
        event.update({"eventId": f"u{k}", "severity": severity})
        lines.append(orjson.dumps(event))
    result = run_cli(["harmony-alerts", "--all"], b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.stderr
    alerts = {a["event_id"]: a["severity"] for a in map(orjson.loads, result.stdout_lines)}
    assert alerts == {"u0": None, "u1": None, "u2": None, "u3": 5, "u4": None}
    events = run_cli(
        ["harmony-events", "--once", "--severities", "²"], env={"HARMONY_CLIENT_ID": "c", "HARMONY_ACCESS_KEY": "k"}
    )
    assert events.returncode == 2 and "unknown --severities value" in events.stderr, events.stderr
