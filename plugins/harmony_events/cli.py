"""`harmony-events`: collect Harmony Email & Collaboration security events as NDJSON.

`harmony-events [collect] [OPTIONS]` collects; `harmony-events test` checks credentials and
connectivity. Thin layer: options → settings → client/collector. Heavy imports stay lazy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from harmony_pipes._core.cli import command_main
from harmony_pipes._core.help import CONTEXT_SETTINGS, with_examples
from harmony_pipes._core.options import log_options, state_option
from harmony_pipes._core.version import version_option

from .settings import REGION_GATEWAYS

F = TypeVar("F", bound=Callable[..., Any])
COMMAND = "harmony-events"


class _DefaultGroup(click.Group):
    """`harmony-events --once` means `harmony-events collect --once`; `test` is a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] != "--version"):
            args = ["collect", *args]
        return super().parse_args(ctx, args)


def _opt(*names: str, envvar: str, **kwargs: Any) -> Callable[[F], F]:
    return click.option(*names, envvar=envvar, show_envvar=True, **kwargs)


def connection_options(f: F) -> F:
    options = [
        _opt(
            "--base-url",
            envvar="HARMONY_BASE_URL",
            metavar="URL",
            help="Infinity Portal gateway [default: https://cloudinfra-gw-us.portal.checkpoint.com].",
        ),
        _opt(
            "--region",
            envvar="HARMONY_REGION",
            type=click.Choice(sorted(REGION_GATEWAYS), case_sensitive=False),
            help="Use this region's gateway instead of --base-url.",
        ),
        _opt("--client-id", envvar="HARMONY_CLIENT_ID", help="Client ID of the Infinity Portal API key."),
        _opt(
            "--access-key-file",
            envvar="HARMONY_ACCESS_KEY_FILE",
            type=click.Path(dir_okay=False),
            help="File holding the access (secret) key; else env HARMONY_ACCESS_KEY. Never on argv.",
        ),
        _opt(
            "--timeout-secs",
            envvar="HARMONY_TIMEOUT_SECS",
            type=click.FloatRange(min=0.1),
            default=30.0,
            show_default=True,
            help="Per-request timeout.",
        ),
        _opt(
            "--max-retries",
            envvar="HARMONY_MAX_RETRIES",
            type=click.IntRange(min=0),
            default=5,
            show_default=True,
            help="Retries of a request after 429, 5xx, timeouts and resets.",
        ),
        _opt(
            "--insecure",
            envvar="HARMONY_INSECURE",
            is_flag=True,
            help="Do not verify TLS certificates (warns on every start).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.group(cls=_DefaultGroup, context_settings=CONTEXT_SETTINGS)
@version_option(COMMAND)
def cli() -> None:
    """Collect Harmony Email & Collaboration security events (default) or `test` the connection."""


@cli.command(
    "collect",
    epilog=with_examples(
        "harmony-events test --region eu  # check credentials and connectivity first",
        "harmony-events --region eu --start 24h --once | harmony-alerts > alerts.ndjson",
        "harmony-events --region eu --interval-secs 60 --state-dir /var/lib/harmony-pipes/events | harmony-alerts",
        text="Run `harmony-events test --help` to check credentials and connectivity.",
    ),
)
@connection_options
@_opt(
    "--start",
    envvar="HARMONY_START",
    metavar="TIME",
    help="First run only: ISO 8601 or relative (24h, 30m, 7d) [default: 1h].",
)
@_opt(
    "--end",
    envvar="HARMONY_END",
    metavar="TIME",
    help="Stop at this time (ISO 8601 or relative); implies one pass.",
)
@_opt("--once", envvar="HARMONY_ONCE", is_flag=True, help="Collect up to now, then exit.")
@_opt(
    "--interval-secs",
    envvar="HARMONY_INTERVAL_SECS",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Time between collection cycles when not --once.",
)
@_opt(
    "--types",
    envvar="HARMONY_TYPES",
    metavar="LIST",
    help="Event types, comma-separated (phishing,malware,...).",
)
@_opt(
    "--states",
    envvar="HARMONY_STATES",
    metavar="LIST",
    help="Event states, comma-separated (new,detected,...).",
)
@_opt(
    "--severities",
    envvar="HARMONY_SEVERITIES",
    metavar="LIST",
    help="Severities 1-5 or names, comma-separated.",
)
@_opt(
    "--saas",
    envvar="HARMONY_SAAS",
    metavar="LIST",
    help="SaaS names, comma-separated (office365_emails,...).",
)
@_opt(
    "--window-secs",
    envvar="HARMONY_WINDOW_SECS",
    type=click.IntRange(min=1),
    default=3600,
    show_default=True,
    help="Longest time window per query.",
)
@_opt(
    "--overlap-secs",
    envvar="HARMONY_OVERLAP_SECS",
    type=click.IntRange(min=0),
    default=300,
    show_default=True,
    help="Lookback re-read each cycle to catch late events (emitted once).",
)
@_opt(
    "--max-records-per-window",
    envvar="HARMONY_MAX_RECORDS_PER_WINDOW",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Windows are planned to hold half this many events; one returning this many is split.",
)
@_opt("--tenant", envvar="HARMONY_TENANT", help="Tenant name for log and stats lines (events stay untouched).")
@_opt(
    "--retry-base-delay-secs",
    envvar="HARMONY_RETRY_BASE_DELAY_SECS",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="First backoff step (full jitter, doubling, capped at 30 s).",
)
@state_option("HARMONY_EVENTS_STATE_DIR", "events")
@log_options
@version_option(COMMAND)
def collect_cmd(**kwargs: Any) -> int:
    """Write one security event per line on stdout, exactly as the API returned it, each once."""
    from harmony_pipes._core.options import Runtime

    runtime = Runtime.from_options(COMMAND, kwargs)
    from .run import run_collect

    return run_collect(runtime, kwargs, os.environ)


@cli.command(
    "test",
    epilog=with_examples(
        "harmony-events test --region eu",
        "harmony-events test --client-id 0123abcd --access-key-file /etc/harmony-pipes/access-key --region us",
        "harmony-events test --base-url https://cloudinfra-gw.portal.checkpoint.com --timeout-secs 10",
    ),
)
@connection_options
@log_options
def test_cmd(**kwargs: Any) -> int:
    """Authenticate and run one tiny query; print the cause and the fix of any failure."""
    for name in ("log_format", "log_level", "debug", "stats_interval_secs", "metrics_addr", "metrics_file"):
        kwargs.pop(name, None)
    from .run import run_test

    return run_test(kwargs, os.environ, click.echo)


main = command_main(cli, COMMAND)


def now_us() -> int:
    return time.time_ns() // 1000
