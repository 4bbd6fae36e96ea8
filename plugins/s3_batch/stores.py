"""Object stores: `file:///dir/` (local, same keys and bodies) and `s3://bucket/prefix/`.

Both take a sealed body *file* and a key; neither holds a body in memory. Writing the same key
twice with the same bytes is harmless, which is what makes retries after a crash safe.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from harmony_pipes._core.aws import classify_aws_error, make_client, make_session
from harmony_pipes._core.errors import ConfigError, ItemRefused, PipesError, RuntimeFailure, UnreachableError
from harmony_pipes._core.state import fsync_dir

from .keys import MAX_SEGMENT_BYTES, key_problem

DEFAULT_MULTIPART_THRESHOLD_BYTES = 16 * 1024 * 1024
DEFAULT_MULTIPART_CHUNK_BYTES = 8 * 1024 * 1024
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class Destination:
    """One `--dest`: a name (for status/pause and receipts), the URL and where keys go."""

    name: str
    url: str
    scheme: str  # "s3" or "file"
    bucket: str  # the S3 bucket, or the root directory of a file:// store
    prefix: str  # key prefix, "" or ending with "/"


def parse_destinations(values: list[str] | tuple[str, ...]) -> list[Destination]:
    """`[name=]URL` values → destinations with unique names (derived from the bucket if absent)."""
    if not values:
        raise ConfigError("no destination given", "pass --dest s3://bucket/prefix/ or --dest file:///dir/")
    dests: list[Destination] = []
    taken: set[str] = set()
    for value in values:
        name, url = None, value
        head, sep, rest = value.partition("=")
        if sep and "://" not in head:
            name, url = head, rest
        dest = _parse_url(url, name)
        candidate, n = dest.name, 2
        while candidate in taken:
            if name is not None:
                raise ConfigError(f"destination name {name!r} is used twice", "give each --dest its own name")
            candidate = f"{dest.name}-{n}"
            n += 1
        taken.add(candidate)
        dests.append(Destination(candidate, dest.url, dest.scheme, dest.bucket, dest.prefix))
    return dests


def _parse_url(url: str, name: str | None) -> Destination:
    parsed = urlparse(url)
    if name is not None and not _NAME_RE.match(name):
        raise ConfigError(f"invalid destination name {name!r}", "use letters, digits, '.', '_' or '-'")
    if parsed.scheme == "s3":
        bucket = parsed.netloc
        if not bucket:
            raise ConfigError(f"--dest {url}: no bucket", "use s3://bucket/prefix/")
        prefix = parsed.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        derived = re.sub(r"[^A-Za-z0-9_.-]", "-", bucket)[:63]
        return Destination(name or derived, url, "s3", bucket, prefix)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"--dest {url}: file URLs need three slashes", "use file:///absolute/dir/")
        root = unquote(parsed.path)
        if not root.startswith("/"):
            raise ConfigError(f"--dest {url}: not an absolute path", "use file:///absolute/dir/")
        return Destination(name or "file", url, "file", root.rstrip("/") or "/", "")
    raise ConfigError(f"--dest {url}: unsupported scheme", "use s3://bucket/prefix/ or file:///dir/")


@dataclass
class ObjectMeta:
    content_type: str
    content_encoding: str | None
    sha256: str
    records: int


class FileStore:
    """Writes `<root>/<key>` atomically: temp file in `<root>/.s3-batch-tmp/`, fsync, rename.

    The temp file is a hard link to the (already fsynced, immutable) spool body when both are on
    one filesystem, else a copy.

    A kill in the middle leaves at most a temp file in that hidden directory (cleaned at start),
    never a partial object under a real key.
    """

    TMP_DIR = ".s3-batch-tmp"

    def __init__(self, dest: Destination) -> None:
        self.dest = dest
        self.root = Path(dest.bucket)
        self.tmp_dir = self.root / self.TMP_DIR

    def check(self) -> None:
        try:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.tmp_dir.iterdir():
                with contextlib.suppress(OSError):
                    stale.unlink()
        except OSError as exc:
            raise UnreachableError(
                f"file store {self.root}: {exc.strerror}", "make the directory writable or fix --dest", retryable=True
            ) from exc

    def put(self, key: str, body_path: Path, meta: ObjectMeta) -> None:
        problem = key_problem(key, max_segment_bytes=MAX_SEGMENT_BYTES)
        if problem is not None:  # e.g. frozen into a manifest by an older version's template
            raise ItemRefused(f"key {key[:120]!r} cannot be stored in {self.root}: {problem}", "fix --key-template")
        target = self.root / key
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (NotADirectoryError, FileExistsError) as exc:
            if self.root.is_dir():  # the store is fine: a file sits where this key needs a folder
                raise ItemRefused(
                    f"key {key[:120]!r} cannot be stored in {self.root}: {exc.strerror} ({exc.filename})",
                    "fix --key-template (a key must not be a folder of another key)",
                ) from None
            raise
        tmp = self.tmp_dir / f"{os.getpid()}-{meta.sha256[:16]}.tmp"
        try:
            try:  # sealed bodies never change: on the same filesystem a hard link is a free copy
                os.link(body_path, tmp)
            except OSError:
                shutil.copyfile(body_path, tmp)
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        fsync_dir(target.parent)


@dataclass
class S3Options:
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    retry_mode: str = "standard"
    sse: str | None = None
    sse_kms_key_id: str | None = None
    storage_class: str | None = None
    multipart_threshold_bytes: int = DEFAULT_MULTIPART_THRESHOLD_BYTES
    multipart_chunk_bytes: int = DEFAULT_MULTIPART_CHUNK_BYTES
    extra: dict[str, Any] = field(default_factory=dict)


class S3Store:
    """`upload_file` from the spool (managed multipart above the threshold); boto3 loaded lazily."""

    def __init__(self, dest: Destination, options: S3Options) -> None:
        self.dest = dest
        self.options = options
        self._client: Any = None
        self._transfer_config: Any = None

    def client(self) -> Any:
        if self._client is None:
            from boto3.s3.transfer import TransferConfig

            o = self.options
            session = make_session(o.profile, o.region, o.role_arn, o.external_id, endpoint_url=o.endpoint_url)
            self._client = make_client(
                session, "s3", region=o.region, endpoint_url=o.endpoint_url, retry_mode=o.retry_mode
            )
            self._transfer_config = TransferConfig(
                multipart_threshold=o.multipart_threshold_bytes,
                multipart_chunksize=o.multipart_chunk_bytes,
                max_concurrency=2,
                use_threads=True,
            )
        return self._client

    def extra_args(self, meta: ObjectMeta) -> dict[str, Any]:
        o = self.options
        args: dict[str, Any] = {
            "ContentType": meta.content_type,
            "Metadata": {"sha256": meta.sha256, "records": str(meta.records)},
        }
        if meta.content_encoding:
            args["ContentEncoding"] = meta.content_encoding
        if o.sse:
            args["ServerSideEncryption"] = o.sse
        if o.sse_kms_key_id:
            args["SSEKMSKeyId"] = o.sse_kms_key_id
        if o.storage_class:
            args["StorageClass"] = o.storage_class
        return args

    def check(self) -> None:
        """HeadBucket (or, when that is denied, a listing of the prefix) at start.

        A refusal (credentials, missing bucket) is reported at once and decides the exit code
        if it still stands at the end; an unreachable endpoint is only a warning (its error is
        `retryable`). Either way the records are spooled.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        what = f"check s3://{self.dest.bucket}"
        try:
            try:
                self.client().head_bucket(Bucket=self.dest.bucket)
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 403:
                    raise
                # a least-privilege policy (`s3-batch policy`) limits s3:ListBucket to the prefix,
                # which refuses HeadBucket; listing the prefix is what that policy allows
                self.client().list_objects_v2(Bucket=self.dest.bucket, Prefix=self.dest.prefix, MaxKeys=1)
        except (ClientError, BotoCoreError, ConnectionError) as exc:
            raise classify_aws_error(exc, what=what, bucket=self.dest.bucket, service="s3") from None

    def put(self, key: str, body_path: Path, meta: ObjectMeta) -> None:
        problem = key_problem(key)
        if problem is not None:  # e.g. frozen into a manifest by an older version's template
            raise ItemRefused(
                f"key {key[:120]!r} is not written to s3://{self.dest.bucket}: {problem}", "fix --key-template"
            )
        client = self.client()
        client.upload_file(
            str(body_path),
            self.dest.bucket,
            key,
            ExtraArgs=self.extra_args(meta),
            Config=self._transfer_config,
        )


def classify_failure(exc: BaseException, dest: Destination, key: str) -> PipesError:
    """What a failed upload means: S3 failures go through `_core.aws.classify_aws_error` (the
    one AWS classifier); file store failures are retried (a full or unmounted disk comes back),
    except a key the store can never hold (`ItemRefused`). Never includes credentials."""
    if isinstance(exc, PipesError):
        return exc
    if dest.scheme == "s3":
        try:
            return classify_aws_error(exc, what=f"write s3://{dest.bucket}/{key}", bucket=dest.bucket, service="s3")
        except Exception:  # classification must never hide the failure itself
            pass
    if isinstance(exc, OSError):
        if exc.errno == errno.ENAMETOOLONG:
            return ItemRefused(f"write {dest.bucket}/{key}: {exc.strerror}", "fix --key-template")
        return RuntimeFailure(f"write {dest.bucket}/{key}: {exc.strerror or exc}", retryable=True)
    return RuntimeFailure(f"write {dest.url} {key}: {type(exc).__name__}: {exc}", retryable=True)


def make_store(dest: Destination, options: S3Options) -> FileStore | S3Store:
    return S3Store(dest, options) if dest.scheme == "s3" else FileStore(dest)
