"""`aws-discovery`: EC2 instances -> zero-trust SSH/RDP inventory records (NDJSON on stdout).

Click wiring only: options in `config.py`, the processor in `run.py`, the rules in `classify.py`
/ `diff.py`, the report in `report.py`. boto3 is imported only when a command talks to AWS.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from harmony_pipes._core.cli import command_main
from harmony_pipes._core.errors import ConfigError, OutputClosed, PipesError, RuntimeFailure
from harmony_pipes._core.help import CONTEXT_SETTINGS, with_examples
from harmony_pipes._core.options import Runtime, state_option
from harmony_pipes._core.runner import run_command
from harmony_pipes._core.state import read_versioned_file
from harmony_pipes._core.version import version_option

from .classify import count_selectable_tags
from .config import (
    COMMAND,
    ENV,
    AwsContext,
    aws_options,
    build_selection,
    build_sync,
    filter_options,
    flat,
    merged_param,
    opt,
    parse_states,
    sync_options,
)
from .ec2 import build_filters
from .inventory_state import STATE_FILE, migrate
from .policy import permissions_policy, trust_policy
from .probe import run_checks
from .report import build_report, render
from .run import DiscoverySource

MAIN_HELP = """Emit EC2 instances as zero-trust access inventory records (NDJSON on stdout).

\b
Selection: an instance is integrated when it holds ANY of the --tags (OR):
  --tags env=prod --tags team   ->  env is "prod"  OR  it has a "team" tag (any value).
  Name and checkpoint_ssh:* tags can never be selected.
Linux -> SSH app, managed: one user per tag checkpoint_ssh:<user> = <key>.pem, or
  --default-user/--default-key when it has none; otherwise `unconfigured` (with reasons).
Windows (Platform == windows) -> RDP app, direct.

\b
Output: first `snapshot` records, then per cycle only `add`, `update`, `remove`
(and `unconfigured` once per instance). `aws-discovery report` shows the current picture
from --state-dir. Exit codes: 0 ok, 1 runtime, 2 usage/config,
3 credentials or permission refused, 4 endpoint unreachable, 75 throttled, try again.
"""


def build(params: dict[str, Any], runtime: Runtime) -> DiscoverySource:
    """The processor from parsed options (also used by `harmony-pipes chain`)."""
    config, aws = build_sync(params)
    return DiscoverySource(runtime, aws.reader, config)


@click.group(
    invoke_without_command=True,
    help=MAIN_HELP,
    context_settings={**CONTEXT_SETTINGS, "max_content_width": 110},
    epilog=with_examples(
        "aws-discovery list-tags --regions eu-west-1,eu-central-1  # which tags can select instances",
        "aws-discovery --tags env=prod --site eu-prod --default-user ec2-user --default-key ops --once",
        "aws-discovery --tags env=prod --site eu-prod --interval-secs 60 --state-dir /var/lib/harmony-pipes/discovery",
    ),
)
@sync_options
@version_option(COMMAND)
@click.pass_context
def cli(ctx: click.Context, **params: Any) -> int | None:
    ctx.ensure_object(dict)
    if ctx.invoked_subcommand is not None:
        return None
    build_selection(params)  # usage errors first: exit 2 before anything starts
    parse_states(params.get("instance_states"))
    runtime = Runtime.from_options(COMMAND, params)
    return run_command(build(params, runtime))


def _aws_for(ctx: click.Context, params: dict[str, Any]) -> AwsContext:
    merged = {name: merged_param(ctx, name, value) for name, value in params.items()}
    return AwsContext(merged)


def _echo_json(obj: Any) -> None:
    import orjson

    click.echo(orjson.dumps(obj).decode())


@cli.command(
    "list-regions",
    epilog=with_examples("aws-discovery list-regions", "aws-discovery list-regions --json --profile prod"),
)
@aws_options
@opt("--json", "as_json", env="JSON", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_regions(ctx: click.Context, as_json: bool, **params: Any) -> None:
    """Enabled regions (DescribeRegions)."""
    aws = _aws_for(ctx, params)
    for region in aws.reader.list_regions(aws.home_region()):
        if as_json:
            _echo_json({"region": region["RegionName"], "opt_in_status": region.get("OptInStatus")})
        else:
            click.echo(region["RegionName"])


@cli.command(
    "list-vpcs",
    epilog=with_examples(
        "aws-discovery list-vpcs --regions eu-west-1", "aws-discovery list-vpcs --regions eu-west-1,us-east-1 --json"
    ),
)
@aws_options
@opt("--json", "as_json", env="JSON", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_vpcs(ctx: click.Context, as_json: bool, **params: Any) -> None:
    """VPCs per selected region (DescribeVpcs), to choose --vpcs."""
    aws = _aws_for(ctx, params)
    if not as_json:
        click.echo(f"{'REGION':<16} {'VPC':<24} {'CIDR':<18} {'DEFAULT':<8} NAME")
    for region in aws.regions():
        for vpc in aws.reader.list_vpcs(region):
            name = next((t.get("Value", "") for t in vpc.get("Tags") or () if t.get("Key") == "Name"), "")
            row = {
                "region": region,
                "vpc_id": vpc["VpcId"],
                "cidr": vpc.get("CidrBlock"),
                "is_default": bool(vpc.get("IsDefault")),
                "name": name or None,
            }
            if as_json:
                _echo_json(row)
            else:
                click.echo(
                    f"{region:<16} {vpc['VpcId']:<24} {vpc.get('CidrBlock') or '-':<18} "
                    f"{'yes' if row['is_default'] else 'no':<8} {name}"
                )


@cli.command(
    "list-tags",
    epilog=with_examples(
        "aws-discovery list-tags --regions eu-west-1",
        "aws-discovery list-tags --regions eu-west-1 --instance-states running --json",
    ),
)
@aws_options
@filter_options
@opt("--json", "as_json", env="JSON", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_tags(ctx: click.Context, as_json: bool, **params: Any) -> None:
    """Selectable tags with instance counts (Name, checkpoint_ssh:* and 0-instance tags excluded).

    Counts come from DescribeInstances under the same --instance-states and --vpcs as a sync, so
    a tag held only by stopped or terminated instances is not offered. Each TAG is exactly what
    to pass to --tags: KEY matches any value, KEY=VALUE one value.
    """

    aws = _aws_for(ctx, params)
    states = parse_states(merged_param(ctx, "instance_states", params.get("instance_states")))
    vpcs = flat(merged_param(ctx, "vpcs", params.get("vpcs")))
    filters = build_filters(states=states, vpcs=vpcs)
    results = aws.reader.describe_regions(aws.regions(), filters, keep=lambda _, inst: {"Tags": inst.get("Tags")})
    for result in results:
        if result.error is not None:
            raise result.error
    counts = count_selectable_tags(i for r in results for i in r.instances)
    rows = sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] is not None, kv[0][1] or ""))
    if not as_json:
        click.echo(f"{'TAG':<40} INSTANCES")
    for (key, value), count in rows:
        if count <= 0:
            continue
        tag = key if value is None else f"{key}={value}"
        if as_json:
            _echo_json({"tag": tag, "key": key, "value": value, "instances": count})
        else:
            click.echo(f"{tag:<40} {count}")


@cli.command(
    "test",
    epilog=with_examples(
        "aws-discovery test --regions eu-west-1",
        "aws-discovery test --role-arn arn:aws:iam::123456789012:role/discovery --external-id ops-2024",
    ),
)
@aws_options
@click.pass_context
def test_cmd(ctx: click.Context, **params: Any) -> int:
    """Check credentials, the assumed role, DescribeRegions and one DescribeInstances per region."""
    return run_checks(_aws_for(ctx, params))


@cli.command(
    "policy",
    epilog=with_examples(
        "aws-discovery policy --kind permissions",
        "aws-discovery policy --kind trust --trusted-account 123456789012 --external-id ops-2024",
    ),
)
@click.option(
    "--kind",
    type=click.Choice(["both", "permissions", "trust"]),
    default="both",
    show_default=True,
    envvar=ENV + "POLICY_KIND",
    show_envvar=True,
    help="Which policy document to print.",
)
@click.option(
    "--trusted-account",
    envvar=ENV + "TRUSTED_ACCOUNT",
    show_envvar=True,
    default="<TRUSTED_ACCOUNT_ID>",
    show_default=True,
    help="Account id allowed to assume the role (where aws-discovery runs).",
)
@opt(
    "--external-id",
    env="EXTERNAL_ID",
    default="<EXTERNAL_ID>",
    show_default=True,
    help="ExternalId required by the trust policy (the sts:ExternalId condition).",
)
def policy(kind: str, trusted_account: str, external_id: str) -> None:
    """Print the minimal IAM permissions policy and the role trust policy (with ExternalId)."""
    docs = []
    if kind in ("both", "permissions"):
        docs.append(("# permissions policy: IAM > Policies > Create policy > JSON", permissions_policy()))
    if kind in ("both", "trust"):
        docs.append(
            (
                "# trust policy: IAM > Roles > the role > Trust relationships",
                trust_policy(trusted_account, external_id),
            )
        )
    import json

    for i, (title, doc) in enumerate(docs):
        if kind == "both":
            click.echo(("\n" if i else "") + title)
        click.echo(json.dumps(doc, indent=2))


@cli.command(
    "report",
    epilog=with_examples(
        "aws-discovery report --state-dir /var/lib/harmony-pipes/discovery",
        "aws-discovery report --json --state-dir /var/lib/harmony-pipes/discovery",
    ),
)
@state_option(
    "AWS_DISCOVERY_STATE_DIR",
    "discovery",
    "The sync's --state-dir to report on (default: $HARMONY_PIPES_STATE_DIR/discovery if set).",
)
@opt(
    "--json",
    "as_json",
    env="JSON",
    is_flag=True,
    help="One JSON object (schemas/discovery-report.schema.json) instead of text.",
)
@click.pass_context
def report_cmd(ctx: click.Context, state_dir: str | None, as_json: bool) -> int:
    """What is synced, what is left unconfigured and why, which regions fail, from --state-dir.

    Reads only the state the sync writes (safe while it runs; never calls AWS): site, last
    successful sync, apps by region, VPC and type, unconfigured instances grouped by reason with
    the fix, failing regions since when, tags in use. Aligned columns on a terminal,
    tab-separated fields in a pipe. Exit codes: 0 printed, 2 no state yet (never synced),
    1 state unreadable.
    """
    state_dir = merged_param(ctx, "state_dir", state_dir)
    if not state_dir:
        raise ConfigError(
            "no state directory: the report reads the inventory a sync keeps in --state-dir",
            "pass --state-dir DIR (env AWS_DISCOVERY_STATE_DIR, or HARMONY_PIPES_STATE_DIR/discovery)",
        )
    path = os.path.join(state_dir, STATE_FILE)
    try:
        found = read_versioned_file(Path(path))
        data = None if found is None else migrate(*found, path=path)
    except PipesError as exc:  # unreadable is a runtime failure here, not a usage error
        raise RuntimeFailure(exc.message, exc.fix) from None
    if data is None:
        raise ConfigError(
            f"no inventory in {state_dir}: aws-discovery has not synced there yet",
            f"run the first sync: aws-discovery --regions <regions> --tags <tags> --site <site> "
            f"--state-dir {state_dir} --once",
        )
    report = build_report(data, now_secs=time.time(), state_dir=state_dir)
    if as_json:
        import orjson

        text = orjson.dumps(report).decode() + "\n"
    else:
        text = "\n".join(render(report, columns=sys.stdout.isatty())) + "\n"
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:  # `report | head`, or the terminal went away (EIO): nobody reads any more
        if isinstance(exc, BrokenPipeError) or exc.errno == errno.EIO:
            raise OutputClosed() from None
        raise
    return 0


STAGE_COMMAND = cli  # parses an aws-discovery stage of `harmony-pipes chain`
main = command_main(cli, "aws-discovery")

if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
