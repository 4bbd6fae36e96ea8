"""Turning `s3-batch` options into a `SinkConfig`: sizes, presets, the spool location, checks."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import click

from harmony_pipes._core.errors import ConfigError
from harmony_pipes._core.ndjson import DEFAULT_MAX_LINE_BYTES
from harmony_pipes._core.options import Runtime
from harmony_pipes._core.state import claim_state_dir

SPOOL_SUBDIR = "s3-batch-spool"
PRESETS = {"harness": {"max_age_secs": 1800.0, "body_format": "json-array"}}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}


class ByteSize(click.ParamType):
    """`67108864`, `64MiB`, `100MB`, `1GiB`."""

    name = "bytes"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = _SIZE_RE.match(str(value))
        if not match or match.group(2).lower() not in _UNITS:
            self.fail(f"{value!r} is not a size (e.g. 64MiB, 100MB, 1048576)", param, ctx)
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
        if size < 1:
            self.fail("must be at least 1 byte", param, ctx)
        return size


BYTES = ByteSize()


def apply_preset(ctx: click.Context, kwargs: dict[str, Any]) -> None:
    """A preset sets values the user did not give explicitly (flags and env vars win)."""
    preset = kwargs.pop("preset")
    if not preset:
        return
    for name, value in PRESETS[preset].items():
        if ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT:
            kwargs[name] = value


def resolve_spool_dir(spool_dir: str | None, state_dir: str | None) -> tuple[Path, bool]:
    if spool_dir:
        return Path(spool_dir), False
    if state_dir:
        return Path(state_dir) / SPOOL_SUBDIR, False
    return Path(tempfile.mkdtemp(prefix="s3-batch-spool-")), True


def build_config(kwargs: dict[str, Any], runtime: Runtime, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Any:
    from .batcher import Limits
    from .body import BodySpec, one_record_bound_bytes
    from .keys import KeyTemplate, KeyTemplateError
    from .sink import SinkConfig
    from .spool import OWNER
    from .stores import S3Options, parse_destinations

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
        from .validate import build_validator

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
