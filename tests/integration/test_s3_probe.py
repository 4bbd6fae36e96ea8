"""`s3-batch test` and `s3-batch policy`: the probe against real servers and the policy applied
to a real (moto, IAM enforced) user."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from harmony_pipes._core.errors import ConfigError, ExitCode
from harmony_pipes.s3_batch.probe import PROBE_DIR, parse_dest, policy_document, render_policy, run_test
from harmony_pipes.s3_batch.stores import parse_destinations
from tests.conftest import run_cli
from tests.helpers.s3_aws import AuthMoto, S3Double

pytestmark = pytest.mark.integration

BUCKET = "probe-tests"


@pytest.fixture(scope="module")
def auth_moto():
    server = AuthMoto()
    server.client("s3").create_bucket(Bucket=BUCKET)
    yield server
    server.close()


@pytest.fixture
def as_user(monkeypatch):
    """Point the default credential chain at a given key pair for this test."""

    def use(creds: dict[str, str] | None) -> None:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            monkeypatch.delenv(name, raising=False)
        if creds:
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["aws_access_key_id"])
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["aws_secret_access_key"])

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return use


def probe(url: str, **kwargs) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = run_test(url, emit=lines.append, **kwargs)
    return code, lines


def objects(server: AuthMoto, prefix: str) -> list[str]:
    listing = server.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


# ---- policy -------------------------------------------------------------------------------------


def test_policy_is_least_privilege_json():
    policy = json.loads(render_policy("s3://logs-bucket/harmony/audit/"))
    assert policy == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListTheDestinationPrefix",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "arn:aws:s3:::logs-bucket",
                "Condition": {"StringLike": {"s3:prefix": ["harmony/audit/", "harmony/audit/*"]}},
            },
            {
                "Sid": "WriteObjectsUnderThePrefix",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                "Resource": "arn:aws:s3:::logs-bucket/harmony/audit/*",
            },
            {
                "Sid": "DeleteOnlyTestProbes",
                "Effect": "Allow",
                "Action": "s3:DeleteObject",
                "Resource": f"arn:aws:s3:::logs-bucket/harmony/audit/{PROBE_DIR}/*",
            },
        ],
    }


def test_policy_without_prefix_and_with_kms():
    policy = policy_document(
        "s3://whole-bucket", sse_kms_key_id="1234abcd-12ab-34cd-56ef-1234567890ab", region="eu-west-1"
    )
    listing, write, _delete, kms = policy["Statement"]
    assert "Condition" not in listing
    assert write["Resource"] == "arn:aws:s3:::whole-bucket/*"
    assert kms["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]
    assert kms["Resource"] == "arn:aws:kms:eu-west-1:*:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    alias = policy_document("s3://b1b/p/", sse_kms_key_id="alias/logs")["Statement"][-1]
    assert alias["Condition"] == {"StringEquals": {"kms:RequestAlias": "alias/logs"}}


@pytest.mark.parametrize("url", ["file:///tmp/x/", "http://bucket/x", "s3:///nobucket"])
def test_policy_rejects_non_s3(url):
    with pytest.raises(ConfigError):
        render_policy(url)


def test_parse_dest():
    assert parse_dest("audit=s3://b-1/harmony/").prefix == "harmony/"
    assert parse_dest("file:///var/store/").bucket == "/var/store"
    # The probe reads a URL exactly as the sink does (the same parser): a file:// path is a directory.
    assert parse_dest("file:///var/store/pre") == parse_destinations(["file:///var/store/pre"])[0]
    assert parse_dest("file:///var/store/pre").bucket == "/var/store/pre"
    assert parse_dest("s3://b-1/harmony").prefix == "harmony/"


def test_rendered_policy_is_enough_and_no_more(auth_moto, as_user):
    """A user holding exactly the rendered policy passes the probe and can write only under the prefix."""
    creds = auth_moto.user(f"least-{uuid.uuid4().hex[:6]}", policy_document(f"s3://{BUCKET}/harmony/"))
    as_user(creds)
    code, lines = probe(f"s3://{BUCKET}/harmony/", endpoint_url=auth_moto.endpoint)
    assert code == 0, lines
    assert lines[1].startswith(f"ok    bucket: s3://{BUCKET} reachable (listing harmony/ works; HeadBucket is denied")
    assert lines[-1] == f"OK    s3://{BUCKET}/harmony/ is ready for s3-batch"
    assert objects(auth_moto, "harmony/") == []  # the probe cleaned up
    s3 = auth_moto.client("s3", creds)
    with pytest.raises(Exception) as outside:
        s3.put_object(Bucket=BUCKET, Key="elsewhere/x.json", Body=b"{}")
    assert outside.value.response["Error"]["Code"] == "AccessDenied"
    s3.put_object(Bucket=BUCKET, Key="harmony/data.json", Body=b"{}")
    with pytest.raises(Exception) as delete_data:
        s3.delete_object(Bucket=BUCKET, Key="harmony/data.json")
    assert delete_data.value.response["Error"]["Code"] == "AccessDenied"


# ---- test: one line per failure ---------------------------------------------------------------------


def test_probe_ok_against_shared_moto(moto_server, as_user):
    as_user({"aws_access_key_id": "testing", "aws_secret_access_key": "testing"})
    bucket = f"probe-ok-{uuid.uuid4().hex[:8]}"
    import boto3

    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    code, lines = probe(f"s3://{bucket}/p/", endpoint_url=moto_server, sse="AES256", storage_class="STANDARD_IA")
    assert code == 0
    assert [line.split(":")[0] for line in lines] == [
        "ok    credentials",
        "ok    bucket",
        "ok    write",
        "ok    delete",
        "OK    s3",
    ]


def single_error(lines: list[str]) -> str:
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], lines
    assert " — " in errors[0]
    return errors[0]


def test_no_credentials(auth_moto, as_user, monkeypatch, tmp_path):
    as_user(None)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    code, lines = probe(f"s3://{BUCKET}/harmony/", endpoint_url=auth_moto.endpoint)
    assert code == ExitCode.AUTH
    assert "no usable AWS credentials" in single_error(lines)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda c: {**c, "aws_access_key_id": "AKIAIOSFODNN7NOTREAL"}, "InvalidClientTokenId"),
        (lambda c: {**c, "aws_secret_access_key": "wrong-secret"}, "SignatureDoesNotMatch"),
    ],
)
def test_refused_credentials(auth_moto, as_user, mutate, needle):
    as_user(mutate(auth_moto.admin))
    code, lines = probe(f"s3://{BUCKET}/harmony/", endpoint_url=auth_moto.endpoint)
    assert code == ExitCode.AUTH
    line = single_error(lines)
    assert needle in line and "wrong-secret" not in line and "AKIAIOSFODNN7NOTREAL" not in line


def test_invalid_access_key_id_seen_by_s3(auth_moto, as_user, monkeypatch):
    """With STS elsewhere (or absent) the S3 calls judge the key: InvalidAccessKeyId."""
    as_user({**auth_moto.admin, "aws_access_key_id": "AKIAIOSFODNN7NOTREAL"})
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", auth_moto.endpoint)
    double = S3Double("region")  # STS elsewhere: the double answers GetCallerIdentity for any key
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", double.endpoint)
    try:
        code, lines = probe(f"s3://{BUCKET}/harmony/")
    finally:
        double.close()
    assert code == ExitCode.AUTH
    assert "InvalidAccessKeyId" in single_error(lines)


def test_access_denied_names_put_object(auth_moto, as_user):
    listing_only = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:ListBucket", "s3:HeadBucket"], "Resource": "*"}],
    }
    as_user(auth_moto.user(f"list-{uuid.uuid4().hex[:6]}", listing_only))
    code, lines = probe(f"s3://{BUCKET}/harmony/", endpoint_url=auth_moto.endpoint)
    assert code == ExitCode.AUTH
    assert f"grant s3:PutObject on arn:aws:s3:::{BUCKET}" in single_error(lines)


def test_delete_denied_says_writing_works(auth_moto, as_user):
    policy = policy_document(f"s3://{BUCKET}/nodelete/")
    policy["Statement"] = policy["Statement"][:2]
    as_user(auth_moto.user(f"nodel-{uuid.uuid4().hex[:6]}", policy))
    code, lines = probe(f"s3://{BUCKET}/nodelete/", endpoint_url=auth_moto.endpoint)
    assert code == ExitCode.AUTH
    line = single_error(lines)
    assert "writing works; grant s3:DeleteObject on" in line and f"nodelete/{PROBE_DIR}/*" in line


def test_no_such_bucket(auth_moto, as_user):
    as_user(auth_moto.admin)
    code, lines = probe("s3://probe-missing-bucket/x/", endpoint_url=auth_moto.endpoint)
    assert code == ExitCode.UNREACHABLE
    assert "bucket 'probe-missing-bucket' does not exist" in single_error(lines)


@pytest.mark.parametrize(
    ("mode", "code", "needle"),
    [("region", ExitCode.UNREACHABLE, "use --region eu-west-1"), ("slowdown", ExitCode.TEMPFAIL, "SlowDown")],
)
def test_wrong_region_and_throttled(as_user, mode, code, needle):
    as_user({"aws_access_key_id": "testing", "aws_secret_access_key": "testing"})
    double = S3Double(mode)
    try:
        got, lines = probe("s3://elsewhere/x/", endpoint_url=double.endpoint)
    finally:
        double.close()
    assert got == code
    line = single_error(lines)
    assert needle in line or (mode == "slowdown" and "503" in line)


def test_endpoint_unreachable(as_user):
    as_user({"aws_access_key_id": "testing", "aws_secret_access_key": "testing"})
    code, lines = probe("s3://any-bucket/x/", endpoint_url="http://127.0.0.1:9")
    assert code == ExitCode.UNREACHABLE
    assert "cannot connect to http://127.0.0.1:9" in single_error(lines)


# ---- file:// ------------------------------------------------------------------------------------------


def test_file_store_ok(tmp_path):
    code, lines = probe(f"file://{tmp_path}/")
    assert code == 0 and lines[-1] == f"OK    file://{tmp_path}/ is ready for s3-batch"
    assert list(tmp_path.iterdir()) == []


def test_file_store_missing_or_not_a_directory(tmp_path):
    # A missing directory is created, as the sink creates it on its first object; the probe leaves it empty.
    code, lines = probe(f"file://{tmp_path}/new/store/")
    assert code == ExitCode.OK, lines
    assert f"ok    directory: {tmp_path}/new/store created" in lines
    assert list((tmp_path / "new" / "store").iterdir()) == []
    (tmp_path / "afile").write_text("x")
    code, lines = probe(f"file://{tmp_path}/afile/")
    assert code == ExitCode.UNREACHABLE and "is not a directory" in single_error(lines)


def test_file_store_not_writable(tmp_path):
    if os.geteuid() == 0:  # root ignores permission bits; sysfs refuses new files even to root
        code, lines = probe("file:///sys/")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        try:
            code, lines = probe(f"file://{locked}/")
        finally:
            locked.chmod(0o700)
    assert code == ExitCode.AUTH
    line = single_error(lines)
    assert line.startswith("Error: write probe file: ") and "fix the directory's owner/permissions" in line


def test_bad_urls_are_usage_errors():
    for url in ("ftp://x/y", "file://host/dir/", "s3:///x"):
        code, lines = probe(url)
        assert code == ExitCode.USAGE, url
        single_error(lines)


# ---- through the CLI (once plugins/s3_batch/cli.py wires `test` and `policy`) ------------------------------


def cli_has(subcommand: str) -> bool:
    result = run_cli(["s3-batch", subcommand, "--help"]) if os.path.exists(_cli_file()) else None
    return result is not None and result.returncode == 0


def _cli_file() -> str:
    import harmony_pipes.s3_batch as pkg

    return os.path.join(os.path.dirname(pkg.__file__), "cli.py")


def test_cli_test_and_policy(moto_server, aws_env, tmp_path):
    if not (cli_has("test") and cli_has("policy")):
        pytest.skip("s3-batch cli has no `test`/`policy` subcommands yet")
    bucket = f"probe-cli-{uuid.uuid4().hex[:8]}"
    import boto3

    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    ok = run_cli(["s3-batch", "test", "--dest", f"s3://{bucket}/h/"], env=aws_env)
    assert ok.returncode == 0, ok.stderr
    assert f"s3://{bucket}/h/ is ready for s3-batch" in ok.stdout.decode() + ok.stderr
    missing = run_cli(["s3-batch", "test", "--dest", "s3://probe-cli-missing/h/"], env=aws_env)
    assert missing.returncode == ExitCode.UNREACHABLE
    assert [line for line in missing.stderr.splitlines() if line.startswith("Error:")] == [
        "Error: HeadBucket s3://probe-cli-missing: bucket 'probe-cli-missing' does not exist "
        "(404: Not Found) — create it, or fix the bucket name in --dest "
        "(and --endpoint-url for S3-compatible stores)"
    ]
    unreachable = run_cli(
        ["s3-batch", "test", "--dest", f"s3://{bucket}/h/"],
        env={**aws_env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
    )
    assert unreachable.returncode == ExitCode.UNREACHABLE
    local = run_cli(["s3-batch", "test", "--dest", f"file://{tmp_path}/"])
    assert local.returncode == 0
    policy = run_cli(["s3-batch", "policy", "--dest", f"s3://{bucket}/h/"])
    assert policy.returncode == 0
    assert json.loads(policy.stdout) == policy_document(f"s3://{bucket}/h/")
