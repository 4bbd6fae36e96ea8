"""Metrics and health for every command: `--metrics-addr` (/metrics, /healthz) and `--metrics-file`.

Nothing here runs per record. The exporter reads, when it is scraped or the textfile is due, what
the run loops keep anyway: the Stats counters (DESIGN section 3.3), the `Health` below, and the
gauges a command registers (callables read at scrape time). prometheus_client costs ~90 ms to
import, so it is imported only when a metrics option is given (DESIGN section 3.8: start-up).

Health is a verdict over three rules: the last cycle failed (credentials, permission, unreachable,
retries exhausted ...); no successful cycle for `STALE_AFTER_INTERVALS` intervals (commands with an
interval); a check the command added says so (s3-batch: a failing destination, a backlog older
than --max-backlog-age-secs). A good cycle clears the first rule.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from .errors import ConfigError, ExitCode, PipesError

PREFIX = "harmony_pipes_"
STALE_AFTER_INTERVALS = 3
DEFAULT_FILE_INTERVAL_SECS = 10.0
MAX_REASON_CHARS = 400

# error kinds (label `kind` of harmony_pipes_errors_total): the exit code a failure has (DESIGN 3.5)
ERROR_KINDS: dict[int, str] = {
    ExitCode.AUTH: "auth",
    ExitCode.UNREACHABLE: "unreachable",
    ExitCode.TEMPFAIL: "tempfail",
    ExitCode.USAGE: "config",
    ExitCode.BAD_INPUT: "bad_input",
    ExitCode.RUNTIME: "runtime",
}


def error_kind(error: BaseException | str) -> str:
    """`auth`, `unreachable`, `tempfail`, `config`, `bad_input` or `runtime` (anything else)."""
    if isinstance(error, str):
        return error
    if isinstance(error, PipesError):
        return ERROR_KINDS.get(int(error.exit_code), "runtime")
    return "runtime"


def parse_addr(value: str) -> tuple[str, int]:
    """`HOST:PORT`, `[v6]:PORT` or `:PORT` (every interface) -> (host, port). ValueError if not."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9464, 0.0.0.0:9464)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


def textfile_path(value: str, command: str) -> Path:
    """`--metrics-file`: a path, or a directory (ending in / or existing) that gets <command>.prom."""
    path = Path(value)
    if value.endswith(os.sep) or path.is_dir():
        return path / f"{command}.prom"
    return path


class Gauge:
    """A value a command exposes, read at scrape time (never on the record path).

    `read()` returns a number, None (not known: no sample), or, when `labels` names extra labels,
    an iterable of (label values, number). (A plain class: a dataclass costs start-up time.)
    """

    __slots__ = ("help", "labels", "name", "read")

    def __init__(self, name: str, help: str, read: Callable[[], Any], labels: tuple[str, ...] = ()) -> None:
        self.name = name
        self.help = help
        self.read = read
        self.labels = labels


class Health:
    """Outcomes of cycles, error counts by kind and the checks that make a command unhealthy.

    Thread-safe: s3-batch's delivery threads count errors and successes here.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.started_at = clock()
        self.last_success_at: float | None = None
        self.last_failure_at: float | None = None
        self.failed = False  # the last cycle failed (cleared by a good one)
        self.reason = ""
        self.errors: dict[str, int] = {}
        # a command with a cycle interval: unhealthy after STALE_AFTER_INTERVALS without success
        self.interval_secs: float | None = None
        # a stream command counts processed input as success (s3-batch counts deliveries instead)
        self.success_on_progress = True
        # set when /healthz is served: a long-running source reports a failed cycle there and
        # tries again next interval instead of exiting
        self.keep_running = False
        self.checks: list[Callable[[], str | None]] = []
        self.on_cycle: list[Callable[[], None]] = []
        self.members: list[tuple[str, Health]] = []  # the stages of `harmony-pipes chain`
        self._recorded: BaseException | None = None
        self._lock = threading.Lock()

    def count_error(self, error: BaseException | str, n: int = 1) -> None:
        kind = error_kind(error)
        with self._lock:
            self.errors[kind] = self.errors.get(kind, 0) + n

    def mark_success(self) -> None:
        self.last_success_at = self.clock()

    def cycle_ok(self) -> None:
        with self._lock:
            self.failed = False
            self.reason = ""
        self.mark_success()
        self._notify()

    def cycle_failed(self, error: BaseException, reason: str | None = None, *, count: bool = True) -> None:
        """Record a failed cycle once (the CLI funnel records the error that ends a command; a
        loop that recorded it already and re-raises is not counted twice)."""
        if error is self._recorded:
            return
        self._recorded = error
        if count:
            self.count_error(error)
        text = reason or (error.one_line() if isinstance(error, PipesError) else f"{type(error).__name__}: {error}")
        with self._lock:
            self.failed = True
            self.reason = text[:MAX_REASON_CHARS]
            self.last_failure_at = self.clock()
        self._notify()

    def _notify(self) -> None:
        for callback in self.on_cycle:
            callback()

    def verdict(self, now: float | None = None) -> tuple[bool, str]:
        """(healthy, reason): reason is empty when healthy. A chain's health is its stages'."""
        now = self.clock() if now is None else now
        for name, member in self.members:
            healthy, reason = member.verdict(now)
            if not healthy:
                return False, f"{name}: {reason}"[:MAX_REASON_CHARS]
        if self.failed:
            return False, f"last cycle failed: {self.reason}"
        if self.interval_secs:
            since = self.last_success_at if self.last_success_at is not None else self.started_at
            limit = STALE_AFTER_INTERVALS * self.interval_secs
            if now - since > limit:
                what = "since start" if self.last_success_at is None else "for"
                return False, (
                    f"no successful cycle {what} {now - since:.0f} s (more than {STALE_AFTER_INTERVALS} x "
                    f"--interval-secs {self.interval_secs:g})"
                )
        for check in self.checks:
            reason = check()
            if reason:
                return False, reason[:MAX_REASON_CHARS]
        return True, ""


# -- what is exported --------------------------------------------------------------------------


class CounterSpec:
    """A metric read from one Stats counter (or computed from the counters)."""

    __slots__ = ("help", "kind", "name", "source")

    def __init__(
        self, name: str, help: str, source: str | Callable[[Mapping[str, int]], float], kind: str = "counter"
    ) -> None:
        self.name = name  # without PREFIX; counters get `_total` from prometheus_client
        self.help = help
        self.source = source
        self.kind = kind  # "counter" or "gauge"


COMMON: tuple[CounterSpec, ...] = (
    CounterSpec("records_in", "Records read (sources: received from the API / EC2).", "records_in"),
    CounterSpec("records_out", "Records written to stdout.", "records_out"),
    CounterSpec("bad_records", "Input lines that were not records (or failed validation).", "bad_records"),
    CounterSpec("bytes_in", "Bytes read from stdin.", "bytes_in"),
    CounterSpec("bytes_out", "Bytes written to stdout.", "bytes_out"),
)


def _events_received(c: Mapping[str, int]) -> float:
    return c.get("events", 0) + c.get("duplicates_skipped", 0) + c.get("bad_records", 0)


OWN: dict[str, tuple[CounterSpec, ...]] = {
    "harmony-events": (
        CounterSpec("records_in", "Events received from the API (new, repeated and malformed).", _events_received),
        CounterSpec("events_requests", "HTTP requests sent to the gateway.", "requests"),
        CounterSpec("events_pages", "Result pages read.", "pages"),
        CounterSpec("events_retries", "Requests retried (429, 5xx, timeouts, resets).", "retries"),
        CounterSpec("events_rate_limited", "HTTP 429 answers from the gateway.", "rate_limited"),
        CounterSpec("events_token_refreshes", "Tokens requested after the first one.", "token_refreshes"),
        CounterSpec("events_duplicates_skipped", "Events emitted before (overlap), skipped.", "duplicates_skipped"),
        CounterSpec("cycles", "Collection cycles started.", "cycles"),
    ),
    "harmony-alerts": (
        CounterSpec("alerts_alerts", "Alerts emitted.", "alerts"),
        CounterSpec("alerts_duplicates", "Alerts dropped as duplicates (dedupe key seen before).", "duplicates"),
        CounterSpec("alerts_filtered", "Events that are not alerts under --types/--min-severity.", "filtered"),
    ),
    "s3-batch": (
        CounterSpec("s3_objects", "Objects confirmed written (summed over destinations).", "objects"),
        CounterSpec("s3_bytes", "Bytes of confirmed objects as stored (compressed).", "bytes_stored"),
        CounterSpec("s3_objects_sealed", "Objects sealed in the spool.", "objects_sealed"),
        CounterSpec("s3_records_accepted", "Records committed to the spool.", "records_accepted"),
        CounterSpec("s3_retries", "Failed upload attempts (each retried with backoff).", "retries"),
    ),
    "aws-discovery": (
        CounterSpec("records_in", "Instances read from EC2 (summed over cycles).", "instances_seen"),
        CounterSpec("cycles", "Sync cycles completed.", "cycles"),
        CounterSpec("discovery_regions_failed", "Region reads that failed (summed over cycles).", "regions_failed"),
        CounterSpec("discovery_instances", "Selected instances in the last cycle.", "instances_selected", "gauge"),
        CounterSpec(
            "discovery_unconfigured", "Selected instances left unconfigured in the last cycle.",
            "instances_unconfigured", "gauge",
        ),
    ),
}  # fmt: skip


def specs_for(command: str) -> list[CounterSpec]:
    """COMMON, with a command's own spec replacing a common one of the same name."""
    own = OWN.get(command, ())
    names = {s.name for s in own}
    return [s for s in COMMON if s.name not in names] + list(own)


def _copy(counters: dict[str, int]) -> dict[str, int]:
    for _ in range(5):  # another thread may add a key mid-copy
        try:
            return dict(counters)
        except RuntimeError:
            continue
    return {}


class Exporter:
    """Serves /metrics and /healthz, writes the textfile; one per running command."""

    def __init__(self, runtime: Any, addr: tuple[str, int] | None, file_path: Path | None) -> None:
        from prometheus_client import CollectorRegistry

        self.runtime = runtime
        self.command: str = runtime.command
        self.health: Health = runtime.health
        self.file_path = file_path
        self.base: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # type: ignore[arg-type]
        self.server: Any = None
        self.url: str | None = None
        self.members: list[Any] = []
        stats = runtime.stats
        interval = stats.interval_secs if stats.interval_secs > 0 else DEFAULT_FILE_INTERVAL_SECS
        self.file_interval_secs = interval
        self._next_file_at = 0.0
        self._file_warned = False
        if file_path is not None:
            self._prepare_file(file_path)
            self.health.on_cycle.append(self.write_file)
        if addr is not None:
            self._serve(addr)
            self.health.keep_running = True

    # -- textfile ------------------------------------------------------------------------------

    def _prepare_file(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the directory of --metrics-file {path} ({exc.strerror or exc})",
                "give a --metrics-file in a writable directory",
            ) from None
        if not os.access(path.parent, os.W_OK):
            raise ConfigError(f"--metrics-file {path}: its directory is not writable", "give a writable path")
        self._carry_over(path)

    def _carry_over(self, path: Path) -> None:
        """Counters continue from the file an earlier run of this command left (a `--once` run
        under cron or a shipper is a new process each time), and so does the last success."""
        from prometheus_client.parser import text_string_to_metric_families

        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            return
        try:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    # the file is this command's own (a chain's holds its stages, each labelled)
                    if family.type == "counter" and sample.name.endswith("_total"):
                        self.base[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
                    elif (
                        sample.name == PREFIX + "last_success_timestamp_seconds"
                        and sample.value > 0
                        and sample.labels.get("command") == self.command
                    ):
                        self.health.last_success_at = max(self.health.last_success_at or 0.0, sample.value)
        except Exception:  # a damaged file is replaced, never fatal
            self.base.clear()

    def attach(self, runtimes: list[Any]) -> None:
        """Export the stages of `harmony-pipes chain` (each sample keeps its command label);
        /healthz is unhealthy when any stage is."""
        self.members = runtimes
        self.health.members = [(f"stage {n} {r.command}", r.health) for n, r in enumerate(runtimes, start=1)]
        for runtime in runtimes:
            runtime.health.keep_running = self.health.keep_running
            if self.file_path is not None:
                runtime.health.on_cycle.append(self.write_file)
        if runtimes:
            runtimes[0].stats.on_tick = self.on_tick  # the chain's runner ticks its stages' stats

    def on_tick(self, now: float) -> None:
        """Stats.tick hook (the run loops call it per input batch and when idle)."""
        for health in [self.health, *(r.health for r in self.members)]:
            if health.success_on_progress and health.interval_secs is None and not health.failed:
                health.mark_success()
        if self.file_path is not None and now >= self._next_file_at:
            self._next_file_at = now + self.file_interval_secs
            self.write_file()

    def write_file(self) -> None:
        if self.file_path is None:
            return
        from prometheus_client import write_to_textfile

        try:
            write_to_textfile(str(self.file_path), self.registry)
        except OSError as exc:
            if not self._file_warned:
                self._file_warned = True
                self.runtime.log.warning(f"cannot write --metrics-file {self.file_path}: {exc.strerror or exc}")

    # -- HTTP ------------------------------------------------------------------------------------

    def _serve(self, addr: tuple[str, int]) -> None:
        import socket
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        from prometheus_client import make_wsgi_app
        from prometheus_client.exposition import ThreadingWSGIServer
        from prometheus_client.process_collector import ProcessCollector

        host, port = addr
        http_registry = type(self.registry)(auto_describe=False)
        http_registry.register(self)  # type: ignore[arg-type]
        ProcessCollector(registry=http_registry)
        metrics_app = make_wsgi_app(http_registry)
        health = self.health
        command = self.command

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            path = environ.get("PATH_INFO") or "/"
            if path in ("/healthz", "/health"):
                healthy, reason = health.verdict()
                doc: dict[str, Any] = {"status": "ok" if healthy else "unhealthy", "command": command}
                if reason:
                    doc["reason"] = reason
                if health.last_success_at is not None:
                    doc["last_success"] = round(health.last_success_at, 3)
                body = orjson.dumps(doc) + b"\n"
                start_response(
                    "200 OK" if healthy else "503 Service Unavailable",
                    [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
                )
                return [body]
            if path in ("/metrics", "/"):
                return metrics_app(environ, start_response)
            body = b'{"error": "not found: try /metrics or /healthz"}\n'
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [body]

        class Quiet(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingWSGIServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        try:
            server: WSGIServer = make_server(host, port, app, Server, handler_class=Quiet)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on --metrics-addr {host}:{port} ({exc.strerror or exc})",
                "choose a free port (or another address) for --metrics-addr",
            ) from None
        self.server = server
        bound_port = server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound_port}"
        thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
        thread.start()
        self.runtime.log.info(f"metrics on {self.url}/metrics, health on {self.url}/healthz")

    def close(self) -> None:
        """At exit: the textfile gets the final values; the server stops answering."""
        health = self.health
        if health.interval_secs is None and health.success_on_progress and not health.failed:
            health.mark_success()  # a stream command that ends without an error succeeded
        self.write_file()
        if self.server is not None:
            # shutdown() waits for the serve loop's next poll (up to 0.5 s): ask without waiting,
            # so a command's exit is not delayed; the listener is gone within that poll
            threading.Thread(target=self.server.shutdown, name="metrics-http-stop", daemon=True).start()
            self.server = None

    # -- the prometheus_client collector protocol ----------------------------------------------

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        families: dict[str, Any] = {}

        def family(kind: str, name: str, help_text: str, labels: list[str]) -> Any:
            found = families.get(name)
            if found is None:
                cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                found = families[name] = cls(PREFIX + name, help_text, labels=labels)
            return found

        for runtime in self.members or [self.runtime]:
            self._collect_one(runtime, family)
        return list(families.values())

    def _collect_one(self, runtime: Any, family: Callable[..., Any]) -> None:
        """The samples of one command (one stage of a chain), labelled with its command."""
        command = runtime.command
        counters = _copy(runtime.stats.counters)
        writer = runtime.writer
        counters["records_out"] = max(counters.get("records_out", 0), writer.lines_written)
        counters["bytes_out"] = max(counters.get("bytes_out", 0), writer.bytes_written)
        base = self.base
        label = (("command", command),)

        for spec in specs_for(command):
            source = spec.source
            value = source(counters) if callable(source) else counters.get(source, 0)
            if spec.kind == "counter":
                value += base.get((PREFIX + spec.name + "_total", label), 0.0)
            family(spec.kind, spec.name, spec.help, ["command"]).add_metric([command], value)

        health = runtime.health
        errors = family(
            "counter",
            "errors",
            "Failures by kind: auth (credentials or permission refused), unreachable, tempfail (rate limited, "
            "retries exhausted), config, bad_input, runtime.",
            ["command", "kind"],
        )
        with health._lock:
            counts = dict(health.errors)
        for kind in sorted({*ERROR_KINDS.values(), *counts}):
            key = (PREFIX + "errors_total", (("command", command), ("kind", kind)))
            errors.add_metric([command, kind], counts.get(kind, 0) + base.get(key, 0.0))

        def gauge(name: str, help_text: str, value: float) -> None:
            family("gauge", name, help_text, ["command"]).add_metric([command], value)

        healthy, _ = health.verdict()
        gauge("healthy", "1 when /healthz would answer 200, else 0.", 1.0 if healthy else 0.0)
        gauge("start_time_seconds", "When this process started (Unix time).", health.started_at)
        if health.last_success_at is not None:
            gauge(
                "last_success_timestamp_seconds",
                "When the last cycle (or processed batch, or delivered object) succeeded (Unix time).",
                health.last_success_at,
            )
        if health.last_failure_at is not None:
            gauge("last_failure_timestamp_seconds", "When the last cycle failed (Unix time).", health.last_failure_at)
        for custom in list(runtime.gauges):
            try:
                value = custom.read()
            except Exception:  # a gauge must never break the scrape
                continue
            if value is None:
                continue
            found = family("gauge", custom.name, custom.help, ["command", *custom.labels])
            if custom.labels:
                for values, number in value:
                    found.add_metric([command, *values], float(number))
            else:
                found.add_metric([command], float(value))


def start_exporter(runtime: Any, addr: str | None, file_value: str | None) -> Exporter:
    """Called by Runtime.from_options when --metrics-addr or --metrics-file is given."""
    parsed = None
    if addr:
        try:
            parsed = parse_addr(addr)
        except ValueError as exc:
            raise ConfigError(f"--metrics-addr {exc}", "give HOST:PORT, e.g. 127.0.0.1:9464") from None
    path = textfile_path(file_value, runtime.command) if file_value else None
    exporter = Exporter(runtime, parsed, path)
    runtime.stats.on_tick = exporter.on_tick
    return exporter
