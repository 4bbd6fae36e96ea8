"""`s3-batch`: durable batching of NDJSON records into S3 (or file://) objects.

s3-batch --dest s3://bucket/prefix/ [--dest name=file:///dir/ ...]   run the sink
s3-batch pause|resume|status --spool-dir D [--dest NAME]              operate a running spool
s3-batch test --dest URL / s3-batch policy --dest URL                 check access, print IAM
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
import orjson

from harmony_pipes._core.cli import command_main
from harmony_pipes._core.options import Runtime, StreamConfig, log_options, state_option, stream_options

from .batcher import DEFAULT_MAX_AGE_SECS, DEFAULT_MAX_BYTES, DEFAULT_MAX_OPEN_BATCHES, DEFAULT_MAX_RECORDS
from .body import COMPRESSIONS, FORMATS
from .config import BYTES, PRESETS, SPOOL_SUBDIR, apply_preset, build_config, split_dests
from .control import known_destinations, scan_backlog, set_paused, spool_path
from .keys import DEFAULT_KEY_TEMPLATE

F = TypeVar("F", bound=Callable[..., Any])
COMMAND = "s3-batch"
DEFAULT_FSYNC_INTERVAL_MS = 200
DEFAULT_MAX_SPOOL_BYTES = 2 * 1024**3
DEFAULT_DRAIN_TIMEOUT_SECS = 30.0
DEFAULT_RETRY_MAX_DELAY_SECS = 30.0


def _opt(*names: str, env: str, **kwargs: Any) -> Callable[[F], F]:
    return click.option(*names, envvar=f"S3_BATCH_{env}", show_envvar=True, **kwargs)


def spool_options(f: F) -> F:
    f = _opt(
        "--spool-dir",
        env="SPOOL_DIR",
        type=click.Path(file_okay=False),
        help=f"Durable spool (default: <--state-dir>/{SPOOL_SUBDIR}).",
    )(f)
    return state_option("S3_BATCH_STATE_DIR", "s3-batch")(f)


def aws_options(f: F) -> F:
    for decorator in reversed(
        [
            _opt("--profile", env="PROFILE", help="AWS profile (else the normal credential chain)."),
            _opt("--region", env="REGION", help="AWS region of the bucket."),
            _opt(
                "--endpoint-url",
                env="ENDPOINT_URL",
                help="S3-compatible endpoint (MinIO, moto). AWS_ENDPOINT_URL is honoured too.",
            ),
            _opt("--role-arn", env="ROLE_ARN", help="Assume this role (credentials refreshed before expiry)."),
            _opt("--external-id", env="EXTERNAL_ID", help="External id for --role-arn."),
            _opt("--sse", env="SSE", type=click.Choice(["AES256", "aws:kms"]), help="Server-side encryption."),
            _opt("--sse-kms-key-id", env="SSE_KMS_KEY_ID", help="KMS key for --sse aws:kms."),
            _opt(
                "--storage-class",
                env="STORAGE_CLASS",
                help="e.g. STANDARD_IA, INTELLIGENT_TIERING, GLACIER_IR.",
            ),
        ]
    ):
        f = decorator(f)
    return f


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@_opt(
    "--dest",
    "dest_values",
    env="DEST",
    multiple=True,
    metavar="[NAME=]URL",
    help="s3://bucket/prefix/ or file:///dir/ (repeat for several; env: space-separated).",
)
@_opt(
    "--format",
    "body_format",
    env="FORMAT",
    type=click.Choice(FORMATS),
    default="ndjson",
    show_default=True,
    help="Object body: NDJSON lines or one JSON array (json-array).",
)
@_opt(
    "--compression",
    env="COMPRESSION",
    type=click.Choice(COMPRESSIONS),
    default="gzip",
    show_default=True,
    help="Body compression (sets the extension and Content-Encoding).",
)
@_opt(
    "--compression-level",
    env="COMPRESSION_LEVEL",
    type=click.IntRange(1, 19),
    help="gzip 1-9 (default 6), zstd 1-19 (default 3).",
)
@_opt(
    "--max-records",
    env="MAX_RECORDS",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_RECORDS,
    show_default=True,
    help="Seal an object at this many records.",
)
@_opt(
    "--max-bytes",
    env="MAX_BYTES",
    type=BYTES,
    default=DEFAULT_MAX_BYTES,
    show_default="64MiB",
    help="Seal before the stored (compressed) object would exceed this (at least one --max-line-bytes record).",
)
@_opt(
    "--max-age-secs",
    env="MAX_AGE_SECS",
    type=click.FloatRange(min=0.01),
    default=DEFAULT_MAX_AGE_SECS,
    show_default=True,
    help="Seal an object this long after its first record.",
)
@_opt(
    "--max-open-batches",
    env="MAX_OPEN_BATCHES",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_OPEN_BATCHES,
    show_default=True,
    help="Partitions open at once ({field:..}/{date}/{hour}); the oldest is sealed beyond it.",
)
@_opt(
    "--key-template",
    env="KEY_TEMPLATE",
    default=DEFAULT_KEY_TEMPLATE,
    show_default=True,
    help="Placeholders: {prefix} {t1} {t2} {t3} {date} {hour} {hash} {field:NAME} {ext}.",
)
@_opt(
    "--time-field",
    env="TIME_FIELD",
    help="Dotted path of the record time (default: timestamp, auditEventTime, eventCreated, else arrival).",
)
@_opt(
    "--preset",
    env="PRESET",
    type=click.Choice(sorted(PRESETS)),
    help="harness: 30-minute objects with a JSON-array body (the Harness audit-streaming cadence).",
)
@_opt(
    "--validate",
    "validate_kind",
    env="VALIDATE",
    type=click.Choice(["harness-audit"]),
    help="Reject records that do not fit this schema (counted, sent to --dead-letter).",
)
@_opt(
    "--schema",
    "schema_path",
    env="SCHEMA",
    type=click.Path(dir_okay=False),
    help="Reject records that do not fit this JSON Schema file.",
)
@spool_options
@_opt(
    "--fsync-interval-ms",
    env="FSYNC_INTERVAL_MS",
    type=click.IntRange(min=1),
    default=DEFAULT_FSYNC_INTERVAL_MS,
    show_default=True,
    help="The spool is committed (open batches fsynced, records accepted) at least this often.",
)
@_opt(
    "--max-spool-bytes",
    env="MAX_SPOOL_BYTES",
    type=BYTES,
    default=DEFAULT_MAX_SPOOL_BYTES,
    show_default="2GiB",
    help="When the spool holds this much, stop reading stdin (back-pressure).",
)
@_opt(
    "--multipart-threshold-bytes",
    env="MULTIPART_THRESHOLD_BYTES",
    type=BYTES,
    default=16 * 1024 * 1024,
    show_default="16MiB",
    help="Objects above this use multipart upload.",
)
@_opt(
    "--drain-timeout-secs",
    env="DRAIN_TIMEOUT_SECS",
    type=click.FloatRange(min=0),
    default=DEFAULT_DRAIN_TIMEOUT_SECS,
    show_default=True,
    help="At end of input or SIGTERM, wait this long for uploads; the rest stays spooled.",
)
@_opt(
    "--retry-max-delay-secs",
    env="RETRY_MAX_DELAY_SECS",
    type=click.FloatRange(min=0.01),
    default=DEFAULT_RETRY_MAX_DELAY_SECS,
    show_default=True,
    help="Cap of the per-object backoff.",
)
@_opt(
    "--retry-mode",
    env="RETRY_MODE",
    type=click.Choice(["standard", "adaptive"]),
    default="standard",
    show_default=True,
    help="botocore retry mode inside each attempt.",
)
@_opt(
    "--startup-check/--no-startup-check",
    env="STARTUP_CHECK",
    default=True,
    show_default=True,
    help=(
        "HeadBucket at start: a refused destination (credentials, missing bucket) is warned about "
        "at once; its records are spooled and the exit code (3/4) comes at the end."
    ),
)
@aws_options
@stream_options
@log_options
@click.pass_context
def cli(ctx: click.Context, **kwargs: Any) -> int | None:
    """Batch NDJSON records from stdin into S3 objects: durable, exactly once, in order.

    Each object is sealed at --max-records, --max-bytes (stored bytes) or --max-age-secs, and at end
    of input or SIGTERM. One receipt per object and destination is printed on stdout.
    Exit codes: 0 ok, 1 runtime, 2 usage, 3 auth refused, 4 unreachable, 65 bad input (--strict),
    75 objects left undelivered (they stay spooled).
    """
    if ctx.invoked_subcommand is not None:
        return None
    if not kwargs["dest_values"]:
        raise click.UsageError("give at least one --dest URL (or a subcommand; see --help)")
    apply_preset(ctx, kwargs)
    runtime = Runtime.from_options(COMMAND, kwargs)
    stream_config = StreamConfig.pop_from(kwargs)
    from .sink import Sink

    sink = Sink(runtime, build_config(kwargs, runtime, max_line_bytes=stream_config.max_line_bytes))
    sink.run(stream_config)
    return 0


@cli.command()
@spool_options
@_opt("--dest", "names", env="PAUSE_DEST", multiple=True, metavar="NAME", help="Destination (default: all).")
def pause(spool_dir: str | None, state_dir: str | None, names: tuple[str, ...]) -> int:
    """Stop uploading to a destination; records keep being spooled for it."""
    set_paused(spool_dir, state_dir, names, True)
    return 0


@cli.command()
@spool_options
@_opt("--dest", "names", env="PAUSE_DEST", multiple=True, metavar="NAME", help="Destination (default: all).")
def resume(spool_dir: str | None, state_dir: str | None, names: tuple[str, ...]) -> int:
    """Upload again: the backlog is drained oldest first, from where it was paused."""
    set_paused(spool_dir, state_dir, names, False)
    return 0


@cli.command()
@spool_options
@_opt("--dest", "names", env="PAUSE_DEST", multiple=True, metavar="NAME", help="Destination (default: all).")
def status(spool_dir: str | None, state_dir: str | None, names: tuple[str, ...]) -> int:
    """Backlog per destination (objects, bytes, records, oldest age) as one JSON line each."""
    path = spool_path(spool_dir, state_dir)
    dests = list(names) or known_destinations(path)
    for row in scan_backlog(path, dests, time.time_ns() // 1_000_000):
        click.echo(orjson.dumps(row).decode())
    return 0


@cli.command("test")
@_opt(
    "--dest",
    "dest_values",
    env="DEST",
    multiple=True,
    required=True,
    metavar="[NAME=]URL",
    help="Destination(s) to check.",
)
@aws_options
def test_command(dest_values: tuple[str, ...], **aws: Any) -> int:
    """Check credentials, the bucket, and write + delete a probe object; one line per failure."""
    from .probe import run_test

    worst = 0
    for url in split_dests(dest_values):
        code = run_test(
            url,
            profile=aws["profile"],
            region=aws["region"],
            role_arn=aws["role_arn"],
            external_id=aws["external_id"],
            endpoint_url=aws["endpoint_url"],
            sse=aws["sse"],
            sse_kms_key_id=aws["sse_kms_key_id"],
            storage_class=aws["storage_class"],
        )
        worst = worst or code
    return worst


@cli.command("policy")
@_opt(
    "--dest",
    "dest_values",
    env="DEST",
    multiple=True,
    required=True,
    metavar="[NAME=]URL",
    help="s3:// destination to write the policy for.",
)
@_opt("--sse-kms-key-id", env="SSE_KMS_KEY_ID", help="Also allow encrypting with this KMS key.")
@_opt("--region", env="REGION", help="Region of the KMS key.")
def policy_command(dest_values: tuple[str, ...], sse_kms_key_id: str | None, region: str | None) -> int:
    """Print the least-privilege IAM policy (List + Write on the bucket/prefix)."""
    from .probe import render_policy

    for url in split_dests(dest_values):
        click.echo(render_policy(url, sse_kms_key_id=sse_kms_key_id, region=region))
    return 0


main = command_main(cli, COMMAND)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
