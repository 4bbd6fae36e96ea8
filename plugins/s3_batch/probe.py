"""`s3-batch test` (can we write there?) and `s3-batch policy` (the least-privilege IAM policy).

`run_test` walks the path an upload takes and stops at the first failure with one line naming
the cause and the fix: credentials (STS GetCallerIdentity), the bucket (HeadBucket, falling back
to a prefix listing because a prefix-limited policy denies HeadBucket), a probe object written
with the same SSE / storage class as real uploads, and its deletion. The exit code is the DESIGN
one (3 refused, 4 unreachable, 75 throttled, 1 other). `file://` destinations get the same
walk on the local directory.

The probe object lives under `<prefix>.s3-batch-probe/` so the policy can allow DeleteObject
there and nowhere else: s3-batch itself never deletes what it wrote.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import uuid
from collections.abc import Callable
from typing import Any

from harmony_pipes._core.aws import classify_aws_error, make_client, make_session
from harmony_pipes._core.errors import (
    AuthError,
    ConfigError,
    ExitCode,
    PipesError,
    RuntimeFailure,
    TempFailError,
    UnreachableError,
)

from .stores import Destination, parse_destinations

PROBE_DIR = ".s3-batch-probe"
PROBE_BODY = b'{"s3-batch":"probe","note":"safe to delete"}\n'

Emit = Callable[[str], None]


def parse_dest(url: str) -> Destination:
    """The destination exactly as the sink would parse it (an optional `name=` in front is kept)."""
    return parse_destinations([url])[0]


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run_test(
    dest_url: str,
    *,
    profile: str | None = None,
    region: str | None = None,
    role_arn: str | None = None,
    external_id: str | None = None,
    endpoint_url: str | None = None,
    sse: str | None = None,
    sse_kms_key_id: str | None = None,
    storage_class: str | None = None,
    emit: Emit = _stderr,
) -> int:
    """Check that `dest_url` is writable; one line per step on `emit`; returns the exit code."""
    try:
        dest = parse_dest(dest_url)
        if dest.scheme == "file":
            return _test_file(dest, emit)
        return _test_s3(
            dest,
            emit,
            profile=profile,
            region=region,
            role_arn=role_arn,
            external_id=external_id,
            endpoint_url=endpoint_url,
            put_extra=_put_extra(sse, sse_kms_key_id, storage_class),
        )
    except PipesError as exc:
        emit(exc.one_line())
        return int(exc.exit_code)


def _put_extra(sse: str | None, kms_key_id: str | None, storage_class: str | None) -> dict[str, str]:
    extra: dict[str, str] = {}
    if sse:
        if sse not in ("AES256", "aws:kms", "aws:kms:dsse"):
            raise ConfigError(f"unknown --sse {sse!r}", "use AES256 or aws:kms")
        extra["ServerSideEncryption"] = sse
    if kms_key_id:
        if not sse or not sse.startswith("aws:kms"):
            raise ConfigError("--sse-kms-key-id needs --sse aws:kms", "add --sse aws:kms")
        extra["SSEKMSKeyId"] = kms_key_id
    if storage_class:
        extra["StorageClass"] = storage_class
    return extra


def _probe_key(prefix: str) -> str:
    return f"{prefix}{PROBE_DIR}/{uuid.uuid4().hex}.json"


def _test_s3(
    dest: Destination,
    emit: Emit,
    *,
    profile: str | None,
    region: str | None,
    role_arn: str | None,
    external_id: str | None,
    endpoint_url: str | None,
    put_extra: dict[str, str],
) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    quick = {"max_attempts": 2, "connect_timeout_secs": 5, "read_timeout_secs": 15}
    where = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")

    # 1. credentials (and the assumed role, when asked)
    try:
        session = make_session(
            profile=profile,
            region=region,
            role_arn=role_arn,
            external_id=external_id,
            endpoint_url=endpoint_url,
        )
        sts = make_client(session, "sts", region=region, endpoint_url=endpoint_url, **quick)
        identity = sts.get_caller_identity()
        emit(f"ok    credentials: {identity.get('Arn')} (account {identity.get('Account')})")
    except (ClientError, BotoCoreError, PipesError) as exc:
        failure = classify_aws_error(exc, what="credentials check (sts:GetCallerIdentity)")
        if failure.exit_code != ExitCode.RUNTIME or role_arn or not where:
            emit(failure.one_line())
            return int(failure.exit_code)
        # S3-compatible stores often have no STS: let the S3 calls below judge the credentials.
        emit(f"skip  credentials: STS not usable at {where} ({failure.message}); checking with S3 calls")
        session = make_session(profile=profile, region=region)

    s3 = make_client(session, "s3", region=region, endpoint_url=endpoint_url, **quick)
    bucket = dest.bucket

    # 2. the bucket
    try:
        head = s3.head_bucket(Bucket=bucket)
        bucket_region = head.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
        in_region = f", region {bucket_region}" if bucket_region else ""
        emit(f"ok    bucket: s3://{bucket} reachable (HeadBucket{in_region})")
    except (ClientError, BotoCoreError) as exc:
        failure = classify_aws_error(exc, what=f"HeadBucket s3://{bucket}", bucket=bucket)
        if not isinstance(failure, AuthError):
            emit(failure.one_line())
            return int(failure.exit_code)
        # 403 on HEAD has no body: it may be a prefix-limited s3:ListBucket. List the prefix instead.
        try:
            s3.list_objects_v2(Bucket=bucket, Prefix=dest.prefix, MaxKeys=1)
            emit(
                f"ok    bucket: s3://{bucket} reachable (listing {dest.prefix or '/'} works; HeadBucket is "
                "denied, as expected when s3:ListBucket is limited to the prefix)"
            )
        except (ClientError, BotoCoreError) as list_exc:
            failure = classify_aws_error(
                list_exc, what=f"list s3://{bucket}/{dest.prefix} (after HeadBucket 403)", bucket=bucket
            )
            emit(failure.one_line())
            return int(failure.exit_code)

    # 3. write a probe object exactly as an upload would (same SSE and storage class)
    key = _probe_key(dest.prefix)
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=PROBE_BODY, ContentType="application/json", **put_extra)
        emit(f"ok    write: s3://{bucket}/{key} ({len(PROBE_BODY)} bytes)")
    except (ClientError, BotoCoreError) as exc:
        failure = classify_aws_error(exc, what=f"write probe s3://{bucket}/{key}", bucket=bucket)
        emit(failure.one_line())
        return int(failure.exit_code)

    # 4. delete it again
    try:
        s3.delete_object(Bucket=bucket, Key=key)
        emit("ok    delete: probe object removed")
    except (ClientError, BotoCoreError) as exc:
        failure = classify_aws_error(exc, what=f"delete probe s3://{bucket}/{key}", bucket=bucket)
        if isinstance(failure, AuthError):
            failure.fix = (
                f"writing works; grant s3:DeleteObject on arn:aws:s3:::{bucket}/{dest.prefix}{PROBE_DIR}/* "
                "(see `s3-batch policy`) or delete the probe object by hand"
            )
        emit(failure.one_line())
        return int(failure.exit_code)

    emit(f"OK    {dest.url} is ready for s3-batch")
    return int(ExitCode.OK)


def _os_failure(what: str, exc: OSError, path: str) -> PipesError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return AuthError(f"{what}: {reason} ({path})", "fix the directory's owner/permissions or mount")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return TempFailError(f"{what}: {reason} ({path})", "free disk space or raise the quota")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return UnreachableError(
            f"{what}: {reason} ({path})",
            "use a regular writable directory (this filesystem refuses new files)",
        )
    return RuntimeFailure(f"{what}: {reason} ({path})")


def _test_file(dest: Destination, emit: Emit) -> int:
    directory = dest.bucket
    if os.path.exists(directory) and not os.path.isdir(directory):
        failure = UnreachableError(f"file store {directory} is not a directory", "choose a directory: file:///DIR/")
        emit(failure.one_line())
        return int(failure.exit_code)
    if os.path.isdir(directory):
        emit(f"ok    directory: {directory} exists")
    else:
        try:  # the sink creates it on its first object; so does the probe
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            failure = _os_failure("create the file store directory", exc, directory)
            emit(failure.one_line())
            return int(failure.exit_code)
        emit(f"ok    directory: {directory} created")
    path = os.path.join(directory, f"{dest.prefix}{PROBE_DIR}-{uuid.uuid4().hex}.json")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, PROBE_BODY)
            os.fsync(fd)
        finally:
            os.close(fd)
        emit(f"ok    write: {path} ({len(PROBE_BODY)} bytes, fsynced)")
    except OSError as exc:
        failure = _os_failure("write probe file", exc, directory)
        emit(failure.one_line())
        return int(failure.exit_code)
    try:
        os.unlink(path)
        emit("ok    delete: probe file removed")
    except OSError as exc:
        failure = _os_failure("delete probe file", exc, path)
        emit(failure.one_line())
        return int(failure.exit_code)
    emit(f"OK    {dest.url} is ready for s3-batch")
    return int(ExitCode.OK)


def _kms_resource(key_id: str, region: str | None) -> tuple[str, dict[str, Any] | None]:
    if key_id.startswith("arn:"):
        return key_id, None
    if key_id.startswith("alias/"):
        return "*", {"StringEquals": {"kms:RequestAlias": key_id}}
    return f"arn:aws:kms:{region or '*'}:*:key/{key_id}", None


def policy_document(dest_url: str, *, sse_kms_key_id: str | None = None, region: str | None = None) -> dict[str, Any]:
    """The least-privilege IAM policy for writing to `dest_url` (an s3:// URL)."""
    dest = parse_dest(dest_url)
    if dest.scheme != "s3":
        raise ConfigError("`policy` is for s3:// destinations", "a file:// store needs only a writable directory")
    bucket_arn = f"arn:aws:s3:::{dest.bucket}"
    list_statement: dict[str, Any] = {
        "Sid": "ListTheDestinationPrefix",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": bucket_arn,
    }
    if dest.prefix:
        list_statement["Condition"] = {"StringLike": {"s3:prefix": [dest.prefix, f"{dest.prefix}*"]}}
    statements: list[dict[str, Any]] = [
        list_statement,
        {
            "Sid": "WriteObjectsUnderThePrefix",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": f"{bucket_arn}/{dest.prefix}*",
        },
        {
            "Sid": "DeleteOnlyTestProbes",
            "Effect": "Allow",
            "Action": "s3:DeleteObject",
            "Resource": f"{bucket_arn}/{dest.prefix}{PROBE_DIR}/*",
        },
    ]
    if sse_kms_key_id:
        resource, condition = _kms_resource(sse_kms_key_id, region)
        kms: dict[str, Any] = {
            "Sid": "EncryptWithTheKmsKey",
            "Effect": "Allow",
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": resource,
        }
        if condition:
            kms["Condition"] = condition
        statements.append(kms)
    return {"Version": "2012-10-17", "Statement": statements}


def render_policy(dest_url: str, *, sse_kms_key_id: str | None = None, region: str | None = None) -> str:
    """`policy_document` as indented JSON, ready for `aws iam put-user-policy --policy-document`."""
    return json.dumps(policy_document(dest_url, sse_kms_key_id=sse_kms_key_id, region=region), indent=2)
