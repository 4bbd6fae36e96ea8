"""Issue 11, case 4: an S3 failure only a person can fix ends the run, mid-run, over real HTTP.

The sink starts well (its start-up check passes, objects are stored), then the destination turns
hostile while stdin is still open: the bucket is deleted (moto), the user's policy starts to
deny PutObject or its access key is deleted (moto with IAM enforced), the session token expires
or the signature stops matching (the S3 double; moto cannot switch those on mid-run). The sink
must end by itself with exit 3 or 4 and one line with the cause and the fix — not retry forever
and exit 75 — with everything it read committed to the spool, so a run after the fix stores
every record read exactly once. A key the store refuses (KeyTooLongError) only sets that object
aside (quarantine/); the others are stored and the run ends 0.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import AWS_TEST_ENV, run_cli
from tests.helpers.logs import error_lines
from tests.helpers.s3 import (
    Feeder,
    KillAt,
    SinkWatch,
    all_records,
    aws_env,
    decode_body,
    s3_client,
    start_sink,
)
from tests.helpers.s3_aws import ALLOW_ALL, AuthMoto, S3Double

pytestmark = pytest.mark.integration

RECORDS = 20_000
SINK_ARGS = [
    "--max-records",
    "40",
    "--max-age-secs",
    "0.2",
    "--fsync-interval-ms",
    "20",
    "--retry-max-delay-secs",
    "0.2",
    "--flush-idle-ms",
    "50",
]


def records(count: int = RECORDS) -> bytes:
    return b"".join(orjson.dumps({"i": i, "pad": "x" * 40}) + b"\n" for i in range(count))


def run_until_it_stops(args: list[str], env: dict[str, str], turn_hostile: Callable[[], None]) -> dict[str, Any]:
    """Stream records (stdin never closed), turn the destination hostile after 2 receipts, and
    wait for the sink to end on its own; returns its exit code, stderr lines, stats, receipts."""
    proc = start_sink(args, env)
    watch = SinkWatch(proc, KillAt("receipts", 2))
    feeder = Feeder(proc.stdin, records(), slice_bytes=1024, pause_secs=0.02, close=False)  # ~25 s of input
    feeder.start()
    assert watch.fired.wait(60), "no receipts:\n" + "\n".join(watch.err_lines[-20:])
    turn_hostile()
    try:
        code = proc.wait(60)
    except Exception:
        proc.kill()
        proc.wait()
        pytest.fail("the sink kept running after a fatal error:\n" + "\n".join(watch.err_lines[-20:]))
    watch.join()
    stats_lines = [line for line in watch.err_lines if line.startswith('{"stats"')]
    assert len(stats_lines) == 1, watch.err_lines
    return {
        "code": code,
        "errors": error_lines("\n".join(watch.err_lines)),
        "stderr": "\n".join(watch.err_lines),
        "stats": orjson.loads(stats_lines[0])["stats"],
        "receipts": list(watch.receipts),
    }


def check_stopped(run: dict[str, Any], exit_code: int, *needles: str) -> int:
    assert run["code"] == exit_code, run["stderr"]
    assert len(run["errors"]) == 1, run["stderr"]
    line = run["errors"][0]
    assert " — " in line and "objects wait in the spool" in line and "run s3-batch again" in line, line
    for needle in needles:
        assert needle in line, line
    assert "not delivered within" not in run["stderr"] and "Traceback" not in run["stderr"]
    stats = run["stats"]
    assert stats["records_in"] < RECORDS, "it ended while input was still coming"
    assert stats["records_accepted"] == stats["records_in"], "everything read is committed"
    return stats["records_in"]


def numbers(records_list: list[dict[str, Any]]) -> list[int]:
    return sorted(r["i"] for r in records_list)


@pytest.mark.xdist_group("s3-moto")
def test_bucket_deleted_mid_run_ends_with_exit_4(moto_server: str, tmp_path: Path) -> None:
    bucket = f"gone-{uuid.uuid4().hex[:10]}"
    s3 = s3_client(moto_server)
    s3.create_bucket(Bucket=bucket)
    spool = str(tmp_path / "spool")
    args = ["--dest", f"s3://{bucket}/p/", "--spool-dir", spool, *SINK_ARGS]
    saved: list[dict[str, Any]] = []

    def delete_bucket() -> None:
        for _ in range(50):  # objects keep landing while we empty it
            for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                saved.extend(decode_body(body, item["Key"]))
                s3.delete_object(Bucket=bucket, Key=item["Key"])
            try:
                s3.delete_bucket(Bucket=bucket)
                return
            except s3.exceptions.ClientError:
                continue
        pytest.fail("could not delete the bucket")

    run = run_until_it_stops(args, aws_env(moto_server), delete_bucket)
    read = check_stopped(run, 4, "does not exist", "NoSuchBucket", "create it")
    s3.create_bucket(Bucket=bucket)
    again = run_cli(["s3-batch", *args], b"", env=aws_env(moto_server))
    assert again.returncode == 0, again.stderr
    objects = {
        item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    }
    assert numbers(saved + all_records(objects)) == list(range(read)), "every record read, exactly once"


@pytest.fixture(scope="module")
def auth_moto():
    server = AuthMoto()
    yield server
    server.close()


def auth_env(server: AuthMoto, creds: dict[str, str]) -> dict[str, str]:
    return {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": server.endpoint, **AuthMoto.env(creds)}


def read_auth_bucket(server: AuthMoto, bucket: str) -> dict[str, bytes]:
    s3 = server.client("s3")
    return {
        item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    }


@pytest.mark.parametrize("how", ["deny-policy", "deleted-access-key"])
def test_credentials_refused_mid_run_end_with_exit_3(auth_moto: AuthMoto, tmp_path: Path, how: str) -> None:
    bucket = f"auth-{uuid.uuid4().hex[:10]}"
    auth_moto.client("s3").create_bucket(Bucket=bucket)
    user = f"writer-{uuid.uuid4().hex[:6]}"
    creds = auth_moto.user(user, ALLOW_ALL)
    iam = auth_moto.client("iam")
    spool = str(tmp_path / "spool")
    args = ["--dest", f"s3://{bucket}/p/", "--spool-dir", spool, *SINK_ARGS]
    deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*"}]}

    def turn_hostile() -> None:
        if how == "deny-policy":
            iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(deny))
        else:
            iam.delete_access_key(UserName=user, AccessKeyId=creds["aws_access_key_id"])

    run = run_until_it_stops(args, auth_env(auth_moto, creds), turn_hostile)
    needles = ("access denied", "grant s3:PutObject") if how == "deny-policy" else ("InvalidAccessKeyId",)
    read = check_stopped(run, 3, *needles)
    assert creds["aws_access_key_id"] not in run["stderr"] and creds["aws_secret_access_key"] not in run["stderr"]
    again = run_cli(["s3-batch", *args], b"", env=auth_env(auth_moto, auth_moto.admin))
    assert again.returncode == 0, again.stderr
    assert numbers(all_records(read_auth_bucket(auth_moto, bucket))) == list(range(read))


@pytest.mark.parametrize(
    ("code", "needle"), [("ExpiredToken", "renew"), ("SignatureDoesNotMatch", "secret access key")]
)
def test_token_expired_or_signature_refused_mid_run_end_with_exit_3(tmp_path: Path, code: str, needle: str) -> None:
    double = S3Double("fail-after", fail_after=3, fail_code=code)
    try:
        spool = str(tmp_path / "spool")
        args = ["--dest", "s3://double-bucket/p/", "--spool-dir", spool, *SINK_ARGS]
        env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": double.endpoint}
        run = run_until_it_stops(args, env, lambda: None)  # the 4th PUT is refused
        read = check_stopped(run, 3, code, needle)
        double.fail_after = 1 << 30  # credentials renewed
        again = run_cli(["s3-batch", *args], b"", env=env)
        assert again.returncode == 0, again.stderr
        assert numbers(all_records(double.objects)) == list(range(read))
    finally:
        double.close()


def test_a_key_s3_refuses_sets_that_object_aside_and_the_rest_is_stored(tmp_path: Path) -> None:
    double = S3Double("refuse-keys", refuse_marker="refuse")
    try:
        spool = tmp_path / "spool"
        data = b"".join(orjson.dumps({"i": i, "t": ("ok", "refuse", "fine")[i % 3]}) + b"\n" for i in range(30))
        args = ["--dest", "s3://double-bucket/p/", "--spool-dir", str(spool), "--key-template"]
        args += ["{prefix}{field:t}/{hash}{ext}", "--retry-max-delay-secs", "0.2"]
        env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": double.endpoint}
        result = run_cli(["s3-batch", *args], data, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stats["objects_quarantined"] == 1 and "KeyTooLongError" in result.stderr
        stored = all_records(double.objects)
        assert numbers(stored) == [i for i in range(30) if i % 3 != 1]
        (kept,) = (spool / "quarantine").glob("*.body")
        assert [r["i"] for r in decode_body(kept.read_bytes(), "x.ndjson.gz")] == list(range(1, 30, 3))
        status = run_cli(["s3-batch", "status", "--spool-dir", str(spool)])
        (row,) = [orjson.loads(line) for line in status.stdout_lines]
        assert (row["backlog_objects"], row["quarantined_objects"]) == (0, 1)
    finally:
        double.close()


@pytest.mark.xdist_group("s3-moto")
def test_a_fatal_error_while_draining_at_end_of_input_is_not_75(moto_server: str, tmp_path: Path) -> None:
    """Without the start-up check, the first upload meets the missing bucket only at the end."""
    args = ["s3-batch", "--dest", f"s3://never-made-{uuid.uuid4().hex[:8]}/p/", "--spool-dir", str(tmp_path / "s")]
    result = run_cli([*args, "--no-startup-check", "--drain-timeout-secs", "20"], records(30), env=aws_env(moto_server))
    assert result.returncode == 4, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "NoSuchBucket" in errors[0] and "1 objects wait in the spool" in errors[0]
    assert result.stats["elapsed_secs"] < 15, "it does not wait out the drain timeout"
