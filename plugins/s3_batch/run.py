"""The s3-batch processor (a sink): records → spooled batches → objects in every destination.

Records are routed to open batches as they come (`record_handler`); a commit point — after every
input chunk when reading stdin, at the source's safe points in `harmony-pipes chain` — writes the
open bodies' new records to the spool and logs their counts with the upstream positions they
cover (see `spool.py`), then seals the batches that filled meanwhile. The spool is fsynced every
`--fsync-interval-ms`; only then does a commit count as durable for the stages upstream. One
thread per destination uploads (see `deliver.py`). When the spool holds `--max-spool-bytes`,
`can_accept` is False until destinations catch up.
"""

from __future__ import annotations

import queue
import shutil
import time
from collections.abc import Callable
from typing import Any

from harmony_pipes._core.errors import OutputClosed, PipesError, TempFailError
from harmony_pipes._core.options import Runtime, StreamConfig
from harmony_pipes._core.processor import SINK, CommitToken, Emit, LinesEmit, Position, Processor
from harmony_pipes._core.state import disk_error
from harmony_pipes._core.stdio import STDIN_PIPE_BYTES, grow_pipe

from .batcher import Batcher, OpenBatch
from .body import SLICE_BYTES
from .config import COMMAND, SinkConfig
from .deliver import Deliverer, make_backoff
from .health import watch
from .keys import _DAY_MS, _HOUR_MS, TimeExtractor
from .spool import Spool
from .stores import make_store

DRAIN_POLL_SECS = 0.02
BACKLOG_REFRESH_SECS = 0.5
# s3-batch commits after every chunk it reads (before reading the next); from a 64 KiB pipe the
# chunks are too small for the compressor thread to overlap with parsing: it asks for
# STDIN_PIPE_BYTES (bounded by --max-spool-bytes).
DEFAULT_PIPE_BYTES = 64 * 1024


class S3Sink(Processor):
    role = SINK
    command = COMMAND

    def __init__(
        self,
        runtime: Runtime,
        config: SinkConfig,
        stream: StreamConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        super().__init__(runtime, stream)
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
            "objects_quarantined",
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
        self.to_seal: list[OpenBatch] = []  # full batches, sealed at the next commit point
        self.uncommitted = False  # records routed since the last commit point
        self.receipts_closed = False
        watch(self, config.max_backlog_age_secs)  # health check and backlog gauges (metrics)
        self.fatal: tuple[str, PipesError] | None = None  # (destination, error) that ended the run

    # -- start-up -----------------------------------------------------------------------------

    def open(self, resume: Any = None) -> None:
        # when stdin is a pipe (s3-batch alone): a chunk read can overshoot --max-spool-bytes, so
        # the pipe (the chunk) stays small beside it
        grow_pipe(0, min(STDIN_PIPE_BYTES, max(DEFAULT_PIPE_BYTES, self.config.max_spool_bytes // 8)))
        try:
            self._start()
        except OSError as exc:  # the spool disk is full or gone
            raise disk_error(self.config.spool_dir, exc) from None

    def _start(self) -> None:
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
        if self.spool.destinations_error:
            self.log.warning(
                f"{self.spool.destinations_error.removeprefix('Error: ')} (`s3-batch status` may not know the "
                "destination names; delivering the backlog goes on)"
            )
        limits, spec = self.config.limits, self.config.spec
        self.log.info(
            f"objects are sealed at {limits.max_records} records, {limits.max_bytes} stored bytes or "
            f"{limits.max_age_secs:g} s after their first record; body {spec.format}, compression "
            f"{spec.compression}; spool {self.spool.path}"
        )
        objects, records = self.spool.recover(self.time_of)
        pending = len(self.spool.entries)
        for seq, problem in self.spool.damaged:
            self.counters["objects_quarantined"] += 1
            self.log.warning(
                f"spool object {seq} set aside in {self.spool.path / 'quarantine'}: {problem} (its body is kept "
                "there; `s3-batch status` counts it as damaged)"
            )
        if pending:
            self.log.info(
                f"spool {self.spool.path}: {pending} objects waiting from an earlier run"
                + (f" ({objects} sealed now from {records} records spooled before a crash)" if objects else "")
            )
        self.batcher = Batcher(self.config.limits, self.spool.new_body, self.clock)
        backoff = make_backoff(self.config.retry_max_delay_secs)
        for dest in dests:
            store = self.stores[dest.name]
            health = self.runtime.health
            worker = Deliverer(dest, store, self.spool, self.receipts, self.log, backoff, {}, health=health)
            self.deliverers.append(worker)
            worker.start()

    def _check_destinations(self) -> None:
        for dest in self.config.destinations:
            try:
                self.stores[dest.name].check()
            except PipesError as exc:
                if exc.retryable:
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

    def record_handler(self) -> Emit:
        validator = self.validator
        time_of = self.time_of
        partition_of = self.template.partition_of
        partitioned = self.partitioned
        add = self.batcher.add  # type: ignore[union-attr]
        to_seal = self.to_seal
        sink = self

        spool_dir = self.config.spool_dir

        def handle(record: dict[str, Any], raw: bytes) -> None:
            if validator is not None:
                validator(record)
            record_ms = time_of(record, sink.arrival_ms)
            if raw[-1:] == b"\r":
                raw = raw.rstrip()
            try:
                sealed = add(partition_of(record, record_ms) if partitioned else (), record_ms, raw)
            except OSError as exc:  # the spool disk is full or gone: what is committed stays safe
                raise disk_error(spool_dir, exc) from None
            sink.uncommitted = True
            if sealed:
                to_seal.extend(sealed)  # sealed at the commit point: never ahead of the positions

        return handle

    def lines_handler(self, objects: bool = False) -> LinesEmit | None:
        """Whole stdin chunks, a group of lines at a time: when every line of a group is a record
        (else the per-record path takes over from there, bad lines and all), their times are
        found in one go and, if they all fall in one partition of a batch they cannot fill, the
        group joins it as one block — per record, parsing and routing were most of the main
        thread. Groups of about one compressor slice: the worker compresses a group while this
        thread parses the next. Not with a validator or `{field:NAME}` partitions (they need
        every record), nor for lines ending in `\\r` (which `handle` strips)."""
        if self.validator is not None or self.template.field_paths:
            return None
        times_of = self.time_of.of_object_lines if objects else self.time_of.of_lines
        template = self.template
        bucket_ms = _HOUR_MS if template.uses_hour else _DAY_MS if template.uses_date else 0
        partition_of = template.partition_of
        batcher: Batcher = self.batcher  # type: ignore[assignment]
        add, add_block = batcher.add, batcher.add_block
        to_seal = self.to_seal
        sink = self
        spool_dir = self.config.spool_dir
        no_record: dict[str, Any] = {}

        def take(lines: list[bytes]) -> bool:
            """Route one group; False (nothing routed) unless every line is a record."""
            try:
                block = b"\n".join(lines)
            except TypeError:  # an oversized line
                return False
            if b"\r" in block:
                return False
            times = times_of(lines, sink.arrival_ms)
            if times is None:
                return False
            first_ms, last_ms = min(times), max(times)
            if not bucket_ms or first_ms // bucket_ms == last_ms // bucket_ms:
                partition = partition_of(no_record, first_ms) if bucket_ms else ()
                if add_block(partition, first_ms, last_ms, block, len(lines)):
                    return True
            for line, record_ms in zip(lines, times, strict=True):
                sealed = add(partition_of(no_record, record_ms) if bucket_ms else (), record_ms, line)
                if sealed:
                    to_seal.extend(sealed)  # sealed at the commit point: never ahead of the positions
            return True

        def handle(lines: list[bytes]) -> int:
            count = len(lines)
            try:
                size = sum(map(len, lines))
            except TypeError:  # an oversized line
                return 0
            step = max(1, count * SLICE_BYTES // max(size, 1))
            taken = 0
            try:
                while taken < count and take(lines[taken : taken + step]):
                    taken = min(count, taken + step)
            except OSError as exc:  # the spool disk is full or gone: what is committed stays safe
                raise disk_error(spool_dir, exc) from None
            if taken:
                sink.uncommitted = True
            return taken

        return handle

    def _seal(self, batch: OpenBatch) -> None:
        spool: Spool = self.spool  # type: ignore[assignment]
        spool.seal(batch)  # commits the other open partitions first when they hold new records
        self.counters["records_accepted"] = spool.accepted
        self.counters["objects_sealed"] += 1

    # -- timers, back-pressure, receipts ------------------------------------------------------

    def on_tick(self) -> None:
        try:
            self._tick()
        except OSError as exc:
            raise disk_error(self.config.spool_dir, exc) from None

    def _tick(self) -> None:
        now = self.clock()
        self.arrival_ms = self.wall_ms()
        self.to_seal.extend(self.batcher.due())  # type: ignore[union-attr]
        if now - self.last_sync >= self.fsync_interval_secs:
            self.last_sync = now
            self.spool.sync()  # type: ignore[union-attr]
        self.counters["records_accepted"] = self.spool.accepted  # type: ignore[union-attr]
        self._emit_receipts()
        self._check_fatal()

    def _check_fatal(self) -> None:
        """A destination failing for a reason only a person can fix ends the run: stop reading,
        seal and commit everything read (the drain), exit with the error's code (see run()).
        Destinations refused at start keep the documented spool-then-exit behaviour."""
        if self.fatal is not None:
            return
        self.fatal = self._fatal_failure()
        if self.fatal is not None:
            name, error = self.fatal
            self.log.warning(
                f"destination {name} failed for good ({error.message}); stopping: everything read so far is "
                "sealed and stays in the spool"
            )

    def failure(self) -> PipesError | None:
        """A destination failing for good ends the input (the runner commits what was read)."""
        return None if self.fatal is None else self.fatal[1]

    def _fatal_failure(self) -> tuple[str, PipesError] | None:
        for worker in self.deliverers:
            error = worker.fatal
            if error is not None and worker.dest.name not in self.refused:
                return worker.dest.name, error
        return None

    # -- commit points ------------------------------------------------------------------------

    def next_token(self) -> CommitToken:
        return CommitToken(self.spool.spool_id, self.spool.commit_number + 1)  # type: ignore[union-attr]

    def commit_due(self, at_end: bool = False) -> bool:
        return self.uncommitted or bool(self.to_seal)

    def commit(self, positions: dict[str, Position], token: CommitToken) -> None:
        """Accept everything routed so far (with the upstream positions), then seal what filled."""
        spool: Spool = self.spool  # type: ignore[assignment]
        try:
            spool.commit_point(token.number, positions)
            self.uncommitted = False
            while self.to_seal:
                self._seal(self.to_seal.pop(0))
        except OSError as exc:
            raise disk_error(self.config.spool_dir, exc) from None
        self.counters["records_accepted"] = spool.accepted

    def durable_through(self) -> int:
        return self.spool.synced_number  # type: ignore[union-attr]

    def resume_positions(self) -> tuple[CommitToken, dict[str, Position]] | None:
        found = self.spool.resume if self.spool is not None else None
        if found is None:
            return None
        number, positions = found
        return CommitToken(self.spool.spool_id, number), positions  # type: ignore[union-attr]

    def _emit_receipts(self) -> None:
        """Receipts go to stdout; a reader that went away (`| head -1`) costs the receipts, never
        the upload: the objects are the sink's job, and it goes on with them."""
        emit = self.emit
        wrote = False
        try:
            while True:
                try:
                    line = self.receipts.get_nowait()
                except queue.Empty:
                    break
                if not self.receipts_closed:
                    emit({}, line)
                    wrote = True
            if wrote:
                self.runtime.writer.flush()
        except OutputClosed:
            self.receipts_closed = True
            self.log.warning("stdout was closed by its reader: receipts are no longer printed; uploads go on")
        self._update_counters()

    def _update_counters(self) -> None:
        self.counters["objects"] = sum(w.counters.get("objects", 0) for w in self.deliverers)
        self.counters["bytes_stored"] = sum(w.counters.get("bytes_stored", 0) for w in self.deliverers)
        self.counters["retries"] = sum(w.counters.get("retries", 0) for w in self.deliverers)
        self.counters["objects_quarantined"] = len(self.spool.damaged if self.spool else ()) + sum(
            w.counters.get("objects_quarantined", 0) for w in self.deliverers
        )
        now = self.clock()
        if now - self.backlog_checked >= BACKLOG_REFRESH_SECS and self.spool is not None:
            # objects not yet confirmed, summed over destinations (the progress lines show it too)
            self.backlog_checked = now
            backlogs = [self.spool.backlog(w.dest.name) for w in self.deliverers]
            self.counters["backlog_objects"] = sum(b[0] for b in backlogs)
            self.counters["backlog_bytes"] = sum(b[1] for b in backlogs)

    def can_accept(self) -> bool:
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
                # sealed (at the next commit point) they can be uploaded and freed
                self.to_seal.extend(self.batcher.drain("spool-full"))  # type: ignore[union-attr]
            return False
        if self.blocked:
            self.blocked = False
            self.log.info("spool has room again: reading stdin")
        return True

    # -- end ----------------------------------------------------------------------------------

    def drain(self) -> None:
        """Seal everything (all of it committed by now), sync, then give the destinations up to
        --drain-timeout-secs to confirm."""
        try:
            for batch in [*self.to_seal, *self.batcher.drain()]:  # type: ignore[union-attr]
                self._seal(batch)
            self.to_seal.clear()
            self.spool.sync()  # type: ignore[union-attr]
        except OSError as exc:
            raise disk_error(self.config.spool_dir, exc) from None
        deadline = self.clock() + self.config.drain_timeout_secs
        while self.clock() < deadline and not all(
            w.idle() or self._still_refused(w) or w.fatal is not None for w in self.deliverers
        ):
            self._emit_receipts()
            time.sleep(DRAIN_POLL_SECS)
        self._emit_receipts()

    def _still_refused(self, worker: Deliverer) -> bool:
        """Refused at start and nothing delivered since: waiting for the drain timeout is pointless."""
        return worker.dest.name in self.refused and not worker.delivered and worker.attempt > 0

    def _stop_workers(self) -> list[dict[str, Any]]:
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

    def close(self) -> int:
        """Stop the workers; the exit code says whether every object reached every destination."""
        rows = self._stop_workers()
        if self.fatal is None:  # it came while draining at end of input
            self.fatal = self._fatal_failure()
        if self.fatal is not None:
            name, error = self.fatal
            backlog = next((r for r in rows if r["destination"] == name), None)
            waiting = f"; {backlog['objects']} objects wait in the spool {self.config.spool_dir}" if backlog else ""
            raise type(error)(
                f"destination {name}: {error.message}{waiting}",
                f"{error.fix or 'fix the destination'}, then run s3-batch again with the same spool",
                error.exit_code,
            )
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
        if stuck and not self.runtime.stop.signal_name:  # stopped by a signal: spooled is done
            last = next((r["last_error"] for r in stuck if r["last_error"]), None)
            raise TempFailError(
                f"{sum(r['objects'] for r in stuck)} objects not delivered within --drain-timeout-secs"
                + (f" (last failure: {last.removeprefix('Error: ')})" if last else ""),
                f"run s3-batch again with the spool {self.config.spool_dir} once the destination is back",
            )
        return 0
