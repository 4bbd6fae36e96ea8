"""Servers for the AWS error tests: moto with IAM enforcement, and an S3 wrong-region double.

`AuthMoto` runs `python -m moto.server` in a subprocess with INITIAL_NO_AUTH_ACTION_COUNT=3: the
first three requests bootstrap an admin user (create user, attach `*`, create access key), every
later request is authenticated and authorised by moto's IAM (S3, STS, EC2 and IAM check
signatures; S3 / STS / EC2 return InvalidAccessKeyId / InvalidClientTokenId / AuthFailure,
SignatureDoesNotMatch, AccessDenied for real). The shared session `moto_server` cannot be used
for this: enforcement is a process-wide moto setting read at import time.

`S3Double` answers like S3 does for situations moto cannot produce (moto keeps one global bucket
namespace and never throttles): a bucket in another region (301 + x-amz-bucket-region, the
PermanentRedirect body) or SlowDown (503). It also answers STS GetCallerIdentity.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers.moto_process import start_moto, stop_moto

ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def _creds(key: dict[str, str]) -> dict[str, str]:
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


class AuthMoto:
    """A moto server that enforces IAM; `.endpoint`, `.admin` creds, `.user(name, policy)`."""

    def __init__(self) -> None:
        # a readiness probe would spend one of the unauthenticated actions: start_moto needs none
        self.proc, self.port = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
        self.endpoint = f"http://127.0.0.1:{self.port}"
        iam = self.client("iam", {"aws_access_key_id": "bootstrap", "aws_secret_access_key": "bootstrap"})
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL))
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        self.admin = _creds(key)

    def client(self, service: str, creds: dict[str, str] | None = None, region: str = "us-east-1") -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=region,
            config=Config(retries={"mode": "standard", "max_attempts": 1}),
            **(creds or self.admin),
        )

    def user(self, name: str, policy: dict[str, Any] | None) -> dict[str, str]:
        """A new IAM user with an inline policy (None = no policy at all); returns its keys."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        if policy is not None:
            iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        return _creds(iam.create_access_key(UserName=name)["AccessKey"])

    @staticmethod
    def env(creds: dict[str, str]) -> dict[str, str]:
        # The session token is blanked: the shared `moto_server` fixture exports a dummy
        # AWS_SESSION_TOKEN into the test process, and IAM-enforcing moto refuses a key pair
        # that comes with a foreign token (InvalidClientTokenId). botocore ignores an empty token.
        return {
            "AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"],
            "AWS_SESSION_TOKEN": "",
        }

    def close(self) -> None:
        stop_moto(self.proc)


_REDIRECT_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PermanentRedirect</Code><Message>The bucket you '
    "are attempting to access must be addressed using the specified endpoint. Please send all future "
    "requests to this endpoint.</Message><Endpoint>{bucket}.s3.{region}.amazonaws.com</Endpoint>"
    "<Bucket>{bucket}</Bucket><RequestId>0</RequestId></Error>"
)
_SLOWDOWN_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your '
    "request rate.</Message><RequestId>0</RequestId></Error>"
)
_EXPIRED_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ExpiredToken</Code><Message>The provided token has '
    "expired.</Message><RequestId>0</RequestId></Error>"
)
_CALLER_XML = (
    '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>'
    "<Arn>arn:aws:iam::123456789012:user/double</Arn><UserId>AIDDOUBLE</UserId><Account>123456789012</Account>"
    "</GetCallerIdentityResult><ResponseMetadata><RequestId>0</RequestId></ResponseMetadata>"
    "</GetCallerIdentityResponse>"
)


_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
    "<RequestId>0</RequestId></Error>"
)
FAIL_AFTER_MESSAGES = {
    "ExpiredToken": (400, "The provided token has expired."),
    "SignatureDoesNotMatch": (403, "The request signature we calculated does not match the signature you provided."),
    "KeyTooLongError": (400, "Your key is too long"),
}


class S3Double:
    """Every S3 call fails the same way. mode "region": the bucket lives in `bucket_region` (301);
    "slowdown": 503 SlowDown; "expired": 400 ExpiredToken; "flaky": the first `fail_first` calls
    get 503 SlowDown, later ones succeed (a PUT is stored in `.objects`).

    Situations of a run that starts well (moto cannot turn them on mid-run): mode "fail-after":
    the first `fail_after` PUTs are stored, every later one gets `fail_code` (ExpiredToken,
    SignatureDoesNotMatch); mode "refuse-keys": a PUT whose key holds `refuse_marker` gets 400
    KeyTooLongError (S3's refusal of one key), the others are stored. HEAD answers 200 in both."""

    def __init__(
        self,
        mode: str = "region",
        bucket_region: str = "eu-west-1",
        fail_first: int = 0,
        *,
        fail_after: int = 0,
        fail_code: str = "ExpiredToken",
        refuse_marker: str = "refuse",
    ) -> None:
        self.mode = mode
        self.bucket_region = bucket_region
        self.fail_first = fail_first
        self.fail_after = fail_after
        self.fail_code = fail_code
        self.refuse_marker = refuse_marker
        self.requests: list[str] = []
        self.objects: dict[str, bytes] = {}
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # so botocore's Expect: 100-continue gets its answer at once

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _s3(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                double.requests.append(f"{self.command} {self.path}")
                bucket = self.path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
                if double.mode in ("fail-after", "refuse-keys"):
                    refused = None
                    if self.command == "PUT":
                        if double.mode == "fail-after" and len(double.objects) >= double.fail_after:
                            refused = double.fail_code
                        elif double.mode == "refuse-keys" and double.refuse_marker in self.path:
                            refused = "KeyTooLongError"
                    if refused is not None:
                        status, message = FAIL_AFTER_MESSAGES[refused]
                        xml = _ERROR_XML.format(code=refused, message=message).encode()
                        self._reply(status, xml, {"Content-Type": "application/xml"})
                    elif self.command == "PUT":
                        double.objects[self.path.split("?", 1)[0]] = body
                        self._reply(200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
                    else:
                        self._reply(200, b"")
                    return
                if double.mode == "flaky" and len(double.requests) > double.fail_first:
                    if self.command == "PUT":
                        double.objects[self.path.split("?", 1)[0]] = body
                        self._reply(200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
                    else:
                        self._reply(200, b"")
                    return
                if double.mode == "flaky":
                    self._reply(503, _SLOWDOWN_XML.encode(), {"Content-Type": "application/xml"})
                    return
                if double.mode == "slowdown":
                    self._reply(503, _SLOWDOWN_XML.encode(), {"Content-Type": "application/xml"})
                    return
                if double.mode == "expired":
                    self._reply(400, _EXPIRED_XML.encode(), {"Content-Type": "application/xml"})
                    return
                redirect = _REDIRECT_XML.format(bucket=bucket, region=double.bucket_region).encode()
                headers = {"Content-Type": "application/xml", "x-amz-bucket-region": double.bucket_region}
                self._reply(301, redirect, headers)

            def do_POST(self) -> None:  # STS (query protocol) is a POST to /
                if self.path == "/":
                    length = int(self.headers.get("Content-Length") or 0)
                    payload = self.rfile.read(length).decode()
                    if "Action=GetCallerIdentity" in payload:
                        self._reply(200, _CALLER_XML.encode(), {"Content-Type": "text/xml"})
                        return
                self._s3()

            do_HEAD = do_GET = do_PUT = do_DELETE = _s3

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
