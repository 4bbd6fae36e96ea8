"""harmony-alerts: HEC security events in, normalized and deduplicated alerts out.

    harmony-events --once | harmony-alerts --state-dir /var/lib/harmony-pipes/alerts | s3-batch ...

Click wiring only: options in config.py, the processor in run.py.
"""

from __future__ import annotations

from typing import Any

import click

from harmony_pipes._core.cli import command_main
from harmony_pipes._core.help import CONTEXT_SETTINGS, with_examples
from harmony_pipes._core.options import Runtime, StreamConfig
from harmony_pipes._core.runner import run_command
from harmony_pipes._core.version import version_option

from .config import COMMAND, AlertsConfig, options
from .pool import PooledAlerts, PooledStdin, default_workers
from .run import AlertsProcessor
from .spawn import discard_early


def build(params: dict[str, Any], runtime: Runtime) -> AlertsProcessor:
    """The processor from parsed options (also used by `harmony-pipes chain`: between a source
    and a sink there, it renders in helper processes as on stdin)."""
    stream = StreamConfig.pop_from(params)
    config = AlertsConfig.from_params(params)
    if runtime.between_source_and_sink:
        workers = helper_count(config, stream)
        if workers > 0:
            return PooledAlerts(runtime, config, stream, workers)
    return AlertsProcessor(runtime, config, stream)


def helper_count(config: AlertsConfig, stream: StreamConfig | None) -> int:
    """--workers, or the default for this machine; none under --strict (the first bad record
    must stop everything after it)."""
    if stream is not None and stream.strict:
        return 0
    return default_workers() if config.workers is None else config.workers


@click.command(
    name=COMMAND,
    context_settings=CONTEXT_SETTINGS,
    epilog=with_examples(
        "harmony-events --once | harmony-alerts --state-dir /var/lib/harmony-pipes/alerts > alerts.ndjson",
        "harmony-alerts --format ocsf --min-severity 3 < events.ndjson > findings.ndjson",
        "harmony-alerts --all --no-dedupe --tenant acme < events.ndjson | s3-batch --dest s3://my-bucket/alerts/",
        text="Exit codes: 0 ok, 1 runtime (state dir or disk failure), 2 usage or configuration, 65 bad input "
        "under --strict, 75 stopped before the end of input (shutdown timeout, or stdout closed by its "
        "reader). See README for the stream contract.",
    ),
)
@options
@version_option(COMMAND)
def cli(**params: Any) -> int:
    """Normalize HEC security events (stdin, NDJSON) into alerts (stdout, NDJSON).

    An event is kept when its type is in --types OR its severity is >= --min-severity; alerts
    are deduplicated on --dedupe-key, tenantid + eventId by default (first occurrence wins).
    """
    runtime = Runtime.from_options(COMMAND, params)
    alerts = build(params, runtime)
    stream = alerts.stream
    workers = helper_count(alerts.config, stream)
    if stream is None or workers <= 0:
        discard_early()
        return run_command(alerts)
    return run_command(alerts, head=PooledStdin(runtime, stream, alerts, workers))


STAGE_COMMAND = cli  # parses a harmony-alerts stage of `harmony-pipes chain`
main = command_main(cli, COMMAND)
