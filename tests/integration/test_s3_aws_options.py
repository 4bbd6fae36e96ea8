"""s3-batch's AWS-side options on real servers: SSE-KMS through moto's KMS with --endpoint-url and
--region given as flags, botocore's retry modes retrying inside one attempt (an S3 double that
throttles the first calls), a bucket in another region (exit 4), and bounded memory whatever the
object size (one 65 MB object: multipart into moto, a plain file into file://)."""

from __future__ import annotations

import gzip
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote

import orjson
import pytest

from tests.conftest import AWS_TEST_ENV, command_path, run_cli
from tests.helpers.logs import error_lines
from tests.helpers.s3 import aws_env, make_records, new_bucket, read_bucket, read_file_store, s3_client
from tests.helpers.s3_aws import S3Double

pytestmark = pytest.mark.integration


@pytest.mark.xdist_group("s3-moto")
def test_sse_kms_with_flags_for_endpoint_and_region(moto_server: str, tmp_path: Path) -> None:
    import boto3

    bucket = new_bucket(moto_server)
    kms = boto3.client("kms", endpoint_url=moto_server, region_name="us-east-1")
    key_id = kms.create_key(Description="s3-batch test")["KeyMetadata"]["KeyId"]
    result = run_cli(
        [
            "s3-batch",
            "--dest",
            f"s3://{bucket}/enc/",
            "--endpoint-url",
            moto_server,
            "--region",
            "us-east-1",
            "--sse",
            "aws:kms",
            "--sse-kms-key-id",
            key_id,
            "--storage-class",
            "INTELLIGENT_TIERING",
            "--spool-dir",
            str(tmp_path / "spool"),
        ],
        make_records(50),
        env=AWS_TEST_ENV,  # no AWS_ENDPOINT_URL: the flag alone must lead to moto
    )
    assert result.returncode == 0, result.stderr
    (key,) = read_bucket(moto_server, bucket)
    head = s3_client(moto_server).head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms" and key_id in head["SSEKMSKeyId"]
    assert head["StorageClass"] == "INTELLIGENT_TIERING"
    mismatch = run_cli(["s3-batch", "--dest", f"s3://{bucket}/", "--sse-kms-key-id", key_id], b"")
    assert mismatch.returncode == 2 and "--sse aws:kms" in mismatch.stderr


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
def test_botocore_retry_mode_retries_inside_one_attempt(tmp_path: Path, mode: str) -> None:
    double = S3Double("flaky", fail_first=2)  # two SlowDown answers, then the PUT succeeds
    try:
        data = make_records(5)
        result = run_cli(
            [
                "s3-batch",
                "--dest",
                "s3://flaky/p/",
                "--endpoint-url",
                double.endpoint,
                "--retry-mode",
                mode,
                "--no-startup-check",
                "--spool-dir",
                str(tmp_path / "spool"),
            ],
            data,
            env=AWS_TEST_ENV,
        )
        assert result.returncode == 0, result.stderr
        puts = [r for r in double.requests if r.startswith("PUT ")]
        assert len(puts) == 3, "botocore retried the throttled PUT itself"
        assert result.stats["retries"] == 0 and result.stats["objects"] == 1, "no s3-batch level retry needed"
        (receipt,) = map(orjson.loads, result.stdout_lines)
        stored = {unquote(path): body for path, body in double.objects.items()}
        assert gzip.decompress(stored[f"/flaky/{receipt['key']}"]) == data
    finally:
        double.close()


def test_a_bucket_in_another_region_exits_4_naming_the_region(tmp_path: Path) -> None:
    double = S3Double("region", bucket_region="eu-west-1")
    try:
        result = run_cli(
            [
                "s3-batch",
                "--dest",
                "s3://far-away/p/",
                "--endpoint-url",
                double.endpoint,
                "--region",
                "us-east-1",
                "--spool-dir",
                str(tmp_path / "spool"),
            ],
            b'{"a": 1}\n',
            env=AWS_TEST_ENV,
        )
        assert result.returncode == 4, result.stderr
        errors = error_lines(result.stderr)
        assert len(errors) == 1 and "--region eu-west-1" in errors[0] and "1 objects wait in the spool" in errors[0]
        assert "Traceback" not in result.stderr
    finally:
        double.close()


def peak_rss_mb(argv: list[str], stdin_path: Path, env: dict[str, str] | None = None) -> tuple[int, float]:
    """Run a process with stdin from a file, polling its RSS; (exit code, peak MB)."""
    import os

    import psutil

    with open(stdin_path, "rb") as stdin:
        proc = subprocess.Popen(
            argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})}
        )
        ps = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                peak = max(peak, ps.memory_info().rss)
            except psutil.Error:
                pass
            time.sleep(0.01)
    return proc.returncode, peak / 1024**2


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.ndjson"
    path.write_bytes(make_records(250_000, pad=200))  # ~65 MB, sealed as one object below
    return path


ONE_OBJECT = ["--compression", "none", "--max-records", "10000000", "--max-bytes", "1GiB"]


def test_memory_stays_bounded_for_a_65_mb_object_into_a_file_store(tmp_path: Path, big_input: Path) -> None:
    argv = [command_path("s3-batch"), "--dest", f"file://{tmp_path}/store/", "--spool-dir", str(tmp_path / "s")]
    code, peak = peak_rss_mb([*argv, *ONE_OBJECT], big_input)
    assert code == 0
    ((_key, body),) = read_file_store(tmp_path / "store").items()
    assert len(body) == big_input.stat().st_size
    assert peak < 64, f"peak RSS {peak:.0f} MB: the body must be streamed to disk, not held"


@pytest.mark.xdist_group("s3-moto")
def test_memory_stays_bounded_for_a_65_mb_multipart_upload(moto_server: str, tmp_path: Path, big_input: Path) -> None:
    bucket = new_bucket(moto_server)
    argv = [command_path("s3-batch"), "--dest", f"s3://{bucket}/big/", "--spool-dir", str(tmp_path / "s")]
    code, peak = peak_rss_mb([*argv, *ONE_OBJECT], big_input, env=aws_env(moto_server))
    assert code == 0
    (key,) = read_bucket(moto_server, bucket)
    head = s3_client(moto_server).head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == big_input.stat().st_size and "-" in head["ETag"], "multipart above 16 MiB"
    assert peak < 100, f"peak RSS {peak:.0f} MB: uploads must stream from the spool file in parts"
