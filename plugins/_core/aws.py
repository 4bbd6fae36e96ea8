"""AWS sessions, clients and error classification shared by s3-batch and aws-discovery.

boto3 is imported lazily inside functions: importing this module costs nothing, so `--help` and
the first record never wait on botocore. Credentials follow boto3's normal chain (env, profile,
container/instance role); `role_arn` adds an STS AssumeRole on top whose credentials are
refreshed by botocore before they expire (long-running sinks and discovery loops outlive the
default one-hour session). `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` are honoured by
boto3 itself whenever no explicit `endpoint_url` is given.

`classify_aws_error` turns any botocore / boto3 failure into a one-line `PipesError` carrying the
DESIGN exit code, the fix and whether trying again can help (`retryable`); it is the one place
that decides this for S3, EC2 and STS, and it never includes credentials or signing material.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .errors import (
    AuthError,
    ConfigError,
    ItemRefused,
    PipesError,
    RuntimeFailure,
    TempFailError,
    UnreachableError,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import boto3

DEFAULT_SESSION_NAME = "harmony-pipes"
DEFAULT_ROLE_DURATION_SECS = 3600
RETRY_MODES = ("standard", "adaptive", "legacy")
GLOBAL_DEFAULT_REGION_SERVICES = ("s3", "sts")

CREDENTIALS_FIX = (
    "set AWS_PROFILE (or --profile), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
    "or run where an instance/container role is available"
)

_CHECK_KEYS = "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN or --profile"
_RENEW = "renew the session (aws sso login / new STS credentials) or use --role-arn"
_AUTH_CODES = {
    "InvalidAccessKeyId": "the access key id is not known to AWS",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id",
    "ExpiredToken": "the session token has expired",
    "ExpiredTokenException": "the session token has expired",
    "RequestExpired": "the request or session token has expired (check the clock)",
    "TokenRefreshRequired": "the session token must be refreshed",
    "InvalidToken": "the session token is malformed or invalid",
    "InvalidClientTokenId": "the access key id or session token is not valid",
    "UnrecognizedClientException": "the access key id or session token is not valid",
    "AuthFailure": "AWS could not validate the credentials",
    "MissingAuthenticationToken": "the request was not signed",
}
_DENIED_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AllAccessDisabled",
    "Forbidden",
    "403",
}
_NO_BUCKET_CODES = {"NoSuchBucket", "404", "NotFound"}
_REGION_CODES = {
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "IllegalLocationConstraintException",
    "301",
    "400",
    "TemporaryRedirect",
}
_THROTTLE_CODES = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "BandwidthLimitExceeded",
    "EC2ThrottledException",
    "PriorRequestNotComplete",
    "503",
    "ServiceUnavailable",
    "InternalError",
    "500",
    # 4xx answers that say "send it again": the upload was cut, the clock skew is corrected by
    # botocore on the next attempt, a concurrent operation finished
    "RequestTimeout",
    "RequestTimeoutException",
    "IncompleteBody",
    "BadDigest",
    "OperationAborted",
    "RequestTimeTooSkewed",
}
# The store refuses this one key for good (other keys still work): set the object aside.
_KEY_REFUSED_CODES = {"KeyTooLongError", "InvalidObjectName", "XMinioInvalidObjectName"}
BAD_REQUEST_FIX = "the request is invalid: check the options that shape it (S3: --sse, --storage-class)"

# The IAM action behind each API operation, so an AccessDenied names what the policy lacks.
_S3_PERMISSIONS = {
    "HeadBucket": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "DeleteObject": "s3:DeleteObject",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "GetBucketLocation": "s3:GetBucketLocation",
}
_OTHER_PERMISSIONS = {
    "AssumeRole": "sts:AssumeRole",
    "GetCallerIdentity": "sts:GetCallerIdentity",
    "DescribeInstances": "ec2:DescribeInstances",
    "DescribeTags": "ec2:DescribeTags",
    "DescribeVpcs": "ec2:DescribeVpcs",
    "DescribeRegions": "ec2:DescribeRegions",
}

_KEY_ID_RE = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{12,}\b")
_LONG_TOKEN_RE = re.compile(r"[A-Za-z0-9+/=]{40,}")


def make_session(
    profile: str | None = None,
    region: str | None = None,
    role_arn: str | None = None,
    external_id: str | None = None,
    session_name: str = DEFAULT_SESSION_NAME,
    endpoint_url: str | None = None,
    duration_secs: int = DEFAULT_ROLE_DURATION_SECS,
) -> boto3.Session:
    """A boto3 Session from the normal chain, optionally assuming `role_arn` (auto-refreshed).

    The first AssumeRole happens here, so a refused role fails fast with a one-line error; later
    refreshes happen inside botocore before expiry. `endpoint_url` (e.g. moto) is used for STS.
    Raises `PipesError` (exit 2 for a missing profile, 3 for refused credentials ...).
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound

    try:
        base = boto3.Session(profile_name=profile or None, region_name=region or None)
    except ProfileNotFound:
        raise ConfigError(
            f"AWS profile {profile!r} not found",
            "check --profile / AWS_PROFILE against ~/.aws/config and ~/.aws/credentials",
        ) from None
    if not role_arn:
        return base

    sts = make_client(base, "sts", region=region, endpoint_url=endpoint_url)
    params: dict[str, Any] = {
        "RoleArn": role_arn,
        "RoleSessionName": _session_name(session_name),
        "DurationSeconds": int(duration_secs),
    }
    if external_id:
        params["ExternalId"] = external_id

    def fetch() -> dict[str, str]:
        creds = sts.assume_role(**params)["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    try:
        metadata = fetch()
    except (ClientError, BotoCoreError) as exc:
        raise classify_aws_error(exc, what=f"assume role {role_arn}") from None

    import botocore.session
    from botocore.credentials import RefreshableCredentials

    refreshable = RefreshableCredentials.create_from_metadata(
        metadata=metadata, refresh_using=fetch, method="assume-role"
    )
    core = botocore.session.get_session()
    core._credentials = refreshable  # the documented-by-practice hook for custom credentials
    region_name = region or base.region_name
    if region_name:
        core.set_config_variable("region", region_name)
    return boto3.Session(botocore_session=core)


def _session_name(name: str) -> str:
    """STS allows 2-64 characters of [\\w+=,.@-]; anything else becomes '-'."""
    cleaned = re.sub(r"[^\w+=,.@-]", "-", name or "")[:64]
    return cleaned if len(cleaned) >= 2 else DEFAULT_SESSION_NAME


def make_client(
    session: boto3.Session,
    service: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    retry_mode: str = "standard",
    max_attempts: int = 5,
    connect_timeout_secs: float = 5,
    read_timeout_secs: float = 30,
    max_pool_connections: int = 10,
) -> Any:
    """A client with explicit botocore retries and timeouts (boto3's default mode is legacy).

    `endpoint_url=None` lets boto3 apply AWS_ENDPOINT_URL(_<SERVICE>) from the environment.
    """
    from botocore.config import Config

    if retry_mode not in RETRY_MODES:
        raise ConfigError(f"unknown retry mode {retry_mode!r}", f"use one of {', '.join(RETRY_MODES)}")
    options: dict[str, Any] = {
        "retries": {"mode": retry_mode, "max_attempts": max(1, int(max_attempts))},
        "connect_timeout": connect_timeout_secs,
        "read_timeout": read_timeout_secs,
        "max_pool_connections": max_pool_connections,
    }
    if service == "s3" and endpoint_url:
        # S3-compatible stores and moto are reached by path; virtual hosts need wildcard DNS.
        options["s3"] = {"addressing_style": "path"}
    kwargs: dict[str, Any] = {"config": Config(**options)}
    if not region and not session.region_name and service in GLOBAL_DEFAULT_REGION_SERVICES:
        region = "us-east-1"  # as the AWS CLI does: S3 and STS work from us-east-1 without a region
    if region:
        kwargs["region_name"] = region
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    return session.client(service, **kwargs)


def _root_cause(exc: BaseException) -> BaseException:
    """The botocore error inside boto3/s3transfer wrappers (S3UploadFailedError, RetryError)."""
    from botocore.exceptions import BotoCoreError, ClientError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ClientError | BotoCoreError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    for arg in getattr(exc, "args", ()):  # s3transfer keeps the original in args sometimes
        if isinstance(arg, BaseException):
            return _root_cause(arg)
    return exc


def _clean(text: str, limit: int = 240) -> str:
    """One line, no key ids or long tokens, bounded length."""
    text = " ".join(str(text).split())
    text = _KEY_ID_RE.sub("<redacted>", text)
    text = _LONG_TOKEN_RE.sub("<redacted>", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _permission(operation: str | None, service: str | None, bucket: str | None) -> str | None:
    if not operation:
        return None
    if operation in _OTHER_PERMISSIONS:
        return _OTHER_PERMISSIONS[operation]
    if operation in _S3_PERMISSIONS and (bucket is not None or service in (None, "s3")):
        return _S3_PERMISSIONS[operation]
    if service:
        return f"{service}:{operation}"
    return None


def _bucket_region(response: dict[str, Any]) -> str | None:
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    region = headers.get("x-amz-bucket-region") or response.get("Error", {}).get("Region")
    if region:
        return str(region)
    message = str(response.get("Error", {}).get("Message", ""))
    found = re.search(r"expecting '([a-z0-9-]+)'", message)
    return found.group(1) if found else None


def classify_aws_error(
    exc: BaseException,
    *,
    what: str,
    bucket: str | None = None,
    service: str | None = None,
) -> PipesError:
    """Map a boto3/botocore failure to a one-line `PipesError` with the DESIGN exit code and fix.

    `what` says what was attempted ("write s3://bucket/key"), `bucket` adds region/bucket hints.
    Never includes credentials, signatures or request dumps.
    """
    from botocore import exceptions as bx

    if isinstance(exc, PipesError):
        return exc
    cause = _root_cause(exc)

    if isinstance(cause, bx.NoCredentialsError | bx.PartialCredentialsError):
        return AuthError(f"{what}: no usable AWS credentials ({_clean(str(cause))})", CREDENTIALS_FIX)
    if isinstance(cause, bx.ProfileNotFound):
        return ConfigError(f"{what}: {_clean(str(cause))}", "check --profile / AWS_PROFILE")
    if isinstance(cause, bx.NoRegionError):
        return ConfigError(f"{what}: no AWS region configured", "set --region or AWS_REGION")
    if isinstance(cause, bx.ParamValidationError):
        return ConfigError(f"{what}: invalid request ({_clean(str(cause))})", "check the bucket and key")
    if isinstance(cause, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ProxyConnectionError):
        url = getattr(cause, "kwargs", {}).get("endpoint_url", "")
        return UnreachableError(
            f"{what}: cannot connect to {url or 'the AWS endpoint'}",
            "check --endpoint-url / AWS_ENDPOINT_URL, --region, network, proxy and firewall",
            retryable=True,  # exit 4 if it lasts, but the endpoint may come back
        )
    if isinstance(cause, bx.ReadTimeoutError | bx.ConnectionClosedError | bx.HTTPClientError | bx.ConnectionError):
        return TempFailError(
            f"{what}: the endpoint stopped answering ({type(cause).__name__})",
            "try again; raise --read-timeout-secs if it persists",
        )
    if isinstance(cause, bx.CredentialRetrievalError):
        return AuthError(f"{what}: could not obtain credentials ({_clean(str(cause))})", CREDENTIALS_FIX)
    if not isinstance(cause, bx.ClientError):
        # unknown: retried, since only failures known to need a person may stop a run
        if isinstance(cause, bx.BotoCoreError):
            return RuntimeFailure(f"{what}: {_clean(str(cause))}", retryable=True)
        return RuntimeFailure(f"{what}: {type(cause).__name__}: {_clean(str(cause))}", retryable=True)

    response = cause.response or {}
    error = response.get("Error", {}) or {}
    code = str(error.get("Code", "") or "")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = _clean(error.get("Message", "") or "")
    operation = getattr(cause, "operation_name", None)
    detail = f"{code}: {message}" if message and message != code else code or f"HTTP {status}"
    if code in ("403", "Forbidden", "404", "NotFound", "301", "400") and not message:
        detail = {
            "403": "403 Forbidden",
            "Forbidden": "403 Forbidden",
            "404": "404 Not Found",
            "NotFound": "404 Not Found",
            "301": "301 Moved Permanently",
            "400": "400 Bad Request",
        }[code]

    if code in _AUTH_CODES:
        fix = f"{_AUTH_CODES[code]}; {_CHECK_KEYS}"
        if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"):
            fix = f"{_AUTH_CODES[code]}; {_RENEW}"
        return AuthError(f"{what}: credentials refused ({detail})", fix)

    if code in _DENIED_CODES or (status == 403 and code not in _REGION_CODES):
        permission = _permission(operation, service, bucket)
        if operation == "AssumeRole":
            fix = (
                "allow sts:AssumeRole for the caller, and check the role's trust policy "
                "(principal and sts:ExternalId / --external-id)"
            )
        elif permission:
            resource = f" on arn:aws:s3:::{bucket}" if bucket and permission.startswith("s3:") else ""
            fix = f"grant {permission}{resource} to the caller's IAM policy (see the `policy` subcommand)"
        else:
            fix = "grant the missing permission to the caller's IAM policy (see the `policy` subcommand)"
        return AuthError(f"{what}: access denied ({detail})", fix)

    if code in _NO_BUCKET_CODES or (status == 404 and bucket is not None and code != "NoSuchKey"):
        name = f"bucket {bucket!r}" if bucket else "the bucket"
        return UnreachableError(
            f"{what}: {name} does not exist ({detail})",
            "create it, or fix the bucket name in --dest (and --endpoint-url for S3-compatible stores)",
        )

    if code in _REGION_CODES or status == 301:
        region = _bucket_region(response)
        name = f"bucket {bucket!r}" if bucket else "the bucket"
        if region:
            return UnreachableError(
                f"{what}: {name} is in region {region}, not the configured one ({detail})",
                f"use --region {region} (or AWS_REGION={region})",
            )
        return UnreachableError(
            f"{what}: {name} answered from another region ({detail})",
            "set --region to the bucket's region (aws s3api get-bucket-location --bucket ...)",
        )

    if code in _THROTTLE_CODES or status in (408, 429) or (isinstance(status, int) and status >= 500):
        return TempFailError(
            f"{what}: AWS is throttling or temporarily unavailable ({detail}) after retries",
            "try again later; reduce the request rate or use --retry-mode adaptive",
        )

    if code in _KEY_REFUSED_CODES:
        return ItemRefused(f"{what}: the store refuses this key ({detail})", "fix --key-template")

    if isinstance(status, int) and 400 <= status < 500:
        return ConfigError(f"{what}: request refused ({detail})", BAD_REQUEST_FIX)

    return RuntimeFailure(f"{what}: {detail}", retryable=True)
