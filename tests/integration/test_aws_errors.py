"""_core/aws against real servers: moto with IAM enforced (real wrong keys, signatures, denials),
the shared moto server (assume role, refresh, AWS_ENDPOINT_URL), and an S3 double for what moto
cannot produce (bucket in another region, SlowDown, ExpiredToken)."""

from __future__ import annotations

import json
import uuid

import pytest

from harmony_pipes._core.aws import classify_aws_error, make_client, make_session
from harmony_pipes._core.errors import ExitCode
from tests.conftest import AWS_TEST_ENV
from tests.helpers.s3_aws import AuthMoto, S3Double

pytestmark = pytest.mark.integration

SECRET_MARK = "sEcReT-must-not-leak-0123456789"


@pytest.fixture(autouse=True)
def dummy_credentials(monkeypatch):
    """Every test starts from the dummy test credentials, whatever ran before it."""
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def auth_moto():
    server = AuthMoto()
    server.client("s3").create_bucket(Bucket="auth-errors")
    yield server
    server.close()


def failure_of(call, **classify_kwargs):
    try:
        call()
    except Exception as exc:
        return classify_aws_error(exc, **classify_kwargs)
    pytest.fail("the call succeeded")


def put(server, creds, bucket="auth-errors"):
    s3 = server.client("s3", creds)
    return lambda: s3.put_object(Bucket=bucket, Key="k.json", Body=b"{}")


def test_invalid_access_key_id_for_real(auth_moto):
    creds = {"aws_access_key_id": "AKIAIOSFODNN7NOTREAL", "aws_secret_access_key": SECRET_MARK}
    s3_error = failure_of(put(auth_moto, creds), what="write s3://auth-errors/k.json", bucket="auth-errors")
    assert s3_error.exit_code == ExitCode.AUTH
    assert "InvalidAccessKeyId" in s3_error.one_line()
    sts = auth_moto.client("sts", creds)
    sts_error = failure_of(sts.get_caller_identity, what="credentials check")
    assert (sts_error.exit_code, "InvalidClientTokenId" in sts_error.message) == (ExitCode.AUTH, True)
    ec2 = auth_moto.client("ec2", creds)
    ec2_error = failure_of(ec2.describe_instances, what="describe instances")
    assert (ec2_error.exit_code, "AuthFailure" in ec2_error.message) == (ExitCode.AUTH, True)
    for error in (s3_error, sts_error, ec2_error):
        line = error.one_line()
        assert "\n" not in line and SECRET_MARK not in line and "AKIAIOSFODNN7NOTREAL" not in line
        assert "AWS_ACCESS_KEY_ID" in line


def test_signature_does_not_match_for_real(auth_moto):
    creds = {**auth_moto.admin, "aws_secret_access_key": SECRET_MARK}
    error = failure_of(put(auth_moto, creds), what="write", bucket="auth-errors")
    assert error.exit_code == ExitCode.AUTH
    assert "SignatureDoesNotMatch" in error.message
    assert "secret access key does not match" in error.fix
    assert SECRET_MARK not in error.one_line() and auth_moto.admin["aws_access_key_id"] not in error.one_line()


def test_access_denied_names_the_missing_permission(auth_moto):
    creds = auth_moto.user(
        f"readonly-{uuid.uuid4().hex[:6]}",
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}],
        },
    )
    error = failure_of(put(auth_moto, creds), what="write s3://auth-errors/k.json", bucket="auth-errors")
    assert error.exit_code == ExitCode.AUTH
    assert error.one_line() == (
        "Error: write s3://auth-errors/k.json: access denied (AccessDenied: Access Denied) — grant "
        "s3:PutObject on arn:aws:s3:::auth-errors to the caller's IAM policy (see the `policy` subcommand)"
    )
    ec2 = auth_moto.client("ec2", creds)
    ec2_error = failure_of(ec2.describe_instances, what="describe instances in us-east-1")
    assert ec2_error.exit_code == ExitCode.AUTH
    assert "grant ec2:DescribeInstances" in ec2_error.fix


def test_no_such_bucket_is_unreachable(auth_moto):
    error = failure_of(put(auth_moto, None, bucket="auth-errors-missing"), what="write", bucket="auth-errors-missing")
    assert error.exit_code == ExitCode.UNREACHABLE
    assert "bucket 'auth-errors-missing' does not exist (NoSuchBucket" in error.message
    head = auth_moto.client("s3").head_bucket
    head_error = failure_of(lambda: head(Bucket="auth-errors-missing"), what="head", bucket="auth-errors-missing")
    assert head_error.exit_code == ExitCode.UNREACHABLE and "404" in head_error.message


def test_wrong_session_token_for_real(auth_moto):
    role_arn = auth_moto.client("iam").create_role(
        RoleName=f"tok-{uuid.uuid4().hex[:6]}",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
            }
        ),
    )["Role"]["Arn"]
    creds = auth_moto.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="tok")["Credentials"]
    wrong = {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": "FQoGZXIvYXdzE" + "x" * 60,
    }
    error = failure_of(put(auth_moto, wrong), what="write", bucket="auth-errors")
    assert error.exit_code == ExitCode.AUTH and "InvalidToken" in error.message
    assert creds["SecretAccessKey"] not in error.one_line()


def test_assume_role_with_external_id_enforced(auth_moto, monkeypatch):
    caller = auth_moto.user(
        f"assumer-{uuid.uuid4().hex[:6]}",
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}],
        },
    )
    caller_arn = auth_moto.client("sts", caller).get_caller_identity()["Arn"]
    role_name = f"writer-{uuid.uuid4().hex[:6]}"
    iam = auth_moto.client("iam")
    role_arn = iam.create_role(
        RoleName=role_name,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": caller_arn},
                        "Action": "sts:AssumeRole",
                        "Condition": {"StringEquals": {"sts:ExternalId": "ext-4711"}},
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=role_name,
        PolicyName="write",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}],
            }
        ),
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", caller["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", caller["aws_secret_access_key"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    with pytest.raises(Exception) as refused:
        make_session(role_arn=role_arn, external_id="wrong-id", endpoint_url=auth_moto.endpoint, region="us-east-1")
    assert refused.value.exit_code == ExitCode.AUTH
    assert f"assume role {role_arn}: access denied" in refused.value.message
    assert "sts:ExternalId" in refused.value.fix
    session = make_session(
        role_arn=role_arn, external_id="ext-4711", endpoint_url=auth_moto.endpoint, region="us-east-1"
    )
    s3 = make_client(session, "s3", endpoint_url=auth_moto.endpoint)
    s3.put_object(Bucket="auth-errors", Key="as-role.json", Body=b"{}")  # the role's permission applies
    identity = make_client(session, "sts", endpoint_url=auth_moto.endpoint)
    with pytest.raises(Exception) as denied:
        identity.get_caller_identity() if False else s3.delete_object(Bucket="auth-errors", Key="as-role.json")
    error = classify_aws_error(denied.value, what="delete", bucket="auth-errors")
    assert error.exit_code == ExitCode.AUTH and "s3:DeleteObject" in error.fix


def test_assumed_role_credentials_refresh_before_expiry(moto_server):
    session = make_session(
        role_arn="arn:aws:iam::111122223333:role/refresh-me",
        external_id="x-1",
        endpoint_url=moto_server,
        region="us-east-1",
        duration_secs=900,  # inside botocore's 15-minute advisory window: every use refreshes
    )
    credentials = session.get_credentials()
    assert credentials.method == "assume-role"
    first = credentials.get_frozen_credentials().access_key
    second = credentials.get_frozen_credentials().access_key
    assert first != second  # botocore called AssumeRole again before expiry
    sts = make_client(session, "sts", endpoint_url=moto_server)
    assert sts.get_caller_identity()["Arn"] == "arn:aws:sts::111122223333:assumed-role/refresh-me/harmony-pipes"
    long_lived = make_session(role_arn="arn:aws:iam::111122223333:role/keep", endpoint_url=moto_server)
    creds = long_lived.get_credentials()
    assert creds.get_frozen_credentials().access_key == creds.get_frozen_credentials().access_key


def test_aws_endpoint_url_env_is_honoured(moto_server, monkeypatch):
    bucket = f"env-endpoint-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    s3 = make_client(make_session(region="us-east-1"), "s3")
    s3.create_bucket(Bucket=bucket)
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    session = make_session(role_arn="arn:aws:iam::111122223333:role/env", region="us-east-1")
    assert make_client(session, "sts").get_caller_identity()["Account"] == "111122223333"


def test_no_and_partial_credentials(moto_server, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    sts = make_client(make_session(region="us-east-1"), "sts", endpoint_url=moto_server)
    error = failure_of(sts.get_caller_identity, what="credentials check")
    assert error.exit_code == ExitCode.AUTH
    assert error.one_line().startswith("Error: credentials check: no usable AWS credentials")
    assert "set AWS_PROFILE" in error.fix
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAONLYTHEKEYID0000")
    error = failure_of(lambda: make_session(region="us-east-1").client("sts").get_caller_identity(), what="check")
    assert error.exit_code == ExitCode.AUTH and "AKIAONLYTHEKEYID0000" not in error.one_line()
    with pytest.raises(Exception) as missing_profile:
        make_session(profile="no-such-profile")
    assert missing_profile.value.exit_code == ExitCode.USAGE


def test_endpoint_unreachable():
    session = make_session(region="us-east-1")
    s3 = make_client(session, "s3", endpoint_url="http://127.0.0.1:9", max_attempts=1)
    error = failure_of(lambda: s3.head_bucket(Bucket="any-bucket"), what="HeadBucket s3://any-bucket")
    assert error.exit_code == ExitCode.UNREACHABLE
    assert "cannot connect to http://127.0.0.1:9" in error.message and "--endpoint-url" in error.fix


def test_upload_file_wrapper_is_unwrapped(moto_server, tmp_path):
    """boto3's managed transfer raises S3UploadFailedError; the cause inside is what counts."""
    body = tmp_path / "body.json"
    body.write_bytes(b"{}\n")
    s3 = make_client(make_session(region="us-east-1"), "s3", endpoint_url=moto_server)
    error = failure_of(
        lambda: s3.upload_file(str(body), "upload-file-missing-bucket", "k.json"),
        what="upload",
        bucket="upload-file-missing-bucket",
    )
    assert error.exit_code == ExitCode.UNREACHABLE and "NoSuchBucket" in error.message


@pytest.mark.parametrize(
    ("mode", "code", "needle"),
    [
        ("region", ExitCode.UNREACHABLE, "use --region eu-west-1"),
        ("slowdown", ExitCode.TEMPFAIL, "try again later"),
        ("expired", ExitCode.AUTH, "renew the session"),
    ],
)
def test_errors_moto_cannot_produce(mode, code, needle):
    double = S3Double(mode)
    try:
        s3 = make_client(make_session(region="us-east-1"), "s3", endpoint_url=double.endpoint, max_attempts=2)
        error = failure_of(
            lambda: s3.put_object(Bucket="elsewhere", Key="k", Body=b"x"), what="write", bucket="elsewhere"
        )
    finally:
        double.close()
    assert error.exit_code == code
    assert needle in error.fix
    if mode == "region":
        assert error.message == (
            "write: bucket 'elsewhere' is in region eu-west-1, not the configured one (PermanentRedirect: "
            "The bucket you are attempting to access must be addressed using the specified endpoint. "
            "Please send all future requests to this endpoint.)"
        )


def test_s3_and_sts_work_without_a_configured_region(moto_server, monkeypatch, tmp_path):
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    session = make_session()
    assert session.region_name is None
    s3 = make_client(session, "s3", endpoint_url=moto_server)
    assert s3.meta.region_name == "us-east-1"
    assert make_client(session, "sts", endpoint_url=moto_server).get_caller_identity()["Account"]
    error = failure_of(
        lambda: make_client(session, "ec2", endpoint_url=moto_server).describe_regions(),
        what="describe regions",
    )
    assert error.exit_code == ExitCode.USAGE and "--region" in error.fix
