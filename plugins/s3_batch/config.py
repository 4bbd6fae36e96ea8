"""s3-batch's configuration: `SinkConfig`, the options that fill it, and the checks made at start
(destinations, key template, levels, presets, the spool location)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from harmony_pipes._core.errors import ConfigError
from harmony_pipes._core.ndjson import DEFAULT_MAX_LINE_BYTES
from harmony_pipes._core.options import (
    BYTES,
    Runtime,
    apply_options,
    aws_options,
    env_options,
    log_options,
    state_option,
    stream_options,
)
from harmony_pipes._core.state import claim_state_dir

from .batcher import DEFAULT_MAX_AGE_SECS, DEFAULT_MAX_BYTES, DEFAULT_MAX_OPEN_BATCHES, DEFAULT_MAX_RECORDS, Limits
from .body import COMPRESSIONS, FORMATS, BodySpec, one_record_bound_bytes
from .control import SPOOL_SUBDIR, resolve_spool_dir
from .health import DEFAULT_MAX_BACKLOG_AGE_SECS, STUCK_EXIT_CODE
from .keys import DEFAULT_KEY_TEMPLATE, KeyTemplate, KeyTemplateError
from .spool import OWNER
from .stores import Destination, S3Options, parse_destinations
from .validate import build_validator

F = TypeVar("F", bound=Callable[..., Any])
PRESETS = {"harness": {"max_age_secs": 1800.0, "body_format": "json-array"}}
COMMAND = "s3-batch"
DEFAULT_FSYNC_INTERVAL_MS = 200
DEFAULT_MAX_SPOOL_BYTES = 2 * 1024**3
DEFAULT_DRAIN_TIMEOUT_SECS = 30.0
DEFAULT_RETRY_MAX_DELAY_SECS = 30.0


opt = env_options("S3_BATCH_")  # every option's env var is S3_BATCH_<NAME>


def backlog_age_option(f: F) -> F:
    return opt(
        "--max-backlog-age-secs",
        env="MAX_BACKLOG_AGE_SECS",
        type=click.FloatRange(min=0.01),
        default=DEFAULT_MAX_BACKLOG_AGE_SECS,
        show_default=True,
        help="A destination whose oldest unsent object is older than this is stuck: /healthz answers 503 "
        f"and `s3-batch status` exits {STUCK_EXIT_CODE}.",
    )(f)


def spool_options(f: F) -> F:
    f = opt(
        "--spool-dir",
        env="SPOOL_DIR",
        type=click.Path(file_okay=False),
        help=f"Durable spool (default: <--state-dir>/{SPOOL_SUBDIR}).",
    )(f)
    return state_option("S3_BATCH_STATE_DIR", "s3-batch")(f)


def s3_options(f: F) -> F:
    """Where objects go in AWS: the shared identity options plus the bucket's own."""
    return apply_options(
        f,
        [
            aws_options("S3_BATCH_", "S3-compatible"),
            opt("--region", env="REGION", help="AWS region of the bucket."),
            opt("--sse", env="SSE", type=click.Choice(["AES256", "aws:kms"]), help="Server-side encryption."),
            opt("--sse-kms-key-id", env="SSE_KMS_KEY_ID", help="KMS key for --sse aws:kms."),
            opt("--storage-class", env="STORAGE_CLASS", help="e.g. STANDARD_IA, INTELLIGENT_TIERING, GLACIER_IR."),
        ],
    )


@dataclass(frozen=True)
class SinkConfig:
    destinations: list[Destination]
    spool_dir: Path
    spool_is_temporary: bool
    spec: BodySpec
    template: KeyTemplate
    time_field: str | None
    limits: Limits
    fsync_interval_ms: int
    max_spool_bytes: int
    drain_timeout_secs: float
    retry_max_delay_secs: float
    startup_check: bool
    s3: S3Options
    validator: Callable[[dict[str, Any]], None] | None = None
    max_backlog_age_secs: float = DEFAULT_MAX_BACKLOG_AGE_SECS


def sink_options(f: F) -> F:
    """Every option of the sink itself (the group's own options), in --help order."""
    return apply_options(
        f,
        [
            opt(
                "--dest",
                "dest_values",
                env="DEST",
                multiple=True,
                metavar="[NAME=]URL",
                help="s3://bucket/prefix/ or file:///dir/ (repeat for several; env: space-separated).",
            ),
            opt(
                "--format",
                "body_format",
                env="FORMAT",
                type=click.Choice(FORMATS),
                default="ndjson",
                show_default=True,
                help="Object body: NDJSON lines or one JSON array (json-array).",
            ),
            opt(
                "--compression",
                env="COMPRESSION",
                type=click.Choice(COMPRESSIONS),
                default="gzip",
                show_default=True,
                help="Body compression (sets the extension and Content-Encoding).",
            ),
            opt(
                "--compression-level",
                env="COMPRESSION_LEVEL",
                type=click.IntRange(1, 19),
                help="gzip 1-9 (default 5; 1 is ISA-L, the fastest; 2-9 zlib-ng), zstd 1-19 (default 3). "
                "Speed and size per level: docs/s3-batch.md.",
            ),
            opt(
                "--max-records",
                env="MAX_RECORDS",
                type=click.IntRange(min=1),
                default=DEFAULT_MAX_RECORDS,
                show_default=True,
                help="Seal an object at this many records.",
            ),
            opt(
                "--max-bytes",
                env="MAX_BYTES",
                type=BYTES,
                default=DEFAULT_MAX_BYTES,
                show_default="64MiB",
                help="Seal before the stored (compressed) object would exceed this (at least one "
                "--max-line-bytes record).",
            ),
            opt(
                "--max-age-secs",
                env="MAX_AGE_SECS",
                type=click.FloatRange(min=0.01),
                default=DEFAULT_MAX_AGE_SECS,
                show_default=True,
                help="Seal an object this long after its first record.",
            ),
            opt(
                "--max-open-batches",
                env="MAX_OPEN_BATCHES",
                type=click.IntRange(min=1),
                default=DEFAULT_MAX_OPEN_BATCHES,
                show_default=True,
                help="Partitions open at once ({field:..}/{date}/{hour}); the oldest is sealed beyond it.",
            ),
            opt(
                "--key-template",
                env="KEY_TEMPLATE",
                default=DEFAULT_KEY_TEMPLATE,
                show_default=True,
                help="Placeholders: {prefix} {t1} {t2} {t3} {date} {hour} {hash} {field:NAME} {ext}.",
            ),
            opt(
                "--time-field",
                env="TIME_FIELD",
                help="Dotted path of the record time (default: timestamp, auditEventTime, eventCreated, else arrival).",
            ),
            opt(
                "--preset",
                env="PRESET",
                type=click.Choice(sorted(PRESETS)),
                help="harness: 30-minute objects with a JSON-array body (the Harness audit-streaming cadence).",
            ),
            opt(
                "--validate",
                "validate_kind",
                env="VALIDATE",
                type=click.Choice(["harness-audit"]),
                help="Reject records that do not fit this schema (counted, sent to --dead-letter).",
            ),
            opt(
                "--schema",
                "schema_path",
                env="SCHEMA",
                type=click.Path(dir_okay=False),
                help="Reject records that do not fit this JSON Schema file.",
            ),
            spool_options,
            opt(
                "--fsync-interval-ms",
                env="FSYNC_INTERVAL_MS",
                type=click.IntRange(min=1),
                default=DEFAULT_FSYNC_INTERVAL_MS,
                show_default=True,
                help="The spool is fsynced at least this often: what a power loss can take. (Records are accepted "
                "on write, after every input chunk, which survives a kill -9.)",
            ),
            opt(
                "--max-spool-bytes",
                env="MAX_SPOOL_BYTES",
                type=BYTES,
                default=DEFAULT_MAX_SPOOL_BYTES,
                show_default="2GiB",
                help="When the spool holds this much, stop reading stdin (back-pressure).",
            ),
            opt(
                "--multipart-threshold-bytes",
                env="MULTIPART_THRESHOLD_BYTES",
                type=BYTES,
                default=16 * 1024 * 1024,
                show_default="16MiB",
                help="Objects above this use multipart upload.",
            ),
            opt(
                "--drain-timeout-secs",
                env="DRAIN_TIMEOUT_SECS",
                type=click.FloatRange(min=0),
                default=DEFAULT_DRAIN_TIMEOUT_SECS,
                show_default=True,
                help="At end of input or SIGTERM, wait this long for uploads; the rest stays spooled.",
            ),
            opt(
                "--retry-max-delay-secs",
                env="RETRY_MAX_DELAY_SECS",
                type=click.FloatRange(min=0.01),
                default=DEFAULT_RETRY_MAX_DELAY_SECS,
                show_default=True,
                help="Cap of the per-object backoff.",
            ),
            opt(
                "--retry-mode",
                env="RETRY_MODE",
                type=click.Choice(["standard", "adaptive"]),
                default="standard",
                show_default=True,
                help="botocore retry mode inside each attempt.",
            ),
            opt(
                "--startup-check/--no-startup-check",
                env="STARTUP_CHECK",
                default=True,
                show_default=True,
                help=(
                    "HeadBucket at start: a refused destination (credentials, missing bucket) is warned about "
                    "at once; its records are spooled and the exit code (3/4) comes at the end."
                ),
            ),
            backlog_age_option,
            s3_options,
            stream_options,
            log_options,
        ],
    )


def apply_preset(ctx: click.Context, kwargs: dict[str, Any]) -> None:
    """A preset sets values the user did not give explicitly (flags and env vars win)."""
    preset = kwargs.pop("preset")
    if not preset:
        return
    for name, value in PRESETS[preset].items():
        if ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT:
            kwargs[name] = value


def build_config(
    kwargs: dict[str, Any], runtime: Runtime, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> SinkConfig:
    dests = parse_destinations(split_dests(kwargs["dest_values"]))
    compression, level = kwargs["compression"], kwargs["compression_level"]
    spec = BodySpec(kwargs["body_format"], compression, level)
    try:
        template = KeyTemplate.parse(kwargs["key_template"])
        template.check(
            prefixes=[d.prefix for d in dests],
            ext=spec.extension,
            file_store=any(d.scheme == "file" for d in dests),
        )
    except KeyTemplateError as exc:
        raise ConfigError(
            f"--key-template {kwargs['key_template']!r}: {exc}",
            "see s3-batch --help for the placeholders; keys need {hash}, and no '..', '//' or names starting with '.'",
        ) from None
    floor = one_record_bound_bytes(spec, max_line_bytes)
    if kwargs["max_bytes"] < floor:
        raise ConfigError(
            f"--max-bytes {kwargs['max_bytes']} is smaller than one record of --max-line-bytes {max_line_bytes} "
            f"can make an object ({floor} bytes with --compression {compression})",
            f"raise --max-bytes to at least {floor}, or lower --max-line-bytes: objects never exceed --max-bytes",
        )
    if compression == "gzip" and level is not None and level > 9:
        raise ConfigError(f"--compression-level {level} is not a gzip level", "use 1-9 for gzip")
    if kwargs["sse_kms_key_id"] and kwargs["sse"] != "aws:kms":
        raise ConfigError("--sse-kms-key-id needs --sse aws:kms", "add --sse aws:kms")
    validator = None
    if kwargs["validate_kind"] or kwargs["schema_path"]:
        validator = build_validator(kwargs["validate_kind"], kwargs["schema_path"])
    spool_dir, temporary = resolve_spool_dir(kwargs["spool_dir"], kwargs["state_dir"])
    if kwargs["state_dir"] and not kwargs["spool_dir"]:
        claim_state_dir(Path(kwargs["state_dir"]), OWNER)  # 0700, writable, not another command's
    if temporary:
        runtime.log.warning(
            f"no --spool-dir or --state-dir: spooling in {spool_dir}; give a spool directory so "
            "records survive a restart"
        )
    return SinkConfig(
        destinations=dests,
        spool_dir=spool_dir,
        spool_is_temporary=temporary,
        spec=spec,
        template=template,
        time_field=kwargs["time_field"],
        limits=Limits(kwargs["max_records"], kwargs["max_bytes"], kwargs["max_age_secs"], kwargs["max_open_batches"]),
        fsync_interval_ms=kwargs["fsync_interval_ms"],
        max_spool_bytes=kwargs["max_spool_bytes"],
        drain_timeout_secs=kwargs["drain_timeout_secs"],
        retry_max_delay_secs=kwargs["retry_max_delay_secs"],
        startup_check=kwargs["startup_check"],
        max_backlog_age_secs=kwargs["max_backlog_age_secs"],
        s3=S3Options(
            profile=kwargs["profile"],
            region=kwargs["region"],
            endpoint_url=kwargs["endpoint_url"],
            role_arn=kwargs["role_arn"],
            external_id=kwargs["external_id"],
            retry_mode=kwargs["retry_mode"],
            sse=kwargs["sse"],
            sse_kms_key_id=kwargs["sse_kms_key_id"],
            storage_class=kwargs["storage_class"],
            multipart_threshold_bytes=kwargs["multipart_threshold_bytes"],
        ),
        validator=validator,
    )


def split_dests(values: tuple[str, ...]) -> list[str]:
    """Env S3_BATCH_DEST may hold several URLs separated by spaces or commas."""
    out: list[str] = []
    for value in values:
        out.extend(part for part in re.split(r"[\s,]+", value) if part)
    return out
