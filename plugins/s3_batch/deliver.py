"""One delivery worker per destination: oldest object first, jittered backoff, never a drop.

Each destination has its own thread, so a dead destination only grows its own backlog (the spool
keeps the bytes until every destination confirmed). A failing object is retried with full-jitter
exponential backoff (botocore's standard/adaptive retries run inside each attempt); the failure
is logged when the backoff step grows (attempts 1, 2, 4, 8, ...), not on every attempt, and
recovery is logged once. Objects are never skipped, so a destination's objects land in order.

What a failure means comes from one classifier (`stores.classify_failure`, for S3 the shared
`_core.aws.classify_aws_error`): a retryable one (throttling, 5xx, timeouts, connection errors)
is retried; a fatal one (credentials, permission, missing bucket, bad request) is retried too but
published as `fatal`, and the sink ends the run on it (exit 3/4/2, everything read stays
spooled); an object whose key the destination can never take (`ItemRefused`) is set aside in the
spool's quarantine/ folder so the objects behind it flow.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from harmony_pipes._core.errors import ItemRefused, PipesError
from harmony_pipes._core.log import Log
from harmony_pipes._core.metrics import Health
from harmony_pipes._core.retry import Backoff

from .control import is_paused
from .keys import format_iso_ms
from .spool import Entry, Spool
from .stores import Destination, FileStore, ObjectMeta, S3Store, classify_failure

IDLE_WAIT_SECS = 0.25
UNLIMITED_RETRIES = 1 << 30


def receipt_for(dest: Destination, entry: Entry, key: str, written_ms: int) -> dict[str, Any]:
    """The stdout record for one object written to one destination (schemas/s3-receipt)."""
    m = entry.manifest
    return {
        "destination": dest.name,
        "bucket": dest.bucket,
        "key": key,
        "records": m["records"],
        "bytes": m["bytes"],
        "raw_bytes": m["raw_bytes"],
        "first_time": format_iso_ms(m["first_ms"]),
        "last_time": format_iso_ms(m["last_ms"]),
        "written_at": format_iso_ms(written_ms),
        "sha256": m["sha256"],
        "format": m["format"],
        "compression": m["compression"],
    }


class Deliverer(threading.Thread):
    """Uploads one destination's backlog; receipts go to `receipts` for the main thread."""

    def __init__(
        self,
        dest: Destination,
        store: FileStore | S3Store,
        spool: Spool,
        receipts: queue.SimpleQueue[bytes],
        log: Log,
        backoff: Backoff,
        counters: dict[str, int],
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        health: Health | None = None,
    ) -> None:
        super().__init__(name=f"deliver-{dest.name}", daemon=True)
        self.health = health  # a delivered object is a success, a failed attempt an error by kind
        self.dest = dest
        self.store = store
        self.spool = spool
        self.receipts = receipts
        self.log = log
        self.backoff = backoff
        self.counters = counters
        self.wall_ms = wall_ms
        self.stop_event = threading.Event()
        self.failing_since: float | None = None
        self.attempt = 0
        self.last_error: str | None = None
        self.delivered = 0  # objects confirmed in this run
        self.paused = False
        # the last failure when it needs a person (credentials, permission, bucket, bad request);
        # cleared by the next success. Read by the sink's main thread, which ends the run on it.
        self.fatal: PipesError | None = None

    def stop(self) -> None:
        self.stop_event.set()
        with self.spool.cond:
            self.spool.cond.notify_all()

    def idle(self) -> bool:
        """Nothing left this destination can deliver now (empty backlog or paused right now)."""
        if self.spool.next_for(self.dest.name) is None:
            return True
        return is_paused(self.spool.control(), self.dest.name) and self.paused

    def run(self) -> None:
        name = self.dest.name
        while not self.stop_event.is_set():
            paused = is_paused(self.spool.control(), name)
            if paused != self.paused:
                self.paused = paused
                self.log.info(f"destination {name} {'paused' if paused else 'resumed'}")
            if paused:
                self.stop_event.wait(IDLE_WAIT_SECS)
                continue
            entry = self.spool.next_for(name)
            if entry is None:
                self.spool.wait(IDLE_WAIT_SECS)
                continue
            self._deliver(entry)

    def _deliver(self, entry: Entry) -> None:
        name = self.dest.name
        key = entry.manifest["keys"][name]
        m = entry.manifest
        meta = ObjectMeta(m["content_type"], m["content_encoding"], m["sha256"], m["records"])
        try:
            self.store.put(key, entry.body_path, meta)
        except Exception as exc:  # the object is never dropped: retried, or kept in quarantine/
            error = classify_failure(exc, self.dest, key)
            if isinstance(error, ItemRefused):
                self._set_aside(entry, error)
                return
            self.fatal = None if error.retryable else error
            self._failed(error)
            return
        written_ms = self.wall_ms()
        if self.attempt:
            self.log.info(f"destination {name} recovered after {self.attempt} failed attempts")
        self.attempt = 0
        self.failing_since = None
        self.last_error = None
        self.fatal = None
        self.spool.mark_done(entry, name)
        self.delivered += 1
        if self.health is not None:
            self.health.mark_success()
        self.counters["objects"] = self.counters.get("objects", 0) + 1
        self.counters["bytes_stored"] = self.counters.get("bytes_stored", 0) + entry.bytes
        self.receipts.put(orjson.dumps(receipt_for(self.dest, entry, key, written_ms)))

    def _set_aside(self, entry: Entry, error: PipesError) -> None:
        """The destination can never take this object: keep it in quarantine/, go on with the next."""
        self.spool.quarantine(entry, self.dest.name, error.one_line())
        self.counters["objects_quarantined"] = self.counters.get("objects_quarantined", 0) + 1
        self.log.warning(
            f"destination {self.dest.name}: object {entry.seq} ({entry.manifest['records']} records) set aside in "
            f"{self.spool.path / 'quarantine'}; the objects behind it go on: {error.one_line()}"
        )

    def _failed(self, error: PipesError) -> None:
        self.attempt += 1
        self.counters["retries"] = self.counters.get("retries", 0) + 1
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        delay = self.backoff.delay_secs(min(self.attempt - 1, 30)) or self.backoff.max_delay_secs
        self.last_error = error.one_line()
        if self.health is not None:
            self.health.count_error(error)
        if self.attempt & (self.attempt - 1) == 0:  # 1, 2, 4, 8 ...: once per backoff step
            self.log.warning(
                f"destination {self.dest.name}: attempt {self.attempt} failed, retrying in "
                f"{delay:.1f}s; nothing is dropped: {self.last_error}"
            )
        self.stop_event.wait(delay)


def make_backoff(max_delay_secs: float) -> Backoff:
    return Backoff(base_delay_secs=0.5, max_delay_secs=max_delay_secs, max_retries=UNLIMITED_RETRIES)
