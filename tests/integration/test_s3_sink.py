"""s3-batch as a real process against file:// and a moto server over HTTP."""

from __future__ import annotations

import hashlib
import itertools
import json
import signal
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import SCHEMAS, run_cli
from tests.helpers.logs import error_lines
from tests.helpers.s3 import (
    Feeder,
    aws_env,
    decode_body,
    make_records,
    new_bucket,
    read_bucket,
    read_file_store,
    s3_client,
    sequence_numbers,
    spooled_records,
    start_sink,
)
from tests.helpers.wait import wait_until

COMBOS = list(itertools.product(["ndjson", "json-array"], ["gzip", "zstd", "none"]))
EXTENSIONS = {
    ("ndjson", "gzip"): ".ndjson.gz",
    ("ndjson", "zstd"): ".ndjson.zst",
    ("ndjson", "none"): ".ndjson",
    ("json-array", "gzip"): ".json.gz",
    ("json-array", "zstd"): ".json.zst",
    ("json-array", "none"): ".json",
}


def receipts_of(result) -> list[dict]:
    return [orjson.loads(line) for line in result.stdout_lines]


def validate_receipts(receipts: list[dict]) -> None:
    import jsonschema

    schema = json.loads((SCHEMAS / "s3-receipt.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for receipt in receipts:
        validator.validate(receipt)


def input_records(data: bytes) -> list[dict]:
    return [orjson.loads(line) for line in data.splitlines() if line]


@pytest.mark.parametrize(("fmt", "compression"), COMBOS)
def test_file_store_holds_the_input_exactly_once(tmp_path: Path, fmt: str, compression: str) -> None:
    data = make_records(5000)
    store = tmp_path / "store"
    result = run_cli(
        [
            "s3-batch",
            "--dest",
            f"file://{store}/",
            "--state-dir",
            str(tmp_path / "state"),
            "--format",
            fmt,
            "--compression",
            compression,
            "--max-records",
            "1200",
        ],
        data,
    )
    assert result.returncode == 0, result.stderr
    objects = read_file_store(store)
    assert sorted(objects) == sorted(k for k in objects if k.endswith(EXTENSIONS[fmt, compression]))
    records = [r for key in sorted(objects, key=lambda k: k.split("/")[-1]) for r in decode_body(objects[key], key)]
    assert sorted(records, key=lambda r: r["i"]) == input_records(data)
    receipts = receipts_of(result)
    validate_receipts(receipts)
    assert len(receipts) == len(objects) == 5
    for receipt in receipts:
        body = objects[receipt["key"]]
        assert receipt["bytes"] == len(body) and receipt["sha256"] == hashlib.sha256(body).hexdigest()
        assert (receipt["format"], receipt["compression"]) == (fmt, compression)
    stats = result.stats
    assert stats["records_in"] == stats["records_accepted"] == 5000 and stats["objects"] == 5
    assert stats["backlog_objects"] == 0


@pytest.mark.xdist_group("s3-moto")
@pytest.mark.parametrize(("fmt", "compression"), COMBOS)
def test_moto_holds_the_input_exactly_once(moto_server: str, tmp_path: Path, fmt: str, compression: str) -> None:
    bucket = new_bucket(moto_server)
    data = make_records(4000)
    result = run_cli(
        [
            "s3-batch",
            "--dest",
            f"s3://{bucket}/harmony",
            "--spool-dir",
            str(tmp_path / "spool"),
            "--format",
            fmt,
            "--compression",
            compression,
            "--max-records",
            "1500",
        ],
        data,
        env=aws_env(moto_server),
    )
    assert result.returncode == 0, result.stderr
    objects = read_bucket(moto_server, bucket)
    assert len(objects) == 3 and all(k.startswith("harmony/dt=2024-05-01/") for k in objects)
    records = [r for key in objects for r in decode_body(objects[key], key)]
    assert sorted(records, key=lambda r: r["i"]) == input_records(data)
    client = s3_client(moto_server)
    for key in objects:
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ContentType"] == ("application/json" if fmt == "json-array" else "application/x-ndjson")
        assert head.get("ContentEncoding") == {"gzip": "gzip", "zstd": "zstd", "none": None}[compression]
        assert head["Metadata"]["sha256"] == hashlib.sha256(objects[key]).hexdigest()
    receipts = receipts_of(result)
    validate_receipts(receipts)
    assert {r["key"] for r in receipts} == set(objects) and {r["bucket"] for r in receipts} == {bucket}


@pytest.mark.xdist_group("s3-moto")
def test_multipart_sse_and_storage_class(moto_server: str, tmp_path: Path) -> None:
    bucket = new_bucket(moto_server)
    data = make_records(60_000, pad=150)  # ~13 MB uncompressed, one object, multipart above 6 MiB
    result = run_cli(
        [
            "s3-batch",
            "--dest",
            f"s3://{bucket}/",
            "--spool-dir",
            str(tmp_path / "spool"),
            "--compression",
            "none",
            "--multipart-threshold-bytes",
            "6MiB",
            "--sse",
            "AES256",
            "--storage-class",
            "STANDARD_IA",
        ],
        data,
        env=aws_env(moto_server),
    )
    assert result.returncode == 0, result.stderr
    objects = read_bucket(moto_server, bucket)
    (key,) = objects
    assert objects[key] == data
    head = s3_client(moto_server).head_object(Bucket=bucket, Key=key)
    assert "-" in head["ETag"], "uploaded in parts"
    assert head["ServerSideEncryption"] == "AES256" and head["StorageClass"] == "STANDARD_IA"


def test_limits_records_and_stored_bytes(tmp_path: Path) -> None:
    data = make_records(4500)
    result = run_cli(["s3-batch", "--dest", f"file://{tmp_path}/a/", "--max-records", "1000"], data)
    assert sorted(r["records"] for r in receipts_of(result)) == [500, 1000, 1000, 1000, 1000]
    result = run_cli(
        # --max-bytes must hold the longest allowed record alone (issue 11): lines here are ~100 bytes
        ["s3-batch", "--dest", f"file://{tmp_path}/b/", "--max-bytes", "8KiB", "--max-line-bytes", "4096"],
        data,
    )
    objects = read_file_store(tmp_path / "b")
    sizes = sorted(len(body) for body in objects.values())
    assert sizes[-1] <= 8192 and sizes[-2] >= 8192 - 400, "filled to the stored-bytes limit, never above"
    assert sequence_numbers(objects) == list(range(4500))


def test_max_age_seals_a_trickle(tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = start_sink(["--dest", f"file://{store}/", "--max-age-secs", "0.5", "--flush-idle-ms", "50"])
    proc.stdin.write(make_records(3))  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while not read_file_store(store) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(read_file_store(store)) == 1, "sealed by age while input is still open"
    first_receipt = proc.stdout.readline()  # type: ignore[union-attr]
    assert orjson.loads(first_receipt)["records"] == 3, "the receipt is flushed without waiting for more input"
    proc.communicate(make_records(2, start=3), timeout=30)
    assert proc.returncode == 0
    assert sequence_numbers(read_file_store(store)) == list(range(5))


def test_partition_by_field(tmp_path: Path) -> None:
    result = run_cli(
        [
            "s3-batch",
            "--dest",
            f"file://{tmp_path}/s/",
            "--key-template",
            "{prefix}tenant={field:tenantid}/dt={date}/{t1}_{hash}{ext}",
        ],
        make_records(300),
    )
    assert result.returncode == 0, result.stderr
    objects = read_file_store(tmp_path / "s")
    assert sorted(k.split("/")[0] for k in objects) == ["tenant=t0", "tenant=t1", "tenant=t2"]
    for key, body in objects.items():
        assert {r["tenantid"] for r in decode_body(body, key)} == {key.split("/")[0].split("=")[1]}


def test_two_destinations_one_failing_then_recovering(tmp_path: Path) -> None:
    good, bad_root = tmp_path / "good", tmp_path / "bad"
    bad_root.write_text("a file where a directory should be")  # every write to "bad" fails
    args = [
        "--dest",
        f"good=file://{good}/",
        "--dest",
        f"bad=file://{bad_root}/",
        "--spool-dir",
        str(tmp_path / "spool"),
        "--max-records",
        "500",
        "--retry-max-delay-secs",
        "0.2",
    ]
    proc = start_sink(args)
    feeder = Feeder(proc.stdin, make_records(3000), pause_secs=0.01)
    feeder.start()
    feeder.join(30)
    deadline = time.monotonic() + 15
    while len(read_file_store(good)) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sequence_numbers(read_file_store(good)) == list(range(3000)), "the dead one does not stop the other"
    status = run_cli(["s3-batch", "status", "--spool-dir", str(tmp_path / "spool")])
    rows = {r["destination"]: r for r in map(orjson.loads, status.stdout_lines)}
    assert rows["good"]["backlog_objects"] == 0 and rows["bad"]["backlog_objects"] == 6
    bad_root.unlink()  # the destination comes back
    proc.stdin = None  # the feeder closed it: end of input
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert sequence_numbers(read_file_store(bad_root)) == list(range(3000))
    receipts = [orjson.loads(line) for line in out.splitlines()]
    assert sorted(r["destination"] for r in receipts) == ["bad"] * 6 + ["good"] * 6
    assert read_file_store(good) == read_file_store(bad_root), "same keys and bodies in both"
    stderr = err.decode()
    assert "destination bad: attempt 1 failed" in stderr and "destination bad recovered" in stderr
    assert stderr.count("destination bad: attempt") <= 8, "one log line per backoff step, not per attempt"


def test_pause_backlog_resume_drains_in_order(tmp_path: Path) -> None:
    store, spool = tmp_path / "store", tmp_path / "spool"
    proc = start_sink(["--dest", f"local=file://{store}/", "--spool-dir", str(spool), "--max-records", "100"])
    proc.stdin.write(make_records(300))  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    wait_until(lambda: len(read_file_store(store)) == 3)
    assert run_cli(["s3-batch", "pause", "--spool-dir", str(spool), "--dest", "local"]).returncode == 0
    time.sleep(0.6)  # the worker sees the flag
    proc.stdin.write(make_records(500, start=300))  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    time.sleep(1.0)
    assert len(read_file_store(store)) == 3, "nothing is uploaded while paused"
    (row,) = map(orjson.loads, run_cli(["s3-batch", "status", "--spool-dir", str(spool)]).stdout_lines)
    assert row["destination"] == "local" and row["paused"] is True
    assert row["backlog_objects"] == 5 and row["backlog_records"] == 500 and row["oldest_age_secs"] >= 0.5
    assert run_cli(["s3-batch", "resume", "--spool-dir", str(spool)]).returncode == 0
    out, err = proc.communicate(make_records(100, start=800), timeout=60)
    assert proc.returncode == 0, err.decode()
    receipts = [orjson.loads(line) for line in out.splitlines()]
    firsts = [r["first_time"] for r in receipts]
    assert firsts == sorted(firsts) and len(receipts) == 9, "backlog drained oldest first, then new records"
    assert sequence_numbers(read_file_store(store)) == list(range(900))
    assert "destination local paused" in err.decode() and "destination local resumed" in err.decode()


def test_sigterm_seals_the_open_batch_and_delivers(tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = start_sink(["--dest", f"file://{store}/", "--state-dir", str(tmp_path / "state")])
    proc.stdin.write(make_records(777))  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    wait_until(lambda: spooled_records(tmp_path / "state" / "s3-batch-spool") == 777, what="777 records spooled")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert sequence_numbers(read_file_store(store)) == list(range(777))
    assert len(out.splitlines()) == 1


@pytest.mark.xdist_group("s3-moto")
def test_missing_bucket_exits_4_with_one_line(moto_server: str, tmp_path: Path) -> None:
    result = run_cli(
        ["s3-batch", "--dest", "s3://no-such-bucket-s3b/x/", "--spool-dir", str(tmp_path / "s")],
        b'{"a":1}\n',
        env=aws_env(moto_server),
    )
    assert result.returncode == 4
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "no-such-bucket-s3b" in errors[0] and " — " in errors[0]
    assert "1 objects wait in the spool" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.xdist_group("s3-moto")
def test_records_behind_a_missing_bucket_are_spooled_not_lost(moto_server: str, tmp_path: Path) -> None:
    """In `harmony-events | harmony-alerts | s3-batch`, the upstream commands have already written
    their records into the pipe when s3-batch finds the bucket missing: they must survive."""
    import boto3

    spool = str(tmp_path / "s")
    records = b"".join(orjson.dumps({"seq": i}) + b"\n" for i in range(5))
    first = run_cli(
        ["s3-batch", "--dest", "s3://late-bucket-s3b/p/", "--spool-dir", spool], records, env=aws_env(moto_server)
    )
    assert first.returncode == 4, first.stderr
    assert "refused at start" in first.stderr and "spooled" in first.stderr
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="late-bucket-s3b")
    second = run_cli(
        ["s3-batch", "--dest", "s3://late-bucket-s3b/p/", "--spool-dir", spool], b"", env=aws_env(moto_server)
    )
    assert second.returncode == 0, second.stderr
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="late-bucket-s3b")["Contents"]]
    assert len(keys) == 1
    body = s3.get_object(Bucket="late-bucket-s3b", Key=keys[0])["Body"].read()
    import gzip

    assert [orjson.loads(line)["seq"] for line in gzip.decompress(body).splitlines()] == list(range(5))
    assert [orjson.loads(line)["records"] for line in second.stdout_lines] == [5]


def test_refused_credentials_exit_3(tmp_path: Path) -> None:
    from tests.helpers.s3_aws import AuthMoto

    moto = AuthMoto()
    try:
        moto.client("s3").create_bucket(Bucket="locked")
        env = {
            **aws_env(moto.endpoint),
            "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG1",
            "AWS_SECRET_ACCESS_KEY": "x",
        }
        env.pop("AWS_SESSION_TOKEN", None)
        result = run_cli(["s3-batch", "--dest", "s3://locked/", "--spool-dir", str(tmp_path / "s")], b"", env=env)
        assert result.returncode == 3, result.stderr
        errors = error_lines(result.stderr)
        assert len(errors) == 1 and "AKIAWRONG" not in result.stderr
    finally:
        moto.close()


def test_validate_harness_audit_and_preset(tmp_path: Path) -> None:
    good = {
        "auditEventId": "e1",
        "auditEventAuthor": {"principal": {"type": "USER", "identifier": "u1"}},
        "auditModule": "CORE",
        "auditResource": {"type": "USER", "identifier": "u1"},
        "auditResourceScope": {"accountIdentifier": "acc"},
        "auditAction": "CREATE",
        "auditEventTime": "1714521600000",
    }
    bad = {k: v for k, v in good.items() if k != "auditModule"}
    data = b"\n".join(orjson.dumps(r) for r in (good, bad, good)) + b"\n"
    dead = tmp_path / "dead.ndjson"
    result = run_cli(
        [
            "s3-batch",
            "--dest",
            f"file://{tmp_path}/s/",
            "--preset",
            "harness",
            "--validate",
            "harness-audit",
            "--dead-letter",
            str(dead),
        ],
        data,
    )
    assert result.returncode == 0, result.stderr
    (key,) = read_file_store(tmp_path / "s")
    assert key.startswith("dt=2024-05-01/1714521600000_1714521600000_") and key.endswith(".json.gz")
    assert decode_body(read_file_store(tmp_path / "s")[key], key) == [good, good]
    (entry,) = map(orjson.loads, dead.read_bytes().splitlines())
    assert entry["line_no"] == 2 and "auditModule" in entry["error"]
    assert result.stats["bad_records"] == 1


def test_help_lists_env_vars_and_defaults() -> None:
    result = run_cli(["s3-batch", "--help"])
    assert result.returncode == 0
    text = result.stdout.decode()
    for needle in (
        "S3_BATCH_MAX_RECORDS",
        "100000",
        "S3_BATCH_MAX_BYTES",
        "64MiB",
        "S3_BATCH_MAX_AGE_SECS",
        "300",
        "S3_BATCH_SPOOL_DIR",
        "S3_BATCH_FSYNC_INTERVAL_MS",
        "pause",
        "resume",
        "status",
        "policy",
        "test",
    ):
        assert needle in text, needle


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run_cli(["s3-batch"]).returncode == 2
    bad = run_cli(["s3-batch", "--dest", f"file://{tmp_path}/", "--key-template", "{nope}"])
    assert bad.returncode == 2 and error_lines(bad.stderr)[0].startswith("--key-template")
    assert run_cli(["s3-batch", "--dest", "ftp://x/"]).returncode == 2
    assert run_cli(["s3-batch", "pause", "--spool-dir", str(tmp_path / "none")]).returncode == 2


def test_policy_subcommand() -> None:
    result = run_cli(["s3-batch", "policy", "--dest", "s3://audit-bucket/harness/"])
    assert result.returncode == 0
    actions = json.dumps(json.loads(result.stdout)["Statement"])
    assert "s3:PutObject" in actions and "s3:ListBucket" in actions


def test_configuration_from_environment(tmp_path: Path) -> None:
    env = {
        "S3_BATCH_DEST": f"one=file://{tmp_path}/a/ two=file://{tmp_path}/b/",
        "S3_BATCH_MAX_RECORDS": "40",
        "S3_BATCH_FORMAT": "json-array",
        "S3_BATCH_COMPRESSION": "zstd",
        "S3_BATCH_SPOOL_DIR": str(tmp_path / "spool"),
    }
    result = run_cli(["s3-batch"], make_records(100), env=env)
    assert result.returncode == 0, result.stderr
    for name in ("a", "b"):
        objects = read_file_store(tmp_path / name)
        assert len(objects) == 3 and all(k.endswith(".json.zst") for k in objects)
        assert sequence_numbers(objects) == list(range(100))
    assert sorted({r["destination"] for r in receipts_of(result)}) == ["one", "two"]


def test_sigterm_with_a_dead_destination_keeps_the_backlog_for_the_next_start(tmp_path: Path) -> None:
    root, spool = tmp_path / "store", tmp_path / "spool"
    root.write_text("not a directory yet")
    args = [
        "--dest",
        f"arch=file://{root}/",
        "--spool-dir",
        str(spool),
        "--max-records",
        "100",
        "--retry-max-delay-secs",
        "0.2",
        "--drain-timeout-secs",
        "1",
    ]
    proc = start_sink(args)
    proc.stdin.write(make_records(250))  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    wait_until(lambda: spooled_records(spool) == 250, what="250 records spooled")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert out == b"" and "stay in the spool" in err.decode()
    (row,) = map(orjson.loads, run_cli(["s3-batch", "status", "--spool-dir", str(spool)]).stdout_lines)
    assert (row["backlog_objects"], row["backlog_records"]) == (3, 250)
    root.unlink()
    again = run_cli(["s3-batch", *args], b"")
    assert again.returncode == 0, again.stderr
    assert sequence_numbers(read_file_store(root)) == list(range(250))
    assert len(again.stdout_lines) == 3
