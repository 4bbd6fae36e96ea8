"""classify_aws_error as a pure function: every documented mapping, one line, nothing secret.

Live responses (moto with IAM enforced, the S3 double) are in tests/integration/test_aws_errors.py;
this table covers the codes a real AWS account returns that no local server produces.
"""

from __future__ import annotations

import pytest
from botocore import exceptions as bx

from harmony_pipes._core.aws import classify_aws_error
from harmony_pipes._core.errors import AuthError, ExitCode, ItemRefused


def client_error(code: str, message: str = "", status: int = 400, operation: str = "PutObject", **headers):
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers},
    }
    return bx.ClientError(response, operation)


@pytest.mark.parametrize(
    ("code", "status", "operation", "exit_code", "fix_part", "retryable"),
    [
        ("InvalidAccessKeyId", 403, "PutObject", ExitCode.AUTH, "AWS_ACCESS_KEY_ID", False),
        ("SignatureDoesNotMatch", 403, "PutObject", ExitCode.AUTH, "secret access key", False),
        ("ExpiredToken", 400, "PutObject", ExitCode.AUTH, "renew the session", False),
        ("ExpiredTokenException", 400, "DescribeInstances", ExitCode.AUTH, "renew the session", False),
        ("UnrecognizedClientException", 400, "GetCallerIdentity", ExitCode.AUTH, "not valid", False),
        ("AuthFailure", 401, "DescribeInstances", ExitCode.AUTH, "could not validate", False),
        ("AccessDenied", 403, "PutObject", ExitCode.AUTH, "grant s3:PutObject on arn:aws:s3:::logs", False),
        ("UnauthorizedOperation", 403, "DescribeVpcs", ExitCode.AUTH, "grant ec2:DescribeVpcs", False),
        ("AccessDenied", 403, "AssumeRole", ExitCode.AUTH, "trust policy", False),
        ("NoSuchBucket", 404, "PutObject", ExitCode.UNREACHABLE, "create it", False),
        ("AuthorizationHeaderMalformed", 400, "PutObject", ExitCode.UNREACHABLE, "--region", False),
        ("SlowDown", 503, "PutObject", ExitCode.TEMPFAIL, "try again later", True),
        ("Throttling", 400, "AssumeRole", ExitCode.TEMPFAIL, "try again later", True),
        ("RequestLimitExceeded", 503, "DescribeInstances", ExitCode.TEMPFAIL, "adaptive", True),
        ("InternalError", 500, "PutObject", ExitCode.TEMPFAIL, "try again later", True),
        ("RequestTimeout", 400, "PutObject", ExitCode.TEMPFAIL, "try again later", True),
        ("BadGateway", 502, "PutObject", ExitCode.TEMPFAIL, "try again later", True),
        ("InvalidArgument", 400, "PutObject", ExitCode.USAGE, "--storage-class", False),
        ("EntityTooSmall", 400, "CompleteMultipartUpload", ExitCode.USAGE, "the request is invalid", False),
        ("KeyTooLongError", 400, "PutObject", ExitCode.USAGE, "--key-template", False),
    ],
)
def test_client_error_table(code, status, operation, exit_code, fix_part, retryable):
    error = classify_aws_error(client_error(code, "msg", status, operation), what="op", bucket="logs")
    assert error.exit_code == exit_code
    assert error.retryable is retryable
    assert code in error.message
    if fix_part:
        assert fix_part in error.fix
    assert "\n" not in error.one_line()


def test_a_refused_key_is_an_item_refusal_not_a_fatal_error():
    error = classify_aws_error(client_error("KeyTooLongError", "Your key is too long"), what="w", bucket="b")
    assert isinstance(error, ItemRefused) and not error.retryable


def test_wrong_region_from_header_and_from_message():
    moved = client_error("PermanentRedirect", "", 301, **{"x-amz-bucket-region": "ap-southeast-2"})
    assert (
        classify_aws_error(moved, what="w", bucket="b").fix
        == "use --region ap-southeast-2 (or AWS_REGION=ap-southeast-2)"
    )
    malformed = client_error(
        "AuthorizationHeaderMalformed",
        "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-central-1'",
    )
    error = classify_aws_error(malformed, what="w", bucket="b")
    assert error.exit_code == ExitCode.UNREACHABLE and "--region eu-central-1" in error.fix


def test_secrets_and_key_ids_are_redacted():
    message = (
        "The request signature we calculated does not match. AWSAccessKeyId AKIAIOSFODNN7EXAMPLE "
        "StringToSign QVdTNC1ITUFDLVNIQTI1NgoyMDI0MTEyNVQwMjAwMDBaCjIwMjQxMTI1L3VzLWVhc3QtMS9zMy9hd3M0"
    )
    line = classify_aws_error(client_error("SignatureDoesNotMatch", message), what="w").one_line()
    assert "AKIAIOSFODNN7EXAMPLE" not in line and "QVdTNC1ITUFD" not in line
    assert "<redacted>" in line


def test_long_messages_are_bounded():
    line = classify_aws_error(client_error("InvalidArgument", "x " * 500), what="w").one_line()
    assert len(line) < 400  # the server's text is cut at 240 characters, the fix adds < 100


@pytest.mark.parametrize(
    ("exc", "exit_code", "retryable"),
    [
        (bx.NoCredentialsError(), ExitCode.AUTH, False),
        (bx.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), ExitCode.AUTH, False),
        (bx.ProfileNotFound(profile="x"), ExitCode.USAGE, False),
        (bx.NoRegionError(), ExitCode.USAGE, False),
        (bx.ParamValidationError(report="Invalid bucket name"), ExitCode.USAGE, False),
        (bx.EndpointConnectionError(endpoint_url="https://s3.example"), ExitCode.UNREACHABLE, True),
        (bx.ConnectTimeoutError(endpoint_url="https://s3.example"), ExitCode.UNREACHABLE, True),
        (bx.ReadTimeoutError(endpoint_url="https://s3.example"), ExitCode.TEMPFAIL, True),
        (bx.ConnectionClosedError(endpoint_url="https://s3.example"), ExitCode.TEMPFAIL, True),
        (ValueError("odd"), ExitCode.RUNTIME, True),
    ],
)
def test_botocore_exceptions(exc, exit_code, retryable):
    error = classify_aws_error(exc, what="op")
    assert (error.exit_code, error.retryable) == (exit_code, retryable)


def test_wrapped_errors_use_their_cause_and_pipes_errors_pass_through():
    class S3UploadFailedError(Exception):
        pass

    try:
        try:
            raise client_error("NoSuchBucket", "The specified bucket does not exist", 404)
        except bx.ClientError:
            raise S3UploadFailedError("Failed to upload /spool/x to b/k: An error occurred (NoSuchBucket)") from None
    except S3UploadFailedError as wrapped:
        # `from None` hides the cause from tracebacks but keeps __context__
        assert classify_aws_error(wrapped, what="upload", bucket="b").exit_code == ExitCode.UNREACHABLE
    mine = AuthError("already classified")
    assert classify_aws_error(mine, what="x") is mine


def test_role_session_names_are_made_valid_for_sts():
    from harmony_pipes._core.aws import _session_name

    assert _session_name("s3-batch audit/dest") == "s3-batch-audit-dest"
    assert _session_name("a") == "harmony-pipes"
    assert len(_session_name("x" * 100)) == 64
