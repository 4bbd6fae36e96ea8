"""`harmony-events`: collect Harmony Email & Collaboration security events as NDJSON.

`harmony-events [collect] [OPTIONS]` collects; `harmony-events test` checks credentials and
connectivity. Click wiring only: options in config.py, the processor in run.py.
"""

from __future__ import annotations

import os
from typing import Any

import click

from harmony_pipes._core.cli import command_main
from harmony_pipes._core.help import CONTEXT_SETTINGS, with_examples
from harmony_pipes._core.options import Runtime, log_options
from harmony_pipes._core.runner import run_command
from harmony_pipes._core.version import version_option

from .config import COMMAND, CollectConfig, ConnectionConfig, collect_options, connection_options, now_us
from .run import EventsSource, run_test


def build(params: dict[str, Any], runtime: Runtime) -> EventsSource:
    """The processor from parsed options (also used by `harmony-pipes chain`)."""
    return EventsSource(
        runtime, ConnectionConfig.from_params(params), CollectConfig.from_params(params, now_us()), os.environ
    )


class _DefaultGroup(click.Group):
    """`harmony-events --once` means `harmony-events collect --once`; `test` is a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] != "--version"):
            args = ["collect", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultGroup, context_settings=CONTEXT_SETTINGS)
@version_option(COMMAND)
def cli() -> None:
    """Collect Harmony Email & Collaboration security events (default) or `test` the connection."""


@cli.command(
    "collect",
    context_settings=CONTEXT_SETTINGS,
    epilog=with_examples(
        "harmony-events test --region eu  # check credentials and connectivity first",
        "harmony-events --region eu --start 24h --once | harmony-alerts > alerts.ndjson",
        "harmony-events --region eu --interval-secs 60 --state-dir /var/lib/harmony-pipes/events | harmony-alerts",
        text="Run `harmony-events test --help` to check credentials and connectivity.",
    ),
)
@collect_options
@version_option(COMMAND)
def collect_cmd(**kwargs: Any) -> int:
    """Write one security event per line on stdout, exactly as the API returned it, each once."""
    ConnectionConfig.from_params(kwargs)  # usage errors first: exit 2 before anything starts
    runtime = Runtime.from_options(COMMAND, kwargs)
    return run_command(build(kwargs, runtime))


@cli.command(
    "test",
    context_settings=CONTEXT_SETTINGS,
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
    return run_test(ConnectionConfig.from_params(kwargs), os.environ, click.echo)


STAGE_COMMAND = collect_cmd  # parses a harmony-events stage of `harmony-pipes chain`
main = command_main(cli, COMMAND)
