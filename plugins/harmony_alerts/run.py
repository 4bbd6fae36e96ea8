"""The harmony-alerts processor: events in, normalized and deduplicated alerts out.

The rules live in normalize.py, the shapes in formats.py, the key store in dedupe.py; this module
implements the transform side of the processor contract (`_core.processor`): a hot
`record_handler`, and dedupe keys saved only for alerts the stage after it made durable — the
reader of stdout (after a flush), or, in `harmony-pipes chain`, the sink's commit.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from xxhash import xxh3_64_intdigest

from harmony_pipes._core.metrics import Gauge
from harmony_pipes._core.options import Runtime, StreamConfig
from harmony_pipes._core.processor import TRANSFORM, CommitToken, Emit, Position, Processor, Resume
from harmony_pipes._core.state import StateDir

from .chunks import Chunk
from .config import COMMAND, AlertsConfig
from .dedupe import DedupeLog, DigestSet, PendingKeys, SteadyClock
from .normalize import KeepPolicy, build_alert
from .render import make_finisher

FSYNC_INTERVAL_SECS = 1.0


class AlertsProcessor(Processor):
    role = TRANSFORM
    command = COMMAND

    def __init__(self, runtime: Runtime, config: AlertsConfig, stream: StreamConfig | None = None) -> None:
        super().__init__(runtime, stream)
        self.config = config
        self.policy = KeepPolicy.from_options(config.types, config.min_severity, config.keep_all)
        self.digests = DigestSet(config.dedupe_max_keys, config.dedupe_ttl_secs)
        # keys of alerts handed downstream, not yet durable there: (digest, seen_at_secs)
        self.pending_keys: list[tuple[int, int]] = []
        self.state: StateDir | None = None
        self.key_log: DedupeLog | None = None
        self.staged: PendingKeys | None = None  # keys of sink commits not yet durable (chain)
        self.last_fsync_at = time.monotonic()
        # wall-clock seconds for key ages, read once per tick, not per record; a clock stepped
        # forward must not expire keys early (SteadyClock)
        self.clock = SteadyClock()
        self.now_secs = [self.clock.now_secs()]
        counters = runtime.stats.counters
        for name in ("alerts", "duplicates", "filtered"):
            counters.setdefault(name, 0)
        runtime.gauges.append(Gauge("alerts_dedupe_keys", "Dedupe keys held.", self.digests.__len__))

    # -- lifecycle ----------------------------------------------------------------------------

    def open(self, resume: Resume | None = None) -> None:
        config, log = self.config, self.runtime.log
        if not config.dedupe:
            if config.state_dir:
                log.warning("--no-dedupe: --state-dir is not used (dedupe keys are all the state harmony-alerts keeps)")
            return
        if not config.state_dir:
            log.info("No --state-dir: dedupe keys are kept in memory only.")
            return
        self.state = StateDir(config.state_dir, owner=COMMAND)
        self.key_log = DedupeLog(self.state.file("dedupe-keys.bin"))
        loaded = self.key_log.load_into(self.digests, self.now_secs[0])
        self.runtime.stats.extra["dedupe_keys_loaded"] = loaded
        if self.key_log.future_entries:
            log.warning(
                f"{self.key_log.future_entries} of {loaded} dedupe keys in {self.key_log.path} are dated in the "
                "future (a corrupted entry or a clock that was wrong); they are kept as seen now, no key is "
                "forgotten early"
            )
        self.staged = PendingKeys(self.state.file("dedupe-keys.pending"))
        token = resume.token if resume is not None else None
        applied, dropped = self.staged.recover(self.key_log, self.digests, token)
        if dropped:
            log.warning(
                f"{dropped} dedupe keys staged by an interrupted harmony-pipes chain were dropped (run the same "
                "chain to resume it exactly; alone, those alerts may be emitted once more)"
            )
        if applied:
            self.runtime.stats.extra["dedupe_keys_recovered"] = applied

    def record_handler(self) -> Emit:
        counters = self.runtime.stats.counters
        policy = self.policy
        tenant = self.config.tenant
        dedupe_key = self.config.dedupe_key
        dedupe = self.config.dedupe
        digests_add = self.digests.add
        # keys wait for the commit that makes them persistable; without a state dir there is
        # nothing to persist, and keeping them would grow without bound
        persist = self.key_log is not None
        pending_append = self.pending_keys.append
        dumps = orjson.dumps
        finish = make_finisher(self.config.output_format)
        now_secs = self.now_secs
        xxh3 = xxh3_64_intdigest
        emit = self.emit

        def on_record(event: dict[str, Any], raw: bytes) -> None:
            alert = build_alert(event, tenant, policy, dedupe_key)
            if alert is None:
                counters["filtered"] += 1
                return
            if dedupe and alert["dedupe_key"] is not None:
                digest = xxh3(alert["dedupe_key"].encode()) or 1  # = key_digest, inlined (hot path)
                seen_at = now_secs[0]
                if not digests_add(digest, seen_at):
                    counters["duplicates"] += 1
                    return
                if persist:
                    pending_append((digest, seen_at))
            counters["alerts"] += 1
            alert = finish(alert, event, raw, now_secs[0] * 1000)
            emit(alert, dumps(alert))

        return on_record

    # -- helper processes (pool.py) -------------------------------------------------------------

    def render_spec(self) -> dict[str, Any]:
        """What a helper process needs to render alerts as `record_handler` does (render.py)."""
        config = self.config
        return {
            "types": list(config.types),
            "min_severity": config.min_severity,
            "keep_all": config.keep_all,
            "tenant": config.tenant,
            "dedupe_key": config.dedupe_key.text,
            "dedupe": config.dedupe,
            "output_format": config.output_format,
        }

    def take_alerts(self, chunk: Chunk, start: int, stop: int) -> tuple[list[bytes | bytearray | memoryview], int]:
        """Dedupe alerts `start:stop` of a rendered chunk, in input order (as `record_handler`
        does per alert): returns the parts of `chunk.blob` to write (whole lines) and how many
        alerts they hold. Their keys wait in `pending_keys` for the write, as the handler's do."""
        counters = self.runtime.stats.counters
        blob, ends = chunk.blob, chunk.ends
        duplicates: list[int] = []
        if self.config.dedupe:
            digests = chunk.digests[start:stop]
            seen_at = self.now_secs[0]
            duplicates = [start + index for index in self.digests.add_many(digests, seen_at)]
            if self.key_log is not None:
                skip = set(duplicates)
                self.pending_keys += [(d, seen_at) for i, d in enumerate(digests, start) if d and i not in skip]
        kept = stop - start - len(duplicates)
        counters["alerts"] += kept
        counters["duplicates"] += len(duplicates)
        parts: list[bytes | bytearray | memoryview] = []
        cursor = ends[start - 1] + 1 if start else 0  # the first byte of the next run of kept alerts
        for index in duplicates:
            begin = ends[index - 1] + 1 if index else 0
            if begin > cursor:
                parts.append(blob[cursor:begin])
            cursor = ends[index] + 1
        if ends[stop - 1] + 1 > cursor:
            parts.append(blob[cursor : ends[stop - 1] + 1])
        return parts, kept

    # -- commits ------------------------------------------------------------------------------

    def checkpoint(self, token: CommitToken) -> Position | None:
        """In a chain, the keys of this commit are staged on disk before the sink commits, so a
        crash between the sink's commit and `committed` cannot lose them."""
        if self.staged is None or not token.deferred or not self.pending_keys:
            return None
        self.staged.stage(token, self.pending_keys)
        self.pending_keys.clear()
        return {"staged_through": token.number}

    def committed(self, position: Position | None, token: CommitToken) -> None:
        """The alerts carrying the pending keys are durable downstream: the keys go to the log."""
        if self.key_log is None:
            return
        if self.staged is not None and token.deferred:
            self.staged.apply_through(token, self.key_log)
        elif self.pending_keys:
            self.key_log.append(self.pending_keys)
            self.pending_keys.clear()
        self.maybe_compact()

    def on_tick(self) -> None:
        self.now_secs[0] = self.clock.now_secs()
        if self.clock.jump_secs is not None:
            self.runtime.log.warning_once(
                "clock-jump",
                f"the wall clock jumped by {self.clock.jump_secs:+.0f} s; dedupe key ages follow the monotonic "
                "clock for the rest of this run, so no key is forgotten early",
            )
        if self.key_log is None:
            return
        now = time.monotonic()
        if now - self.last_fsync_at >= FSYNC_INTERVAL_SECS:
            self.last_fsync_at = now
            self.key_log.sync()

    def maybe_compact(self) -> None:
        """Rewrite the log from the table once it holds mostly forgotten keys — only while every
        key in the table is durable downstream (the table also holds the keys still pending)."""
        log = self.key_log
        if log is None or log.entries_on_disk <= 2 * len(self.digests) + 10_000:
            return
        if self.pending_keys or (self.staged is not None and not self.staged.empty):
            return
        log.compact(self.digests)

    def close(self) -> int:
        try:
            if self.key_log is not None:
                self.key_log.sync()
                self.maybe_compact()
                self.key_log.close()
            if self.staged is not None:
                self.staged.close()
        finally:
            if self.state is not None:
                self.state.close()
            self.runtime.stats.extra["dedupe_keys"] = len(self.digests)
        return 0
