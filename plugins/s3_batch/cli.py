"""`s3-batch`: durable batching of NDJSON records into S3 (or file://) objects.

s3-batch --dest s3://bucket/prefix/ [--dest name=file:///dir/ ...]   run the sink
s3-batch pause|resume|status --spool-dir D [--dest NAME]              operate a running spool
s3-batch test --dest URL / s3-batch policy --dest URL                 check access, print IAM
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click
import orjson

from harmony_pipes._core.cli import command_main
from harmony_pipes._core.help import CONTEXT_SETTINGS, with_examples
from harmony_pipes._core.options import Runtime, StreamConfig
from harmony_pipes._core.runner import run_command
from harmony_pipes._core.version import version_option

from .config import (
    COMMAND,
    apply_preset,
    backlog_age_option,
    build_config,
    opt,
    s3_options,
    sink_options,
    split_dests,
    spool_options,
)
from .control import known_destinations, scan_backlog, set_paused, spool_path
from .health import STUCK_EXIT_CODE, stuck_rows
from .probe import render_policy, run_test
from .run import S3Sink


def build(params: dict[str, Any], runtime: Runtime) -> S3Sink:
    """The processor from parsed options (also used by `harmony-pipes chain`)."""
    if not params["dest_values"]:
        raise click.UsageError("give at least one --dest URL (or a subcommand; see --help)")
    apply_preset(click.get_current_context(), params)
    runtime.stats.status_out_counter = "records_accepted"  # records out = durably spooled, not receipts
    stream = StreamConfig.pop_from(params)
    return S3Sink(runtime, build_config(params, runtime, max_line_bytes=stream.max_line_bytes), stream)


@click.group(
    invoke_without_command=True,
    context_settings=CONTEXT_SETTINGS,
    epilog=with_examples(
        "harmony-alerts < events.ndjson | s3-batch --dest s3://my-bucket/harmony/ --state-dir /var/lib/s3-batch",
        "s3-batch --preset harness --validate harness-audit --dest s3://audit/harness/ --dead-letter bad.ndjson",
        "s3-batch test --dest s3://my-bucket/harmony/  # check access before the first run",
    ),
)
@sink_options
@version_option(COMMAND)
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
    runtime = Runtime.from_options(COMMAND, kwargs)
    return run_command(build(kwargs, runtime))


@cli.command(
    epilog=with_examples(
        "s3-batch pause --state-dir /var/lib/harmony-pipes/s3-batch",
        "s3-batch pause --spool-dir /var/spool/harmony-pipes --dest archive",
    )
)
@spool_options
@opt("--dest", "names", env="PAUSE_DEST", multiple=True, metavar="NAME", help="Destination (default: all).")
def pause(spool_dir: str | None, state_dir: str | None, names: tuple[str, ...]) -> int:
    """Stop uploading to a destination; records keep being spooled for it."""
    set_paused(spool_dir, state_dir, names, True)
    return 0


@cli.command(
    epilog=with_examples(
        "s3-batch resume --state-dir /var/lib/harmony-pipes/s3-batch",
        "s3-batch resume --spool-dir /var/spool/harmony-pipes --dest archive",
    )
)
@spool_options
@opt("--dest", "names", env="PAUSE_DEST", multiple=True, metavar="NAME", help="Destination (default: all).")
def resume(spool_dir: str | None, state_dir: str | None, names: tuple[str, ...]) -> int:
    """Upload again: the backlog is drained oldest first, from where it was paused."""
    set_paused(spool_dir, state_dir, names, False)
    return 0


@cli.command(
    epilog=with_examples(
        "s3-batch status --state-dir /var/lib/harmony-pipes/s3-batch",
        "s3-batch status --spool-dir /var/spool/harmony-pipes --dest archive",
    )
)
@spool_options
@opt("--dest", "names", env="PAUSE_DEST", multiple=True, metavar="NAME", help="Destination (default: all).")
@backlog_age_option
def status(spool_dir: str | None, state_dir: str | None, names: tuple[str, ...], max_backlog_age_secs: float) -> int:
    """Backlog per destination (objects, bytes, records, oldest age) as one JSON line each.

    Exits 75 when a destination's backlog is stuck: its oldest unsent object is older than
    --max-backlog-age-secs (paused destinations included); each such destination also gets one
    line on stderr. Otherwise 0.
    """
    path = spool_path(spool_dir, state_dir)
    dests = list(names) or known_destinations(path)
    rows = scan_backlog(path, dests, time.time_ns() // 1_000_000)
    for row in rows:
        click.echo(orjson.dumps(row).decode())
    stuck = stuck_rows(rows, max_backlog_age_secs)
    for reason in stuck:
        click.echo(f"s3-batch status: stuck: {reason}", err=True)
    return STUCK_EXIT_CODE if stuck else 0


@cli.command(
    "test",
    epilog=with_examples(
        "s3-batch test --dest s3://my-bucket/harmony/",
        "s3-batch test --dest s3://my-bucket/harmony/ --role-arn arn:aws:iam::123456789012:role/harmony-writer",
        "s3-batch test --dest file:///var/lib/harmony-pipes/out/",
    ),
)
@opt(
    "--dest",
    "dest_values",
    env="DEST",
    multiple=True,
    required=True,
    metavar="[NAME=]URL",
    help="Destination(s) to check.",
)
@s3_options
def test_command(dest_values: tuple[str, ...], **aws: Any) -> int:
    """Check credentials, the bucket, and write + delete a probe object; one line per failure."""
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


@cli.command(
    "policy",
    epilog=with_examples(
        "s3-batch policy --dest s3://my-bucket/harmony/",
        "s3-batch policy --dest s3://my-bucket/harmony/ --sse-kms-key-id alias/harmony --region eu-west-1",
    ),
)
@opt(
    "--dest",
    "dest_values",
    env="DEST",
    multiple=True,
    required=True,
    metavar="[NAME=]URL",
    help="s3:// destination to write the policy for.",
)
@opt("--sse-kms-key-id", env="SSE_KMS_KEY_ID", help="Also allow encrypting with this KMS key.")
@opt("--region", env="REGION", help="Region of the KMS key.")
def policy_command(dest_values: tuple[str, ...], sse_kms_key_id: str | None, region: str | None) -> int:
    """Print the least-privilege IAM policy (List + Write on the bucket/prefix)."""
    for url in split_dests(dest_values):
        click.echo(render_policy(url, sse_kms_key_id=sse_kms_key_id, region=region))
    return 0


STAGE_COMMAND = cli  # parses an s3-batch stage of `harmony-pipes chain`
main = command_main(cli, COMMAND)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
