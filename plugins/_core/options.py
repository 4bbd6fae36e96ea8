"""Shared click options (sqlite-utils style decorators) and the runtime they configure.

Every shared option has an environment variable shown in `--help`. A command applies the
decorators, then calls `Runtime.from_options(command_name, kwargs)`, which pops the shared keys
so the command's own code sees only its own options.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from .log import LOG_FORMATS, Log
from .metrics import Exporter, Gauge, Health, parse_addr, start_exporter
from .ndjson import DEFAULT_MAX_LINE_BYTES
from .output import BatchWriter
from .signals import StopFlag
from .stats import Stats

F = TypeVar("F", bound=Callable[..., Any])

_ACTIVE: dict[str, Runtime] = {}


def _apply(f: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        f = option(f)
    return f


def stream_options(f: F) -> F:
    """The input side of the stream contract: line bound, dead letters, strictness, idle flush."""
    return _apply(
        f,
        [
            click.option(
                "--max-line-bytes",
                type=click.IntRange(min=64),
                default=DEFAULT_MAX_LINE_BYTES,
                show_default=True,
                envvar="HARMONY_PIPES_MAX_LINE_BYTES",
                show_envvar=True,
                help="A longer input line is a bad record.",
            ),
            click.option(
                "--dead-letter",
                "dead_letter_path",
                type=click.Path(dir_okay=False, writable=True),
                envvar="HARMONY_PIPES_DEAD_LETTER",
                show_envvar=True,
                help='Append bad records here as {"error", "line_no", "raw"} lines.',
            ),
            click.option(
                "--strict",
                is_flag=True,
                envvar="HARMONY_PIPES_STRICT",
                show_envvar=True,
                help="Exit 65 at the first bad record instead of skipping it.",
            ),
            click.option(
                "--flush-idle-ms",
                type=click.IntRange(min=1),
                default=200,
                show_default=True,
                envvar="HARMONY_PIPES_FLUSH_IDLE_MS",
                show_envvar=True,
                help="Flush output when input has been idle this long.",
            ),
        ],
    )


def log_options(f: F) -> F:
    """stderr options every command has: log format and progress reporting."""
    return _apply(
        f,
        [
            click.option(
                "--log-format",
                type=click.Choice(LOG_FORMATS),
                default="text",
                show_default=True,
                envvar="HARMONY_PIPES_LOG_FORMAT",
                show_envvar=True,
                help="Format of log lines on stderr.",
            ),
            click.option(
                "--stats-interval-secs",
                type=click.FloatRange(min=0),
                default=0,
                envvar="HARMONY_PIPES_STATS_INTERVAL_SECS",
                show_envvar=True,
                help='Print a {"progress": ...} line on stderr every N seconds (0 = off).',
            ),
            click.option(
                "--debug",
                is_flag=True,
                hidden=True,
                envvar="HARMONY_PIPES_DEBUG",
                help="Show tracebacks for internal errors.",
            ),
            *metrics_options,
        ],
    )


def _check_metrics_addr(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value:
        try:
            parse_addr(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value or None


# Shared by every command through log_options; docs/operations.md lists what is exported.
metrics_options = [
    click.option(
        "--metrics-addr",
        metavar="HOST:PORT",
        envvar="HARMONY_PIPES_METRICS_ADDR",
        show_envvar=True,
        callback=_check_metrics_addr,
        help="Serve Prometheus /metrics and /healthz (200 healthy, 503 unhealthy, JSON reason) here, "
        "e.g. 127.0.0.1:9464 (0.0.0.0 = every interface; port 0 = a free one, logged). A long-running "
        "source then reports a failed cycle on /healthz and retries next interval instead of exiting.",
    ),
    click.option(
        "--metrics-file",
        metavar="PATH",
        envvar="HARMONY_PIPES_METRICS_FILE",
        show_envvar=True,
        help="Write the metrics to PATH (node-exporter textfile format, atomically) at every stats tick, "
        "after each cycle and at exit; a directory (or a path ending in /) gets <command>.prom.",
    ),
]


SHARED_STATE_ROOT_ENV = "HARMONY_PIPES_STATE_DIR"


def state_option(own_env: str, subdir: str) -> Callable[[F], F]:
    """`--state-dir`, from argv, the command's own env var, or a subfolder of the shared root.

    Each state dir is locked by one process, so the commands of one pipe cannot share it. The
    shared `HARMONY_PIPES_STATE_DIR` is therefore a root: `harmony-events | harmony-alerts`
    with it exported keep their state in `<root>/events/` and `<root>/alerts/`.
    """

    def resolve(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None:
            root = os.environ.get(SHARED_STATE_ROOT_ENV)
            if root:
                return os.path.join(root, subdir)
        return value

    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False),
        envvar=own_env,
        show_envvar=True,
        callback=resolve,
        help=f"Directory for state kept across restarts (default: ${SHARED_STATE_ROOT_ENV}/{subdir} if set, "
        "else memory only).",
    )


@dataclass(frozen=True)
class StreamConfig:
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    dead_letter_path: str | None = None
    strict: bool = False
    flush_idle_ms: int = 200

    @classmethod
    def pop_from(cls, kwargs: dict[str, Any]) -> StreamConfig:
        return cls(
            max_line_bytes=kwargs.pop("max_line_bytes"),
            dead_letter_path=kwargs.pop("dead_letter_path"),
            strict=kwargs.pop("strict"),
            flush_idle_ms=kwargs.pop("flush_idle_ms"),
        )


class Runtime:
    """What a running command shares with `_core`: its log, stats, stdout writer and stop flag."""

    def __init__(self, command: str, log: Log, stats: Stats, writer: BatchWriter, stop: StopFlag):
        self.command = command
        self.log = log
        self.stats = stats
        self.writer = writer
        self.stop = stop
        self.final_emitted = False
        stats.before_snapshot = self._count_output
        # metrics and health (_core/metrics.py): commands report cycles to `health` and add
        # `gauges`; `metrics` is None unless --metrics-addr / --metrics-file was given
        self.health = Health()
        self.gauges: list[Gauge] = []
        self.metrics: Exporter | None = None

    def _count_output(self) -> None:
        """records_out/bytes_out are what reached stdout: progress lines and the status agree."""
        counters = self.stats.counters
        counters["records_out"] = max(counters["records_out"], self.writer.lines_written)
        counters["bytes_out"] = max(counters["bytes_out"], self.writer.bytes_written)

    @classmethod
    def from_options(cls, command: str, kwargs: dict[str, Any], *, install_signals: bool = True) -> Runtime:
        log = Log(command, kwargs.pop("log_format", "text"), debug=kwargs.pop("debug", False))
        stats = Stats(
            command,
            log,
            interval_secs=kwargs.pop("stats_interval_secs", 0) or 0,
            live_status=_stderr_is_tty(),
        )
        stop = StopFlag()
        if install_signals:
            stop.install()
        runtime = cls(command, log, stats, BatchWriter(1), stop)
        _ACTIVE[command] = runtime
        metrics_addr, metrics_file = kwargs.pop("metrics_addr", None), kwargs.pop("metrics_file", None)
        if metrics_addr or metrics_file:  # prometheus_client is imported only then
            runtime.metrics = start_exporter(runtime, metrics_addr, metrics_file)
        return runtime

    def finish(self) -> None:
        """Flush stdout (quietly if it is gone) and print the final stats line once."""
        if self.final_emitted:
            return
        self.final_emitted = True
        from .errors import OutputClosed

        try:
            self.writer.flush()
        except OutputClosed:
            pass
        self.stats.emit_final()
        if self.metrics is not None:
            self.metrics.close()


def active_runtime(command: str) -> Runtime | None:
    return _ACTIVE.get(command)


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
