"""Flows 1 and 2 with the real Fluent Bit, hec-emulator and a moto S3 server on 127.0.0.1.

Flow 1 (harmony-to-s3.*): exec `harmony-events --once | harmony-alerts` every interval -> out_s3.
Flow 2 (harmony-chain-to-s3.*): exec `... | s3-batch --dest s3://...` -> receipts -> out_file.

The emulator serves a known set of events, including one whose alert is > 4 KiB (the exec
default buf_size is 4096) and one full of JSON escapes and non-ASCII text. Fluent Bit runs the
shipped config with only the 60 s interval shortened to 2 s, for at least two exec cycles; then
the bucket must hold exactly the expected alerts: every eventId once, none missing, none twice,
the big one whole, and each record equal (as JSON) to what harmony-alerts writes for the same
events when run on its own — so Fluent Bit's parse and re-serialization changed nothing.
"""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import orjson
import pytest

from tests.conftest import AWS_TEST_ENV, SCHEMAS, run_cli
from tests.helpers.events import ACCESS_KEY, CLIENT_ID, make_events, write_events
from tests.helpers.fluentbit import FluentBit, read_ndjson
from tests.helpers.pipelines import start_hec_emulator

pytestmark = [pytest.mark.pipeline, pytest.mark.integration, pytest.mark.xdist_group("fb-harmony")]

KEEP_TYPES = {"phishing", "malware", "alert", "dlp"}
BIG_DESCRIPTION_BYTES = 6000
TRICKY_TEXT = 'Réunion — 日本 "quoted" \\ back\nslash \u2028 \u0001 😀 </script>'
INTERVAL = {
    ".conf": ("Interval_Sec  60", "Interval_Sec  2"),
    ".yaml": ("interval_sec: 60", "interval_sec: 2"),
}


def is_alert(event: dict) -> bool:
    """harmony-alerts' default rule, written independently of its code."""
    return event.get("type") in KEEP_TYPES or int(event.get("severity") or 0) >= 4


@pytest.fixture(scope="module")
def tenant(tmp_path_factory) -> dict:
    """Events (one with a 6 KB description, kept as a phishing alert) served by hec-emulator."""
    events = make_events(80, span_secs=1200, seed=21)
    big = dict(events[40], type="phishing", severity="2")
    big["description"] = "Phishing attempt, long body: " + "x" * BIG_DESCRIPTION_BYTES
    events[40] = big
    events[41] = dict(events[41], type="malware", description=TRICKY_TEXT, senderAddress="josé@exämple.com")
    path = write_events(tmp_path_factory.mktemp("tenant") / "events.ndjson", events)
    # What harmony-alerts itself writes for these events (no shipper in between).
    alone = run_cli(["harmony-alerts"], path.read_bytes(), env={})
    assert alone.returncode == 0, alone.stderr
    proc, url = start_hec_emulator(["--events", str(path)])
    try:
        yield {
            "url": url,
            "expected": {e["eventId"] for e in events if is_alert(e)},
            "records": {r["event_id"]: r for r in map(orjson.loads, alone.stdout_lines)},
            "big_id": big["eventId"],
            "tricky_id": events[41]["eventId"],
        }
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def new_bucket(endpoint: str) -> str:
    import boto3

    name = f"fb-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def read_bucket(endpoint: str, bucket: str) -> dict[str, list[bytes]]:
    """key -> NDJSON lines (gunzipped) of every object in the bucket."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    objects = {}
    for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        objects[item["Key"]] = [line for line in body.split(b"\n") if line.strip()]
    return objects


def chain_env(tenant: dict, tmp_path: Path, moto_server: str, bucket: str) -> dict[str, str]:
    return {
        **AWS_TEST_ENV,
        "AWS_REGION": "us-east-1",
        "HARMONY_BASE_URL": tenant["url"],
        "HARMONY_CLIENT_ID": CLIENT_ID,
        "HARMONY_ACCESS_KEY": ACCESS_KEY,
        "HARMONY_START": "2h",
        "HARMONY_STATE_ROOT": str(tmp_path / "state"),
        "HARMONY_S3_BUCKET": bucket,
        "HARMONY_S3_ENDPOINT": moto_server,
        "S3_BATCH_ENDPOINT_URL": moto_server,
        "HARMONY_RECEIPTS_DIR": str(tmp_path / "receipts"),
    }


def run_two_cycles(fb: FluentBit) -> None:
    """Wait for two complete exec runs (harmony-alerts prints one stats line per run), then stop."""
    fb.wait_until(lambda: len(fb.stats_lines("harmony-alerts")) >= 2, 40, "two exec cycles")
    assert fb.stop() == 0, fb.tail()
    first, second = fb.stats_lines("harmony-alerts")[:2]
    assert first["records_out"] > 0
    assert second["records_out"] == 0, "the second cycle must not emit anything again"


def check_alerts(lines: list[bytes], tenant: dict) -> None:
    alerts = [orjson.loads(line) for line in lines]
    ids = [a["event_id"] for a in alerts]
    assert len(ids) == len(set(ids)), "an alert arrived twice"
    assert set(ids) == tenant["expected"]
    assert all(a["msg_class"] == "checkpoint_harmony_security_event" for a in alerts)
    assert all("date" not in a for a in alerts), "Fluent Bit added its date key"
    (big_line,) = [line for line, a in zip(lines, alerts, strict=True) if a["event_id"] == tenant["big_id"]]
    assert len(big_line) > 4096
    big = orjson.loads(big_line)
    assert big["description"].endswith("x" * BIG_DESCRIPTION_BYTES)
    assert big["checkpoint_harmony"]["description"] == big["description"]
    # JSON parsed and re-serialized without loss: every record equals harmony-alerts' own output
    # (Fluent Bit writes non-ASCII as \u escapes, so compare as JSON, not bytes).
    assert set(tenant["records"]) == tenant["expected"]
    for alert in alerts:
        assert alert == tenant["records"][alert["event_id"]], alert["event_id"]
    (tricky,) = [a for a in alerts if a["event_id"] == tenant["tricky_id"]]
    assert tricky["description"] == TRICKY_TEXT


@pytest.mark.parametrize("suffix", [".conf", ".yaml"])
def test_flow1_exec_alerts_to_out_s3(fluent_bit_path, moto_server, tenant, tmp_path, suffix) -> None:
    bucket = new_bucket(moto_server)
    env = chain_env(tenant, tmp_path, moto_server, bucket)
    old, new = INTERVAL[suffix]
    with FluentBit(fluent_bit_path, f"harmony-to-s3{suffix}", tmp_path, env, {old: new}) as fb:
        run_two_cycles(fb)
    objects = read_bucket(moto_server, bucket)
    assert objects, fb.tail()
    assert all(key.startswith("harmony/alerts/dt=") and key.endswith(".ndjson.gz") for key in objects)
    check_alerts([line for lines in objects.values() for line in lines], tenant)
    assert ACCESS_KEY not in fb.stderr


def test_flow1_events_arriving_between_cycles_come_in_the_next_one(fluent_bit_path, moto_server, tmp_path) -> None:
    """After the first exec cycle, new events appear: one created before the cursor (a late
    event inside the overlap) and fresh ones. The next cycles deliver exactly those, once."""
    from datetime import UTC, datetime, timedelta

    import requests

    from tests.helpers.pipelines import start_hec_emulator

    first = make_events(30, span_secs=600, seed=33)
    path = write_events(tmp_path / "events.ndjson", first)
    proc, url = start_hec_emulator(["--events", str(path)])
    try:
        bucket = new_bucket(moto_server)
        env = chain_env({"url": url}, tmp_path, moto_server, bucket)
        with FluentBit(
            fluent_bit_path, "harmony-to-s3.conf", tmp_path, env, {"Interval_Sec  60": "Interval_Sec  2"}
        ) as fb:
            fb.wait_until(lambda: len(fb.stats_lines("harmony-alerts")) >= 1, 40, "the first exec cycle")
            now = datetime.now(UTC)
            late = make_events(4, span_secs=60, seed=34, end=now - timedelta(seconds=30))
            fresh = make_events(6, span_secs=1, seed=35, end=now)
            for event in late + fresh:
                event.update(type="phishing")  # every one of them is an alert
            body = b"".join(orjson.dumps(e) + b"\n" for e in late + fresh)
            requests.post(url + "/_emulator/events", data=body, timeout=10).raise_for_status()
            fb.wait_until(lambda: len(fb.stats_lines("harmony-alerts")) >= 3, 40, "two more exec cycles")
            assert fb.stop() == 0, fb.tail()
        runs = [line["records_out"] for line in fb.stats_lines("harmony-alerts")]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    expected_first = {e["eventId"] for e in first if is_alert(e)}
    added = {e["eventId"] for e in late + fresh}
    assert runs[0] == len(expected_first) and sum(runs[1:]) == len(added), runs
    alerts = [orjson.loads(line) for lines in read_bucket(moto_server, bucket).values() for line in lines]
    ids = [a["event_id"] for a in alerts]
    assert len(ids) == len(set(ids)) and set(ids) == expected_first | added


@pytest.mark.parametrize("suffix", [".conf", ".yaml"])
def test_flow2_chain_to_s3_batch_with_receipts(fluent_bit_path, moto_server, tenant, tmp_path, suffix) -> None:
    bucket = new_bucket(moto_server)
    env = chain_env(tenant, tmp_path, moto_server, bucket)
    (tmp_path / "receipts").mkdir()
    old, new = INTERVAL[suffix]
    with FluentBit(fluent_bit_path, f"harmony-chain-to-s3{suffix}", tmp_path, env, {old: new}) as fb:
        run_two_cycles(fb)
    objects = read_bucket(moto_server, bucket)
    receipts = read_ndjson(tmp_path / "receipts" / "s3-receipts.ndjson")
    # One object for the run with alerts, none for the empty second run; one receipt each.
    assert len(objects) == 1, list(objects)
    assert [r["key"] for r in receipts] == list(objects)
    assert receipts[0]["bucket"] == bucket
    assert receipts[0]["records"] == len(tenant["expected"])
    import jsonschema

    schema = json.loads((SCHEMAS / "s3-receipt.schema.json").read_text())
    for receipt in receipts:
        jsonschema.validate(receipt, schema)
    check_alerts(next(iter(objects.values())), tenant)
    assert ACCESS_KEY not in fb.stderr


def test_flow1_survives_a_fluent_bit_crash(fluent_bit_path, moto_server, tenant, tmp_path) -> None:
    """kill -9 of Fluent Bit after a cycle was read but before out_s3 uploaded it (upload_timeout
    5m): the alerts wait in store_dir / storage.path under HARMONY_STATE_ROOT, and the restarted
    Fluent Bit uploads them — harmony-alerts will never emit them again, so this is the only copy."""
    import signal

    bucket = new_bucket(moto_server)
    env = chain_env(tenant, tmp_path, moto_server, bucket)
    old, new = INTERVAL[".conf"]
    with FluentBit(fluent_bit_path, "harmony-to-s3.conf", tmp_path / "run1", env, {old: new}) as fb:
        fb.wait_until(lambda: len(fb.stats_lines("harmony-alerts")) >= 1, 40, "one exec cycle")
        assert fb.stats_lines("harmony-alerts")[0]["records_out"] > 0
        store = tmp_path / "state" / "fluent-bit" / "s3"
        fb.wait_until(lambda: any(p.is_file() for p in store.rglob("*")), 20, "records buffered in store_dir")
        fb.proc.send_signal(signal.SIGKILL)
        fb.proc.wait()
    assert read_bucket(moto_server, bucket) == {}, "nothing uploaded before the crash"
    with FluentBit(fluent_bit_path, "harmony-to-s3.conf", tmp_path / "run2", env, {old: new}) as fb:
        fb.wait_until(lambda: len(fb.stats_lines("harmony-alerts")) >= 1, 40, "a cycle after the restart")
        assert fb.stats_lines("harmony-alerts")[0]["records_out"] == 0, "nothing is emitted twice"
        assert fb.stop() == 0, fb.tail()
    objects = read_bucket(moto_server, bucket)
    check_alerts([line for lines in objects.values() for line in lines], tenant)


@pytest.mark.parametrize("suffix", [".conf", ".yaml"])
def test_flow2_a_missing_bucket_loses_nothing(fluent_bit_path, moto_server, tenant, tmp_path, suffix) -> None:
    """The bucket does not exist during the first cycles. harmony-events has written (and moved
    its cursor past) the run's events by the time s3-batch learns the bucket is missing, so
    s3-batch must keep them: it spools the run and exits 4 (Fluent Bit only logs it). Once the
    bucket exists, the next cycle uploads the spooled object: every alert exactly once.
    (Before s3-batch spooled on a refused destination, this lost every alert of the run.)"""
    import boto3

    bucket = f"fb-late-{uuid.uuid4().hex[:10]}"
    env = chain_env(tenant, tmp_path, moto_server, bucket)
    (tmp_path / "receipts").mkdir()
    old, new = INTERVAL[suffix]
    with FluentBit(fluent_bit_path, f"harmony-chain-to-s3{suffix}", tmp_path, env, {old: new}) as fb:
        fb.wait_until(lambda: len(fb.stats_lines("s3-batch")) >= 1, 40, "the first cycle")
        assert f"'{bucket}' does not exist" in fb.stderr, fb.tail()
        assert fb.stats_lines("harmony-alerts")[0]["records_out"] == len(tenant["expected"])
        assert not read_ndjson(tmp_path / "receipts" / "s3-receipts.ndjson")
        boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=bucket)

        def delivered() -> int:
            return sum(r["records"] for r in read_ndjson(tmp_path / "receipts" / "s3-receipts.ndjson"))

        fb.wait_until(lambda: delivered() >= len(tenant["expected"]), 40, "the spooled alerts")
        runs = len(fb.stats_lines("harmony-alerts"))
        fb.wait_until(lambda: len(fb.stats_lines("harmony-alerts")) > runs, 40, "one more cycle")
        assert fb.stop() == 0, fb.tail()
    assert all(s["records_out"] == 0 for s in fb.stats_lines("harmony-alerts")[1:]), "nothing emitted twice"
    objects = read_bucket(moto_server, bucket)
    assert len(objects) == 1, list(objects)
    check_alerts(next(iter(objects.values())), tenant)
    receipts = read_ndjson(tmp_path / "receipts" / "s3-receipts.ndjson")
    assert [r["key"] for r in receipts] == list(objects)
