"""`aws-discovery`: EC2 instances -> zero-trust SSH/RDP inventory records (NDJSON on stdout).

Thin click layer: options in `settings.py`, the loop in `run.py`, the rules in `classify.py` /
`diff.py`. boto3 is imported only when a command actually talks to AWS.
"""

from __future__ import annotations

import os
from typing import Any

import click

from harmony_pipes._core.cli import command_main
from harmony_pipes._core.options import log_options, state_option

from .settings import (
    ENV,
    AwsContext,
    CommaList,
    aws_options,
    build_selection,
    env_option,
    filter_options,
    flat,
    merged_param,
    parse_states,
)

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
(and `unconfigured` once per instance). Exit codes: 0 ok, 1 runtime, 2 usage/config,
3 credentials or permission refused, 4 endpoint unreachable, 75 throttled, try again.
"""


@click.group(invoke_without_command=True, help=MAIN_HELP, context_settings={"max_content_width": 110})
@aws_options
@filter_options
@env_option(
    "--tags",
    "TAGS",
    type=CommaList(),
    multiple=True,
    help="Selected tags, KEY or KEY=VALUE (repeat or comma list). An instance holding ANY of them "
    "is integrated (OR semantics).",
)
@env_option("--site", "SITE", help="Label of the site (connector) this integration belongs to; one per site.")
@env_option("--default-user", "DEFAULT_USER", help="Linux user for instances without a checkpoint_ssh tag.")
@env_option("--default-key", "DEFAULT_KEY", help="Key name (with or without .pem) used with --default-user.")
@env_option(
    "--known-keys",
    "KNOWN_KEYS",
    type=CommaList(),
    multiple=True,
    help="Key names that exist on the access side; a tag naming another key configures nothing.",
)
@env_option(
    "--interval-secs",
    "INTERVAL_SECS",
    type=click.FloatRange(min=1),
    default=60,
    show_default=True,
    help="Seconds between sync cycles.",
)
@env_option("--once", "ONCE", is_flag=True, help="Run one cycle and exit.")
@env_option("--resync", "RESYNC", is_flag=True, help="Re-emit a full snapshot instead of diffs against the state.")
@state_option("AWS_DISCOVERY_STATE_DIR", "discovery")
@log_options
@click.pass_context
def cli(ctx: click.Context, **params: Any) -> int | None:
    ctx.ensure_object(dict)
    if ctx.invoked_subcommand is not None:
        return None
    from harmony_pipes._core.options import Runtime
    from harmony_pipes._core.state import StateDir

    from .run import SyncConfig, Syncer

    selection = build_selection(params)
    states = parse_states(params.get("instance_states"))
    runtime = Runtime.from_options("aws-discovery", params)
    aws = AwsContext(params)
    regions = aws.regions()
    config = SyncConfig(
        regions=regions,
        selection=selection,
        vpcs=tuple(flat(params.get("vpcs"))),
        states=states,
        interval_secs=float(params["interval_secs"]),
        once=bool(params.get("once")),
        resync=bool(params.get("resync")),
    )
    state = StateDir(params["state_dir"], owner="aws-discovery") if params.get("state_dir") else None
    try:
        return Syncer(runtime, aws.reader, config, state).run()
    finally:
        if state is not None:
            state.close()


def _aws_for(ctx: click.Context, params: dict[str, Any]) -> AwsContext:
    merged = {name: merged_param(ctx, name, value) for name, value in params.items()}
    return AwsContext(merged)


def _echo_json(obj: Any) -> None:
    import orjson

    click.echo(orjson.dumps(obj).decode())


@cli.command("list-regions")
@aws_options
@env_option("--json", "JSON", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_regions(ctx: click.Context, as_json: bool, **params: Any) -> None:
    """Enabled regions (DescribeRegions)."""
    aws = _aws_for(ctx, params)
    for region in aws.reader.list_regions(aws.home_region()):
        if as_json:
            _echo_json({"region": region["RegionName"], "opt_in_status": region.get("OptInStatus")})
        else:
            click.echo(region["RegionName"])


@cli.command("list-vpcs")
@aws_options
@env_option("--json", "JSON", "as_json", is_flag=True, help="One JSON object per line.")
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


@cli.command("list-tags")
@aws_options
@filter_options
@env_option("--json", "JSON", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_tags(ctx: click.Context, as_json: bool, **params: Any) -> None:
    """Selectable tags with instance counts (Name, checkpoint_ssh:* and 0-instance tags excluded).

    Counts come from DescribeInstances under the same --instance-states and --vpcs as a sync, so
    a tag held only by stopped or terminated instances is not offered. Each TAG is exactly what
    to pass to --tags: KEY matches any value, KEY=VALUE one value.
    """
    from .classify import count_selectable_tags
    from .ec2 import build_filters

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


@cli.command("test")
@aws_options
@click.pass_context
def test_cmd(ctx: click.Context, **params: Any) -> int:
    """Check credentials, the assumed role, DescribeRegions and one DescribeInstances per region."""
    from .probe import run_checks

    return run_checks(_aws_for(ctx, params))


@cli.command("policy")
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
@env_option(
    "--external-id",
    "EXTERNAL_ID",
    default="<EXTERNAL_ID>",
    show_default=True,
    help="ExternalId required by the trust policy (the sts:ExternalId condition).",
)
def policy(kind: str, trusted_account: str, external_id: str) -> None:
    """Print the minimal IAM permissions policy and the role trust policy (with ExternalId)."""
    from .policy import permissions_policy, trust_policy

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


main = command_main(cli, "aws-discovery")

if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
