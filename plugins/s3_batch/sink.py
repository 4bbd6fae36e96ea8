"""The running sink: stdin records → spooled batches → objects in every destination.

The main thread reads stdin (through `_core.stream.run_transform`), routes records to open
batches, commits them after every input chunk (open bodies written, then their counts logged —
only then do they count as accepted), syncs them every `--fsync-interval-ms` (fsync; see
`spool.py`), seals batches and prints receipts. One thread per destination uploads (see
`deliver.py`). When the spool holds `--max-spool-bytes`, reading stops (`can_read` → False)
until destinations catch up.
"""

from __future__ import annotations

import fcntl
import os
import queue
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmony_pipes._core.errors import PipesError, TempFailError
from harmony_pipes._core.options import Runtime, StreamConfig
from harmony_pipes._core.state import disk_error
from harmony_pipes._core.stream import run_transform

from .batcher import Batcher, Limits, OpenBatch
from .body import BodySpec
from .deliver import Deliverer, make_backoff
from .keys import KeyTemplate, TimeExtractor
from .spool import Spool
from .stores import Destination, S3Options, make_store

DRAIN_POLL_SECS = 0.02
BACKLOG_REFRESH_SECS = 0.5
# s3-batch commits after every chunk it reads (before reading the next); from a 64 KiB pipe the
# chunks are too small for the compressor thread to overlap with parsing. A 1 MiB pipe (Linux's
# default limit for unprivileged processes) gives 1 MiB chunks whenever the writer is ahead.
STDIN_PIPE_BYTES = 1 << 20
DEFAULT_PIPE_BYTES = 64 * 1024


def grow_pipe(fd: int, size_bytes: int) -> None:
    """Ask for a larger pipe buffer on `fd` if it is a pipe (best effort: Linux only, limits apply)."""
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    try:
        if setpipe is not None and stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, setpipe, size_bytes)
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size or the user's pipe quota: keep the default


@dataclass
class SinkConfig:
    destinations: list[Destination]
    spool_dir: Path
    spool_is_temporary: bool
    spec: BodySpec
    template: KeyTemplate
    time_field: str | None
    limits: Limits
    fsync_interval_ms: int
    max_spool_bytes: int
    drain_timeout_secs: float
    retry_max_delay_secs: float
    startup_check: bool
    s3: S3Options
    validator: Callable[[dict[str, Any]], None] | None = None


class Sink:
    def __init__(
        self,
        runtime: Runtime,
        config: SinkConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.runtime = runtime
        self.config = config
        self.log = runtime.log
        self.clock = clock
        self.wall_ms = wall_ms
        self.counters = runtime.stats.counters
        for name in (
            "records_accepted",
            "objects_sealed",
            "objects",
            "bytes_stored",
            "retries",
            "backlog_objects",
            "backlog_bytes",
        ):
            self.counters.setdefault(name, 0)
        self.time_of = TimeExtractor(config.time_field)
        self.template = config.template
        self.partitioned = bool(self.template.field_paths or self.template.uses_date or self.template.uses_hour)
        self.stores = {d.name: make_store(d, config.s3) for d in config.destinations}
        self.receipts: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self.spool: Spool | None = None
        self.batcher: Batcher | None = None
        self.deliverers: list[Deliverer] = []
        self.arrival_ms = wall_ms()
        self.fsync_interval_secs = config.fsync_interval_ms / 1000.0
        self.last_sync = clock()
        self.backlog_checked = float("-inf")
        self.blocked = False
        self.validator = config.validator
        # destinations whose start-up check failed: their records are spooled all the same (a
        # sink that exits at start loses what the upstream commands already wrote into the pipe)
        self.refused: dict[str, PipesError] = {}

    # -- start-up -----------------------------------------------------------------------------

    def start(self) -> None:
        if self.config.startup_check:
            self._check_destinations()
        dests = self.config.destinations
        self.spool = Spool(
            self.config.spool_dir,
            spec=self.config.spec,
            template=self.template,
            destinations={d.name: d.url for d in dests},
            prefixes={d.name: d.prefix for d in dests},
            wall_ms=self.wall_ms,
        )
        limits, spec = self.config.limits, self.config.spec
        self.log.info(
            f"objects are sealed at {limits.max_records} records, {limits.max_bytes} stored bytes or "
            f"{limits.max_age_secs:g} s after their first record; body {spec.format}, compression "
            f"{spec.compression}; spool {self.spool.path}"
        )
        objects, records = self.spool.recover(self.time_of)
        pending = len(self.spool.entries)
        if pending:
            self.log.info(
                f"spool {self.spool.path}: {pending} objects waiting from an earlier run"
                + (f" ({objects} sealed now from {records} records spooled before a crash)" if objects else "")
            )
        self.batcher = Batcher(self.config.limits, self.spool.new_body, self.clock)
        self.record_handler = self._make_record_handler()
        backoff = make_backoff(self.config.retry_max_delay_secs)
        for dest in dests:
            worker = Deliverer(dest, self.stores[dest.name], self.spool, self.receipts, self.log, backoff, {})
            self.deliverers.append(worker)
            worker.start()

    def _check_destinations(self) -> None:
        for dest in self.config.destinations:
            try:
                self.stores[dest.name].check()
            except PipesError as exc:
                if getattr(exc, "transient", False):
                    self.log.warning(
                        f"destination {dest.name} is unreachable now; spooling until it is back: " + exc.one_line()
                    )
                    continue
                self.refused[dest.name] = exc
                self.log.warning(
                    f"destination {dest.name} refused at start ({exc.message}); its records are spooled "
                    f"and delivered once that is fixed — {exc.fix or 'see the error above'}"
                )

    # -- the record path ----------------------------------------------------------------------

    def on_record(self, record: dict[str, Any], raw: bytes) -> None:
        """Route one record (the hot path is `record_handler`, built once in start())."""
        self.record_handler(record, raw)

    def _make_record_handler(self) -> Callable[[dict[str, Any], bytes], None]:
        validator = self.validator
        time_of = self.time_of
        partition_of = self.template.partition_of
        partitioned = self.partitioned
        add = self.batcher.add  # type: ignore[union-attr]
        seal = self._seal
        sink = self

        def handle(record: dict[str, Any], raw: bytes) -> None:
            if validator is not None:
                validator(record)
            record_ms = time_of(record, sink.arrival_ms)
            if raw[-1:] == b"\r":
                raw = raw.rstrip()
            sealed = add(partition_of(record, record_ms) if partitioned else (), record_ms, raw)
            if sealed:
                for batch in sealed:
                    seal(batch)

        return handle

    def _seal(self, batch: OpenBatch) -> None:
        spool: Spool = self.spool  # type: ignore[assignment]
        spool.seal(batch)  # commits the other open partitions first when they hold new records
        self.counters["records_accepted"] = spool.accepted
        self.counters["objects_sealed"] += 1

    # -- timers, back-pressure, receipts ------------------------------------------------------

    def on_tick(self) -> None:
        now = self.clock()
        self.arrival_ms = self.wall_ms()
        batcher = self.batcher
        for batch in batcher.due():  # type: ignore[union-attr]
            self._seal(batch)
        spool: Spool = self.spool  # type: ignore[assignment]
        # run_transform calls on_tick after every input chunk: the records read are written to
        # the spool (accepted) before more input is read; the fsync follows every interval
        spool.commit()
        if now - self.last_sync >= self.fsync_interval_secs:
            self.last_sync = now
            spool.sync()
        self.counters["records_accepted"] = spool.accepted
        self._emit_receipts()

    def _emit_receipts(self) -> None:
        write = self.runtime.writer.write
        wrote = False
        while True:
            try:
                line = self.receipts.get_nowait()
            except queue.Empty:
                break
            write(line)
            wrote = True
        if wrote:
            self.runtime.writer.flush()
        self._update_counters()

    def _update_counters(self) -> None:
        self.counters["objects"] = sum(w.counters.get("objects", 0) for w in self.deliverers)
        self.counters["bytes_stored"] = sum(w.counters.get("bytes_stored", 0) for w in self.deliverers)
        self.counters["retries"] = sum(w.counters.get("retries", 0) for w in self.deliverers)
        now = self.clock()
        if now - self.backlog_checked >= BACKLOG_REFRESH_SECS and self.spool is not None:
            # objects not yet confirmed, summed over destinations (the progress lines show it too)
            self.backlog_checked = now
            backlogs = [self.spool.backlog(w.dest.name) for w in self.deliverers]
            self.counters["backlog_objects"] = sum(b[0] for b in backlogs)
            self.counters["backlog_bytes"] = sum(b[1] for b in backlogs)

    def can_read(self) -> bool:
        used = self.spool.used_bytes()  # type: ignore[union-attr]
        limit = self.config.max_spool_bytes
        if used >= limit:
            if not self.blocked:
                self.blocked = True
                self.counters["backpressure_events"] = self.counters.get("backpressure_events", 0) + 1
                self.log.warning(
                    f"spool full ({used} bytes >= --max-spool-bytes {limit}): stopped reading stdin "
                    "until the destinations catch up; nothing is dropped"
                )
                for batch in self.batcher.drain("spool-full"):  # type: ignore[union-attr]
                    self._seal(batch)  # sealed objects can be uploaded and freed
            return False
        if self.blocked:
            self.blocked = False
            self.log.info("spool has room again: reading stdin")
        return True

    # -- end ----------------------------------------------------------------------------------

    def on_drain(self) -> None:
        """Seal everything, then give the destinations up to --drain-timeout-secs to confirm."""
        for batch in self.batcher.drain():  # type: ignore[union-attr]
            self._seal(batch)
        deadline = self.clock() + self.config.drain_timeout_secs
        while self.clock() < deadline and not all(w.idle() or self._still_refused(w) for w in self.deliverers):
            self._emit_receipts()
            time.sleep(DRAIN_POLL_SECS)
        self._emit_receipts()

    def _still_refused(self, worker: Deliverer) -> bool:
        """Refused at start and nothing delivered since: waiting for the drain timeout is pointless."""
        return worker.dest.name in self.refused and not worker.delivered and worker.attempt > 0

    def close(self) -> list[dict[str, Any]]:
        """Stop the workers; returns the backlog left per destination (also put in the stats)."""
        for worker in self.deliverers:
            worker.stop()
        for worker in self.deliverers:
            worker.join(timeout=5)
        try:
            self._emit_receipts()
        except Exception:
            pass
        rows = []
        if self.spool is not None:
            for worker in self.deliverers:
                objects, size, _oldest = self.spool.backlog(worker.dest.name)
                rows.append(
                    {
                        "destination": worker.dest.name,
                        "objects": objects,
                        "bytes": size,
                        "paused": worker.paused,
                        "last_error": worker.last_error,
                    }
                )
            self.counters["backlog_objects"] = sum(r["objects"] for r in rows)
            self.counters["backlog_bytes"] = sum(r["bytes"] for r in rows)
            self.spool.close()
            if self.config.spool_is_temporary and not self.counters["backlog_objects"]:
                shutil.rmtree(self.config.spool_dir, ignore_errors=True)
        return rows

    def run(self, stream_config: StreamConfig) -> None:
        self.start()
        # a chunk read can overshoot --max-spool-bytes: keep the pipe (the chunk) small beside it
        grow_pipe(0, min(STDIN_PIPE_BYTES, max(DEFAULT_PIPE_BYTES, self.config.max_spool_bytes // 8)))
        try:
            run_transform(
                self.runtime,
                stream_config,
                self.record_handler,  # type: ignore[arg-type]
                on_tick=self.on_tick,
                on_drain=self.on_drain,
                can_read=self.can_read,
            )
        except OSError as exc:  # the spool disk is full or gone: what is sealed stays safe
            raise disk_error(self.config.spool_dir, exc) from None
        finally:
            rows = self.close()
        for worker in self.deliverers:
            refusal = self.refused.get(worker.dest.name)
            if refusal is not None and not worker.delivered:
                # the start-up refusal still stands: exit with its code, saying where the data is
                backlog = next((r for r in rows if r["destination"] == worker.dest.name), None)
                waiting = f"; {backlog['objects']} objects wait in the spool {self.config.spool_dir}" if backlog else ""
                raise type(refusal)(
                    refusal.message + waiting,
                    f"{refusal.fix or 'fix the destination'}, then run s3-batch again with the same spool",
                    refusal.exit_code,
                )
        stuck = [r for r in rows if r["objects"] and not r["paused"]]
        for row in rows:
            if row["objects"]:
                self.log.warning(
                    f"destination {row['destination']}: {row['objects']} objects ({row['bytes']} bytes) "
                    f"stay in the spool {self.config.spool_dir} and are delivered on the next start"
                    + (" (paused)" if row["paused"] else "")
                )
        if stuck and not self.runtime.stop.signal_name:
            last = next((r["last_error"] for r in stuck if r["last_error"]), None)
            raise TempFailError(
                f"{sum(r['objects'] for r in stuck)} objects not delivered within --drain-timeout-secs"
                + (f" (last failure: {last.removeprefix('Error: ')})" if last else ""),
                f"run s3-batch again with the spool {self.config.spool_dir} once the destination is back",
            )
