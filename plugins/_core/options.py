"""Shared click options (sqlite-utils style decorators) and the runtime they configure.

Every shared option has an environment variable shown in `--help`. A command applies the
decorators, then calls `Runtime.from_options(command_name, kwargs)`, which pops the shared keys
so the command's own code sees only its own options.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from .errors import OutputClosed
from .log import DEFAULT_LOG_LEVEL, LOG_FORMATS, LOG_LEVELS, Log
from .metrics import Exporter, Gauge, Health, parse_addr, start_exporter
from .ndjson import DEFAULT_MAX_LINE_BYTES
from .output import BatchWriter
from .signals import StopFlag
from .stats import Stats

F = TypeVar("F", bound=Callable[..., Any])

_ACTIVE: dict[str, Runtime] = {}
DEFAULT_SHUTDOWN_TIMEOUT_SECS = 30.0
DEFAULT_DEAD_LETTER_MAX_BYTES = 64 * 1024**2


def _apply(f: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        f = option(f)
    return f


def env_options(prefix: str) -> Callable[..., Callable[[F], F]]:
    """The one option helper: `opt = env_options("S3_BATCH_")`, then
    `@opt("--max-records", env="MAX_RECORDS", ...)` — every option shows its env var in --help."""

    def option(*names: str, env: str, also_env: tuple[str, ...] = (), **kwargs: Any) -> Callable[[F], F]:
        """`also_env`: further variables read when the first is unset (e.g. a shared name)."""
        envvar: str | list[str] = [prefix + env, *also_env] if also_env else prefix + env
        return click.option(*names, envvar=envvar, show_envvar=True, **kwargs)

    return option


def apply_options(f: F, options: list[Callable[[F], F]]) -> F:
    """Apply a list of option decorators in the order they should appear in --help."""
    return _apply(f, options)


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
    """`67108864`, `64MiB`, `100MB`, `1GiB` — every size option of every command takes these."""

    name = "bytes"

    def __init__(self, min_bytes: int = 1) -> None:
        self.min_bytes = min_bytes

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            size = value
        else:
            match = _SIZE_RE.match(str(value))
            if not match or (match.group(2) or "").lower() not in _UNITS:
                self.fail(f"{value!r} is not a size (e.g. 64MiB, 100MB, 1048576)", param, ctx)
            size = int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])
        if size < self.min_bytes:
            self.fail(f"must be at least {self.min_bytes} bytes", param, ctx)
        return size


BYTES = ByteSize()


def stream_options(f: F) -> F:
    """The input side of the stream contract: line bound, dead letters, strictness, idle flush."""
    return _apply(
        f,
        [
            click.option(
                "--max-line-bytes",
                type=ByteSize(min_bytes=64),
                default=DEFAULT_MAX_LINE_BYTES,
                show_default="1MiB",
                envvar="HARMONY_PIPES_MAX_LINE_BYTES",
                show_envvar=True,
                help="A longer input line is a bad record (e.g. 1048576, 4MiB).",
            ),
            click.option(
                "--dead-letter",
                "dead_letter_path",
                type=click.Path(dir_okay=False, writable=True),
                envvar="HARMONY_PIPES_DEAD_LETTER",
                show_envvar=True,
                help='Append bad records here as {"error", "line_no", "raw"} lines (checked at start).',
            ),
            click.option(
                "--dead-letter-max-bytes",
                type=BYTES,
                default=DEFAULT_DEAD_LETTER_MAX_BYTES,
                show_default="64MiB",
                envvar="HARMONY_PIPES_DEAD_LETTER_MAX_BYTES",
                show_envvar=True,
                help="Stop writing dead letters past this size (they are still counted).",
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
            click.option(
                "--shutdown-timeout-secs",
                type=click.FloatRange(min=0),
                default=DEFAULT_SHUTDOWN_TIMEOUT_SECS,
                show_default=True,
                envvar="HARMONY_PIPES_SHUTDOWN_TIMEOUT_SECS",
                show_envvar=True,
                help="On SIGTERM/SIGINT/SIGHUP keep reading until end of input for at most this long, "
                "then commit everything read (exit 75 if input was left unread).",
            ),
        ],
    )


def log_level_option(f: F) -> F:
    """`--log-level`: drop log lines below it (the error line and the stats line always stay)."""
    return click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default=DEFAULT_LOG_LEVEL,
        show_default=True,
        envvar="HARMONY_PIPES_LOG_LEVEL",
        show_envvar=True,
        help="Lowest level written to stderr; warning silences the per-cycle info lines.",
    )(f)


def log_format_option(f: F) -> F:
    return click.option(
        "--log-format",
        type=click.Choice(LOG_FORMATS),
        default="text",
        show_default=True,
        envvar="HARMONY_PIPES_LOG_FORMAT",
        show_envvar=True,
        help="Format of log lines on stderr (each with an RFC 3339 UTC time and a level).",
    )(f)


def log_options(f: F) -> F:
    """stderr options every command has: log format and level, progress reporting."""
    return _apply(
        f,
        [
            log_format_option,
            log_level_option,
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


def aws_options(prefix: str, endpoint_of: str) -> Callable[[F], F]:
    """Who to be in AWS, shared by s3-batch and aws-discovery: profile, endpoint, role, external id
    (credentials otherwise follow boto3's normal chain: env, profile, instance/container role)."""
    opt = env_options(prefix)
    return lambda f: _apply(
        f,
        [
            opt("--profile", env="PROFILE", help="AWS profile (otherwise boto3's normal credential chain)."),
            opt(
                "--endpoint-url",
                env="ENDPOINT_URL",
                help=f"{endpoint_of} endpoint (MinIO, a moto server); AWS_ENDPOINT_URL is honoured too.",
            ),
            opt(
                "--role-arn",
                env="ROLE_ARN",
                help="Assume this role (cross-account); its credentials are refreshed before they expire.",
            ),
            opt("--external-id", env="EXTERNAL_ID", help="ExternalId for --role-arn (the trust policy's condition)."),
        ],
    )


SHARED_STATE_ROOT_ENV = "HARMONY_PIPES_STATE_DIR"


def state_option(own_env: str, subdir: str, help_text: str | None = None) -> Callable[[F], F]:
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
        help=help_text
        or f"Directory for state kept across restarts (default: ${SHARED_STATE_ROOT_ENV}/{subdir} if set, "
        "else memory only).",
    )


@dataclass(frozen=True)
class StreamConfig:
    """The stream options of a command that reads stdin (`stream_options`)."""

    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    dead_letter_path: str | None = None
    dead_letter_max_bytes: int = DEFAULT_DEAD_LETTER_MAX_BYTES
    strict: bool = False
    flush_idle_ms: int = 200
    shutdown_timeout_secs: float = DEFAULT_SHUTDOWN_TIMEOUT_SECS

    @classmethod
    def pop_from(cls, kwargs: dict[str, Any]) -> StreamConfig:
        return cls(
            max_line_bytes=kwargs.pop("max_line_bytes"),
            dead_letter_path=kwargs.pop("dead_letter_path"),
            dead_letter_max_bytes=kwargs.pop("dead_letter_max_bytes"),
            strict=kwargs.pop("strict"),
            flush_idle_ms=kwargs.pop("flush_idle_ms"),
            shutdown_timeout_secs=kwargs.pop("shutdown_timeout_secs"),
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
        # a stage of `harmony-pipes chain` between a source and a sink: it may hold records until
        # the next commit point (`Processor.settle`), and hand them on in blocks
        self.between_source_and_sink = False

    def _count_output(self) -> None:
        """records_out/bytes_out are what reached stdout: progress lines and the status agree."""
        counters = self.stats.counters
        counters["records_out"] = max(counters["records_out"], self.writer.lines_written)
        counters["bytes_out"] = max(counters["bytes_out"], self.writer.bytes_written)

    @classmethod
    def from_options(
        cls,
        command: str,
        kwargs: dict[str, Any],
        *,
        install_signals: bool = True,
        stop: StopFlag | None = None,
        register: bool = True,
    ) -> Runtime:
        """The runtime of a command from its parsed options (the shared log keys are popped).

        A stage of `harmony-pipes chain` passes the chain's `stop` flag (signals are the chain's)
        and `register=False` (the chain prints one stats line for all its stages).
        """
        log = Log(
            command,
            kwargs.pop("log_format", "text"),
            debug=kwargs.pop("debug", False),
            level=kwargs.pop("log_level", DEFAULT_LOG_LEVEL).lower(),
        )
        stats = Stats(
            command,
            log,
            interval_secs=kwargs.pop("stats_interval_secs", 0) or 0,
            live_status=register and _stderr_is_tty(),
        )
        if stop is None:
            stop = StopFlag()
            if install_signals:
                stop.install()
        runtime = cls(command, log, stats, BatchWriter(1), stop)
        if register:
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
