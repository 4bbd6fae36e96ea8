"""s3-batch options the issue names, each proven on a real process (file:// store, real spool).

Preset cadence, fsync interval (acceptance while a batch is open), bounded `{field:NAME}`
partitions, `--time-field` and its fallbacks, `--schema` with dead-letter reasons and `--strict`,
exit 75 with the backlog kept, the spool under the state root, pausing one of two destinations.
"""

from __future__ import annotations

import threading
import time
import zlib
from pathlib import Path

import orjson

from tests.conftest import run_cli
from tests.helpers.logs import error_lines
from tests.helpers.s3 import decode_body, make_records, read_file_store, sequence_numbers, start_sink
from tests.helpers.wait import wait_until

MAY_1 = 1_714_521_600_000


class LineCollector(threading.Thread):
    """Collects a pipe's lines as they come (so a test can look at stderr while the sink runs)."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: list[str] = []

    def run(self) -> None:
        for line in iter(self.stream.readline, b""):
            self.lines.append(line.decode("utf-8", "replace").rstrip("\n"))

    def progress(self) -> list[dict]:
        return [orjson.loads(line)["progress"] for line in list(self.lines) if line.startswith('{"progress"')]


def status_rows(spool: Path, *names: str, env: dict[str, str] | None = None) -> dict[str, dict]:
    args = ["s3-batch", "status", "--spool-dir", str(spool)] if spool else ["s3-batch", "status"]
    for name in names:
        args += ["--dest", name]
    result = run_cli(args, env=env)
    assert result.returncode == 0, result.stderr
    return {row["destination"]: row for row in map(orjson.loads, result.stdout_lines)}


def test_preset_harness_sets_the_30_minute_cadence_and_json_list_body(tmp_path: Path) -> None:
    result = run_cli(["s3-batch", "--dest", f"file://{tmp_path}/a/", "--preset", "harness"], make_records(20))
    assert result.returncode == 0, result.stderr
    assert "or 1800 s after their first record; body json-array" in result.stderr
    ((key, body),) = read_file_store(tmp_path / "a").items()
    assert key.endswith(".json.gz") and [r["i"] for r in decode_body(body, key)] == list(range(20))
    # explicit options (flags or env) win over the preset
    result = run_cli(
        ["s3-batch", "--dest", f"file://{tmp_path}/b/", "--max-age-secs", "60"],
        make_records(5),
        env={"S3_BATCH_PRESET": "harness", "S3_BATCH_FORMAT": "ndjson"},
    )
    assert result.returncode == 0, result.stderr
    assert "or 60 s after their first record; body ndjson" in result.stderr
    (key,) = read_file_store(tmp_path / "b")
    assert key.endswith(".ndjson.gz")


def test_fsync_interval_accepts_records_while_the_batch_is_still_open(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    common = ["--dest", f"file://{tmp_path}/store/", "--max-age-secs", "600", "--stats-interval-secs", "0.1"]
    proc = start_sink([*common, "--spool-dir", str(spool), "--fsync-interval-ms", "50"])
    err = LineCollector(proc.stderr)
    err.start()
    proc.stdin.write(make_records(5))  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    wait_until(lambda: any(p["records_accepted"] == 5 for p in err.progress()))
    last = err.progress()[-1]
    assert last["objects_sealed"] == 0, "accepted while the object is still open"
    assert (last["backlog_objects"], last["retries"]) == (0, 0), "progress lines carry the backlog"
    # what was reported accepted is in the open body on disk (a gzip stream cut at a sync point)
    (body,) = (spool / "open").glob("*.body")
    lines = zlib.decompressobj(31).decompress(body.read_bytes()).splitlines()
    assert [orjson.loads(line)["i"] for line in lines] == list(range(5))
    proc.communicate(timeout=30)
    assert proc.returncode == 0

    # a long interval (no fsync for 10 minutes): records are still accepted on write — every
    # progress line that counts them read counts them accepted, and they are in the open body and
    # in the commit log (what a restart after kill -9 keeps)
    spool2 = tmp_path / "spool2"
    slow = start_sink([*common, "--spool-dir", str(spool2), "--fsync-interval-ms", "600000"])
    err = LineCollector(slow.stderr)
    err.start()
    slow.stdin.write(make_records(5))  # type: ignore[union-attr]
    slow.stdin.flush()  # type: ignore[union-attr]
    wait_until(lambda: any(p["records_in"] == 5 for p in err.progress()))
    assert all(p["records_accepted"] == p["records_in"] for p in err.progress())
    (body,) = (spool2 / "open").glob("*.body")
    lines = zlib.decompressobj(31).decompress(body.read_bytes()).splitlines()
    assert [orjson.loads(line)["i"] for line in lines] == list(range(5))
    last_commit = orjson.loads((spool2 / "commits.log").read_bytes().splitlines()[-1])
    assert {k: v for k, v in last_commit.items() if not k.startswith("@")} == {body.stem: 5}
    slow.stdin.close()  # type: ignore[union-attr]
    slow.wait(30)
    err.join(10)
    stats = orjson.loads(next(line for line in err.lines if line.startswith('{"stats"')))["stats"]
    assert slow.returncode == 0 and stats["records_accepted"] == 5


def test_field_partitions_are_separate_and_bounded(tmp_path: Path) -> None:
    spool, store = tmp_path / "spool", tmp_path / "store"
    data = b"".join(
        orjson.dumps({"i": i, "timestamp": MAY_1 + i, "org": {"tenant": f"t{i // 50 % 12}"}}) + b"\n"
        for i in range(1200)
    )  # runs of 50 records per tenant, 12 tenants in turn, twice
    args = [
        "--dest",
        f"file://{store}/",
        "--spool-dir",
        str(spool),
        "--key-template",
        "{prefix}tenant={field:org.tenant}/{t1}_{hash}{ext}",
        "--max-open-batches",
        "3",
        "--stats-interval-secs",
        "0.1",
    ]
    proc = start_sink(args)
    err, out = LineCollector(proc.stderr), LineCollector(proc.stdout)
    err.start()
    out.start()
    half = data[: data.index(b'{"i":600,')]
    proc.stdin.write(half)  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    wait_until(lambda: any(p["records_in"] == 600 for p in err.progress()))
    assert len(list((spool / "open").glob("*.body"))) <= 3, "at most --max-open-batches open objects"
    proc.stdin.write(data[len(half) :])  # type: ignore[union-attr]
    proc.stdin.close()  # type: ignore[union-attr]
    proc.wait(30)
    assert proc.returncode == 0, "\n".join(err.lines)
    objects = read_file_store(store)
    assert sequence_numbers(objects) == list(range(1200))
    assert len(objects) == 24, "each run of a tenant: the oldest open partition was sealed to make room"
    for key, body in objects.items():
        tenants = {r["org"]["tenant"] for r in decode_body(body, key)}
        assert tenants == {key.split("/")[0].removeprefix("tenant=")}, "one partition value per object"


def test_time_field_dotted_path_and_the_default_fallbacks(tmp_path: Path) -> None:
    template = "{prefix}{date}/{hour}/{t1}_{t2}_{hash}{ext}"
    records = [
        {"n": 1, "meta": {"ts": "2024-05-01T10:15:00Z"}, "timestamp": 1},
        {"n": 2, "meta": {"ts": "2024-05-01T10:45:00.500Z"}},
        {"n": 3, "meta": {"ts": "2024-05-01T11:00:00Z"}},
        {"n": 4, "timestamp": MAY_1},  # no meta.ts: arrival time, not the other field
    ]
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    before_ms = time.time_ns() // 1_000_000
    args = ["s3-batch", "--dest", f"file://{tmp_path}/a/", "--key-template", template, "--time-field", "meta.ts"]
    result = run_cli(args, data)
    after_ms = time.time_ns() // 1_000_000
    assert result.returncode == 0, result.stderr
    objects = read_file_store(tmp_path / "a")
    by_n = {tuple(r["n"] for r in decode_body(body, key)): key for key, body in objects.items()}
    ten, eleven = MAY_1 + 10 * 3_600_000, MAY_1 + 11 * 3_600_000
    assert by_n[(1, 2)].startswith(f"2024-05-01/10/{ten + 15 * 60_000}_{ten + 45 * 60_000 + 500}_")
    assert by_n[(3,)].startswith(f"2024-05-01/11/{eleven}_{eleven}_")
    arrival = int(by_n[(4,)].split("/")[2].split("_")[0])
    assert before_ms - 1000 <= arrival <= after_ms

    defaults = [
        {"n": 1, "auditEventTime": str(MAY_1 + 5)},  # Harness: epoch ms as a string
        {"n": 2, "eventCreated": "2024-05-01T00:00:00.007Z"},  # Harmony event
        {"n": 3, "timestamp": MAY_1 + 9, "auditEventTime": "1"},  # timestamp is tried first
    ]
    result = run_cli(
        ["s3-batch", "--dest", f"file://{tmp_path}/b/", "--key-template", template],
        b"".join(orjson.dumps(r) + b"\n" for r in defaults),
    )
    assert result.returncode == 0, result.stderr
    (key,) = read_file_store(tmp_path / "b")
    assert key.startswith(f"2024-05-01/00/{MAY_1 + 5}_{MAY_1 + 9}_")


def test_user_schema_dead_letters_with_the_reason_and_strict_exits_65(tmp_path: Path) -> None:
    schema = tmp_path / "rec.schema.json"
    schema.write_text(
        '{"type": "object", "required": ["i"], "properties": {"i": {"type": "integer"}, "tag": {"minLength": 1}}}'
    )
    data = b'{"i": 1}\n{"i": "x"}\n{"tag": "a"}\n{"i": 2, "tag": ""}\n{"i": 3}\n'
    dead = tmp_path / "dead.ndjson"
    args = ["s3-batch", "--dest", f"file://{tmp_path}/a/", "--schema", str(schema), "--dead-letter", str(dead)]
    result = run_cli(args, data)
    assert result.returncode == 0, result.stderr
    assert [r["i"] for r in decode_body(*next(iter(read_file_store(tmp_path / "a").items()))[::-1])] == [1, 3]
    entries = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [(e["line_no"], e["error"]) for e in entries] == [
        (2, "rec.schema.json: i must be integer, got string"),
        (3, "rec.schema.json: missing i"),
        (4, "rec.schema.json: tag must not be empty"),
    ]
    assert result.stats["bad_records"] == 3 and result.stats["records_accepted"] == 2

    strict = run_cli(["s3-batch", "--dest", f"file://{tmp_path}/b/", "--schema", str(schema), "--strict"], data)
    assert strict.returncode == 65
    errors = error_lines(strict.stderr)
    assert len(errors) == 1 and "input line 2" in errors[0] and "i must be integer" in errors[0]
    ((key, body),) = read_file_store(tmp_path / "b").items()
    assert [r["i"] for r in decode_body(body, key)] == [1], "what came before the bad record is kept"


def test_undelivered_objects_exit_75_and_wait_in_the_spool_under_the_state_root(tmp_path: Path) -> None:
    root, dead = tmp_path / "state", tmp_path / "dead"
    dead.write_text("a file where the store directory should be")
    env = {"HARMONY_PIPES_STATE_DIR": str(root)}
    args = ["s3-batch", "--dest", f"arch=file://{dead}/", "--drain-timeout-secs", "0.5"]
    result = run_cli([*args, "--retry-max-delay-secs", "0.1"], make_records(10), env=env)
    assert result.returncode == 75, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "1 objects not delivered" in errors[0] and " — " in errors[0]
    assert result.stats["backlog_objects"] == 1 and result.stats["retries"] >= 1
    spool = root / "s3-batch" / "s3-batch-spool"
    assert len(list((spool / "objects").glob("*.json"))) == 1, "default spool: <root>/s3-batch/s3-batch-spool"
    row = status_rows(None, env=env)["arch"]  # type: ignore[arg-type]
    assert (row["backlog_objects"], row["backlog_records"], row["paused"]) == (1, 10, False)
    dead.unlink()
    again = run_cli(args, b"", env=env)
    assert again.returncode == 0, again.stderr
    assert sequence_numbers(read_file_store(dead)) == list(range(10))


def test_pausing_one_destination_leaves_the_other_running(tmp_path: Path) -> None:
    spool, a, b = tmp_path / "spool", tmp_path / "a", tmp_path / "b"
    proc = start_sink(
        ["--dest", f"a=file://{a}/", "--dest", f"b=file://{b}/", "--spool-dir", str(spool), "--max-records", "100"]
    )
    wait_until(lambda: (spool / "destinations.json").exists())
    assert run_cli(["s3-batch", "pause", "--spool-dir", str(spool), "--dest", "b"]).returncode == 0
    time.sleep(0.6)  # the workers re-read the flags every 0.25 s
    proc.stdin.write(make_records(300))  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    wait_until(lambda: len(read_file_store(a)) == 3)
    time.sleep(0.5)
    assert read_file_store(b) == {}
    rows = status_rows(spool)
    assert (rows["a"]["paused"], rows["a"]["backlog_objects"]) == (False, 0)
    assert (rows["b"]["paused"], rows["b"]["backlog_objects"], rows["b"]["backlog_records"]) == (True, 3, 300)
    assert list(status_rows(spool, "b")) == ["b"]
    unknown = run_cli(["s3-batch", "pause", "--spool-dir", str(spool), "--dest", "c"])
    assert unknown.returncode == 2 and "known here: a, b" in unknown.stderr

    # pause everything, then resume only b: b drains its backlog and goes on, a waits
    assert run_cli(["s3-batch", "pause", "--spool-dir", str(spool)]).returncode == 0
    assert run_cli(["s3-batch", "resume", "--spool-dir", str(spool), "--dest", "b"]).returncode == 0
    wait_until(lambda: len(read_file_store(b)) == 3)
    proc.stdin.write(make_records(100, start=300))  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    wait_until(lambda: len(read_file_store(b)) == 4)
    assert len(read_file_store(a)) == 3 and status_rows(spool)["a"]["backlog_objects"] == 1
    assert run_cli(["s3-batch", "resume", "--spool-dir", str(spool)]).returncode == 0
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert read_file_store(a) == read_file_store(b)
    receipts = [orjson.loads(line) for line in out.splitlines()]
    assert sorted(r["destination"] for r in receipts) == ["a"] * 4 + ["b"] * 4
    assert sequence_numbers(read_file_store(a)) == list(range(400))


def test_default_key_is_date_t1_t2_t3_hash_of_each_object(tmp_path: Path) -> None:
    """The seed's `<t1>_<t2>_<t3>` under `dt=`: checked against each object's own records and bytes."""
    import hashlib
    from datetime import UTC, datetime

    before_ms = time.time_ns() // 1_000_000
    result = run_cli(["s3-batch", "--dest", f"file://{tmp_path}/s/", "--max-records", "70"], make_records(200))
    after_ms = time.time_ns() // 1_000_000
    assert result.returncode == 0, result.stderr
    objects = read_file_store(tmp_path / "s")
    assert len(objects) == 3
    for key, body in objects.items():
        times = [r["timestamp"] for r in decode_body(body, key)]
        day = datetime.fromtimestamp(min(times) / 1000, tz=UTC).strftime("%Y-%m-%d")
        t1, t2, t3, tail = key.removeprefix(f"dt={day}/").split("_")
        assert (int(t1), int(t2)) == (min(times), max(times))
        assert before_ms <= int(t3) <= after_ms, "t3 is when the object was written"
        assert tail == hashlib.sha256(body).hexdigest()[:16] + ".ndjson.gz"
    stats = result.stats
    assert stats["objects"] == 3 and stats["bytes_stored"] == sum(len(b) for b in objects.values())
    assert (stats["retries"], stats["backlog_objects"], stats["backlog_bytes"]) == (0, 0, 0)
