"""aws-discovery's configuration: `SyncConfig`, the options that fill it, and what they build
(the tag selection, the AWS session and EC2 reader, the regions).

Every option has an AWS_DISCOVERY_* environment variable; list options take comma lists (AWS tag
keys and values cannot contain commas) or repeated flags.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from harmony_pipes._core.aws import make_session
from harmony_pipes._core.errors import ConfigError
from harmony_pipes._core.options import apply_options, env_options, log_options, state_option

from .classify import Selection, TagSelector, key_name
from .ec2 import Ec2Reader

F = TypeVar("F", bound=Callable[..., Any])
ENV = "AWS_DISCOVERY_"
COMMAND = "aws-discovery"
opt = env_options(ENV)  # every option's env var is AWS_DISCOVERY_<NAME>
STATES = ("pending", "running", "shutting-down", "terminated", "stopping", "stopped")


class CommaList(click.ParamType):
    """`a,b` or repeated options; the env var is comma separated (AWS tags cannot hold commas)."""

    name = "LIST"
    envvar_list_splitter = ","

    def convert(self, value: Any, param: Any, ctx: Any) -> list[str]:
        if isinstance(value, list | tuple):
            return [str(v) for v in value]
        return [part.strip() for part in str(value).split(",") if part.strip()]


def flat(values: Iterable[Any] | None) -> list[str]:
    out: list[str] = []
    for value in values or ():
        if isinstance(value, list | tuple):
            out.extend(flat(value))
        elif value is not None and str(value).strip():
            out.append(str(value).strip())
    return list(dict.fromkeys(out))


def aws_options(f: F) -> F:
    """Where to look and as whom: regions, credentials, endpoint, retries."""
    options = [
        opt(
            "--regions",
            env="REGIONS",
            type=CommaList(),
            multiple=True,
            help="Regions to read (comma list or repeated), or `all` for every enabled region "
            "(DescribeRegions). Default: the profile/AWS_REGION region.",
        ),
        opt("--profile", env="PROFILE", help="AWS profile (otherwise boto3's normal credential chain)."),
        opt(
            "--endpoint-url",
            env="ENDPOINT_URL",
            help="EC2/STS endpoint (e.g. a moto server); default AWS (AWS_ENDPOINT_URL also works).",
        ),
        opt(
            "--role-arn",
            env="ROLE_ARN",
            help="Assume this role (cross-account); credentials are refreshed before they expire.",
        ),
        opt("--external-id", env="EXTERNAL_ID", help="ExternalId for --role-arn (the trust policy condition)."),
        opt(
            "--role-duration-secs",
            env="ROLE_DURATION_SECS",
            type=click.IntRange(min=900, max=43200),
            default=3600,
            show_default=True,
            help="Lifetime asked for the assumed-role credentials; they are renewed before they expire.",
        ),
        opt(
            "--retry-mode",
            env="RETRY_MODE",
            type=click.Choice(["adaptive", "standard", "legacy"]),
            default="adaptive",
            show_default=True,
            help="botocore retry mode for EC2 calls.",
        ),
        opt(
            "--max-attempts",
            env="MAX_ATTEMPTS",
            type=click.IntRange(min=1),
            default=5,
            show_default=True,
            help="Attempts per EC2 call (retries on throttling and 5xx) before a region counts as failed.",
        ),
        opt(
            "--read-timeout-secs",
            env="READ_TIMEOUT_SECS",
            type=click.FloatRange(min=1),
            default=60,
            show_default=True,
            help="Seconds to wait for one EC2 response page before retrying it.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def filter_options(f: F) -> F:
    options = [
        opt(
            "--vpcs",
            env="VPCS",
            type=CommaList(),
            multiple=True,
            help="VPC ids to read (comma list or repeated). Default: every VPC in the selected regions.",
        ),
        opt(
            "--instance-states",
            env="INSTANCE_STATES",
            type=CommaList(),
            multiple=True,
            help="Instance states to include (comma list). Default: running.",
        ),
        opt(
            "--page-size",
            env="PAGE_SIZE",
            type=click.IntRange(min=5, max=1000),
            default=1000,
            show_default=True,
            help="DescribeInstances MaxResults per page (AWS allows 5-1000; every page is one request).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def merged_param(ctx: click.Context, name: str, value: Any) -> Any:
    """A subcommand option falls back to the same option given before the subcommand name.

    `aws-discovery --regions x list-tags` and `aws-discovery list-tags --regions x` are the
    same; an option the subcommand only has by default takes the group's explicit value.
    """
    from click.core import ParameterSource

    unset = (None, ParameterSource.DEFAULT)
    if ctx.get_parameter_source(name) not in unset and value not in (None, (), [], ""):
        return value
    parent = ctx.parent
    if parent is None or name not in parent.params or parent.get_parameter_source(name) in unset:
        return value
    return parent.params[name]


def parse_states(values: Iterable[Any]) -> tuple[str, ...]:
    states = flat(values) or ["running"]
    bad = [s for s in states if s not in STATES]
    if bad:
        raise ConfigError(f"unknown instance state {bad[0]!r}", f"use some of {', '.join(STATES)}")
    return tuple(states)


class AwsContext:
    """Session, reader and regions built lazily from the AWS options."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self._reader: Any = None
        self._session: Any = None

    @property
    def session(self) -> Any:
        if self._session is None:
            p = self.params
            region = self.home_region_hint()
            self._session = make_session(
                profile=p.get("profile"),
                region=region,
                role_arn=p.get("role_arn"),
                external_id=p.get("external_id"),
                session_name="aws-discovery",
                endpoint_url=p.get("endpoint_url"),
                duration_secs=int(p.get("role_duration_secs") or 3600),
            )
        return self._session

    def home_region_hint(self) -> str | None:
        regions = [r for r in flat(self.params.get("regions")) if r.lower() != "all"]
        return regions[0] if regions else None

    def home_region(self) -> str:
        region = self.home_region_hint() or self.session.region_name
        if not region:
            raise ConfigError(
                "no region selected", "pass --regions (or AWS_DISCOVERY_REGIONS, AWS_REGION), e.g. us-east-1"
            )
        return region

    @property
    def reader(self) -> Any:
        if self._reader is None:
            self._reader = Ec2Reader(
                self.session,
                endpoint_url=self.params.get("endpoint_url"),
                retry_mode=self.params.get("retry_mode") or "adaptive",
                max_attempts=self.params.get("max_attempts") or 5,
                read_timeout_secs=self.params.get("read_timeout_secs") or 60,
                page_size=int(self.params.get("page_size") or 1000),
            )
        return self._reader

    def regions(self) -> tuple[str, ...]:
        requested = flat(self.params.get("regions")) or [self.home_region()]
        return resolve_regions(self.reader, requested, self.home_region_hint() or self.home_region())


def build_selection(params: dict[str, Any]) -> Selection:
    try:
        selectors = tuple(dict.fromkeys(TagSelector.parse(t) for t in flat(params.get("tags"))))
    except ValueError as exc:
        raise ConfigError(str(exc), "choose a designated tag (see `aws-discovery list-tags`)") from None
    if not selectors:
        raise ConfigError(
            "no tags selected: only instances holding a selected tag are integrated",
            "pass --tags KEY or KEY=VALUE (env AWS_DISCOVERY_TAGS); `aws-discovery list-tags` shows them",
        )
    user, key = params.get("default_user"), params.get("default_key")
    if bool(user) != bool(key):
        raise ConfigError("--default-user and --default-key go together", "set both (or neither) of them")
    known = frozenset(key_name(k) for k in flat(params.get("known_keys"))) or None
    default_key = key_name(key) if key else None
    if known is not None and default_key and default_key not in known:
        raise ConfigError(f"--default-key {default_key!r} is not in --known-keys", "add it to --known-keys")
    return Selection(
        tags=selectors,
        site=params.get("site"),
        default_user=user or None,
        default_key=default_key,
        known_keys=known,
    )


@dataclass(frozen=True)
class SyncConfig:
    regions: tuple[str, ...]
    selection: Selection
    vpcs: tuple[str, ...] = ()
    states: tuple[str, ...] = ("running",)
    interval_secs: float = 60.0
    once: bool = False
    resync: bool = False
    state_dir: str | None = None


def sync_options(f: F) -> F:
    """Every option of the sync itself (the group's own options)."""
    return apply_options(
        f,
        [
            aws_options,
            filter_options,
            opt(
                "--tags",
                env="TAGS",
                type=CommaList(),
                multiple=True,
                help="Selected tags, KEY or KEY=VALUE (repeat or comma list). An instance holding ANY of them "
                "is integrated (OR semantics).",
            ),
            opt("--site", env="SITE", help="Label of the site (connector) this integration belongs to; one per site."),
            opt("--default-user", env="DEFAULT_USER", help="Linux user for instances without a checkpoint_ssh tag."),
            opt("--default-key", env="DEFAULT_KEY", help="Key name (with or without .pem) used with --default-user."),
            opt(
                "--known-keys",
                env="KNOWN_KEYS",
                type=CommaList(),
                multiple=True,
                help="Key names that exist on the access side; a tag naming another key configures nothing.",
            ),
            opt(
                "--interval-secs",
                env="INTERVAL_SECS",
                type=click.FloatRange(min=1),
                default=60,
                show_default=True,
                help="Seconds between sync cycles.",
            ),
            opt("--once", env="ONCE", is_flag=True, help="Run one cycle and exit."),
            opt(
                "--resync",
                env="RESYNC",
                is_flag=True,
                help="Re-emit a full snapshot instead of diffs against the state.",
            ),
            state_option("AWS_DISCOVERY_STATE_DIR", "discovery"),
            log_options,
        ],
    )


def build_sync(params: dict[str, Any]) -> tuple[SyncConfig, AwsContext]:
    """The sync's configuration and AWS context from parsed options (regions resolved here)."""
    selection = build_selection(params)
    states = parse_states(params.get("instance_states"))
    aws = AwsContext(params)
    config = SyncConfig(
        regions=aws.regions(),
        selection=selection,
        vpcs=tuple(flat(params.get("vpcs"))),
        states=states,
        interval_secs=float(params["interval_secs"]),
        once=bool(params.get("once")),
        resync=bool(params.get("resync")),
        state_dir=params.get("state_dir"),
    )
    return config, aws


def resolve_regions(reader: Any, requested: Iterable[str], home_region: str) -> tuple[str, ...]:
    """`all` -> every enabled region (DescribeRegions); otherwise the list as given, deduplicated."""
    requested = list(requested)
    if any(r.lower() == "all" for r in requested):
        return tuple(r["RegionName"] for r in reader.list_regions(home_region))
    return tuple(dict.fromkeys(requested))
