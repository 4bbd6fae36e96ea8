"""`harmony-pipes`: the umbrella command — `harmony-pipes chain '…'` and the list of commands."""

from __future__ import annotations

from typing import Any

import click

from harmony_pipes._core.cli import command_main
from harmony_pipes._core.help import CONTEXT_SETTINGS, with_examples
from harmony_pipes._core.options import Runtime, log_options
from harmony_pipes._core.runner import report
from harmony_pipes._core.version import version_option

from .chain import run_chain

COMMAND = "harmony-pipes"

MAIN_HELP = """Fast NDJSON stream processors for Harmony Email & Collaboration events, S3 and EC2.

\b
Commands (each also runs on its own, see `COMMAND --help`):
  harmony-events   collect security events from the HEC Smart API (source)
  harmony-alerts   normalize, filter and deduplicate events into alerts (transform)
  s3-batch         batch records into S3 or file:// objects, durably (sink)
  aws-discovery    EC2 instances as zero-trust SSH/RDP inventory records (source)
  hec-emulator     a local HEC API for demos, tests and benchmarks
"""

CHAIN_HELP = """Run the stages of a pipe in one process, with ordered checkpoints.

STAGES is one argument, written as you would write the shell pipe: each stage is one of
harmony-events, harmony-alerts, s3-batch, aws-discovery with exactly its own options and
environment variables. A wrong option in any stage exits 2 before anything is read.

\b
The guarantee: records pass from stage to stage in memory; the sink commits first, then each
transform saves its state for what the sink committed, then the source saves its cursor, and
the sink's commit records where every stage stood. So kill -9 at any moment, then the same
command again with the same state dirs, and the destination holds every record exactly once.
SIGTERM/SIGINT/SIGHUP: the source stops at its next safe point, the rest is committed, exit 0.

\b
Output: the sink's receipts (or the last stage's records) on stdout; one {"stats": ...} line on
stderr with a "stages" list, one entry per stage. Exit code: the worst stage's
(2 > 3 > 4 > 1 > 65 > 75 > 0).

"""

CHAIN_EXAMPLES = (
    "harmony-pipes chain 'harmony-events --once --state-dir /var/lib/hp/events | harmony-alerts --state-dir "
    "/var/lib/hp/alerts | s3-batch --dest s3://my-bucket/harmony/ --state-dir /var/lib/hp/s3'",
    "harmony-pipes chain 'harmony-events --interval-secs 60 --state-dir /var/lib/hp/events | harmony-alerts "
    "--format ocsf --state-dir /var/lib/hp/alerts | s3-batch --dest file:///srv/alerts/ --state-dir /var/lib/hp/s3'",
    "harmony-pipes chain 'aws-discovery --tags env=prod --site eu --state-dir /var/lib/hp/discovery | s3-batch "
    "--dest s3://my-bucket/inventory/ --state-dir /var/lib/hp/s3-inventory'",
)


@click.group(help=MAIN_HELP, context_settings=CONTEXT_SETTINGS, epilog=with_examples(*CHAIN_EXAMPLES[:2]))
@version_option(COMMAND)
def cli() -> None:
    pass


@cli.command("chain", help=CHAIN_HELP, context_settings=CONTEXT_SETTINGS, epilog=with_examples(*CHAIN_EXAMPLES))
@click.argument("stages", metavar="'STAGE | STAGE | ...'")
@log_options
@version_option(COMMAND)
def chain_cmd(stages: str, **params: Any) -> int:
    runtime = Runtime.from_options(COMMAND, params)
    runtime.stats.command = f"{COMMAND} chain"
    runner, code = run_chain(stages, runtime)
    return report(runner, code)


main = command_main(cli, COMMAND)
