"""Counters, the final `{"stats": {...}}` line, the live status line and interval progress lines.

Every command ends with exactly one stats line on stderr (with the package version). Counters
are plain ints in a dict so processors can add their own (`duplicates`, `objects`, `retries`)
without touching this module. `--stats-interval-secs N` prints `{"progress": {...}}` every N
seconds (a different key, so a reader looking for the final line never mistakes a progress line
for it). On a terminal, a status line is redrawn every second: records in and out, objects (for
a command that writes them), record and MB rates, and how far through a regular-file stdin it is.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable

from .log import Log
from .version import VERSION


class Stats:
    def __init__(
        self,
        command: str,
        log: Log,
        *,
        interval_secs: float = 0.0,
        live_status: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.command = command
        self.log = log
        self.clock = clock
        self.started_at = clock()
        self.interval_secs = interval_secs
        self.live_status = live_status
        self.counters: dict[str, int] = {
            "records_in": 0,
            "records_out": 0,
            "bad_records": 0,
            "bytes_in": 0,
            "bytes_out": 0,
        }
        self._next_progress_at = self.started_at + interval_secs if interval_secs > 0 else float("inf")
        self._next_status_at = self.started_at + 1.0 if live_status else float("inf")
        self._status_shown = False
        if live_status:
            log.before_line = self._clear_status  # a log line never lands after the status text
        # the counter the status line calls "out" (s3-batch: records durably spooled, not receipts)
        self.status_out_counter = "records_out"
        # bytes of the regular file on stdin, for the status line's percent (watch_input)
        self.input_total_bytes: int | None = None
        self.reads_input = False
        self.extra: dict[str, object] = {}
        # refreshes counters owned elsewhere (lines the writer has flushed) before each snapshot
        self.before_snapshot: Callable[[], None] | None = None
        # called at the end of every tick with the clock's time (the metrics textfile, _core/metrics.py)
        self.on_tick: Callable[[float], None] | None = None

    def add(self, name: str, amount: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + amount

    def snapshot(self) -> dict[str, object]:
        if self.before_snapshot is not None:
            self.before_snapshot()
        elapsed_secs = max(self.clock() - self.started_at, 1e-9)
        main_count = self.counters.get("records_in") or self.counters.get("records_out", 0)
        return {
            "command": self.command,
            "version": VERSION,
            **self.counters,
            **self.extra,
            "elapsed_secs": round(elapsed_secs, 3),
            "rate_per_sec": round(main_count / elapsed_secs, 1),
        }

    def watch_input(self, fd: int) -> None:
        """The command reads records from `fd`: the status line shows "in" and, for a file, percent."""
        self.reads_input = True
        self.input_total_bytes = regular_file_bytes_left(fd)

    def status_line(self) -> str:
        """`harmony-alerts: 70,000 in, 69,800 out, 0 bad, 35,000 rec/s, 21.4 MB/s, 43%` (ASCII only)."""
        snap = self.snapshot()
        counters = self.counters
        elapsed_secs = max(float(snap["elapsed_secs"]), 1e-3)  # type: ignore[arg-type]
        parts = []
        if self.reads_input:
            parts.append(f"{counters['records_in']:,} in")
        parts.append(f"{counters.get(self.status_out_counter, 0):,} out")
        if "objects" in counters:
            parts.append(f"{counters['objects']:,} objects")
        parts.append(f"{counters['bad_records']:,} bad")
        parts.append(f"{snap['rate_per_sec']:,.0f} rec/s")
        moved_bytes = counters["bytes_in"] if self.reads_input else counters["bytes_out"]
        parts.append(f"{moved_bytes / elapsed_secs / 1e6:.1f} MB/s")
        if self.input_total_bytes:
            parts.append(f"{min(100, counters['bytes_in'] * 100 // self.input_total_bytes)}%")
        return f"{self.command}: " + ", ".join(parts)

    def tick(self) -> None:
        """Called from the run loop (per chunk and when idle): prints what is due."""
        now = self.clock()
        if now >= self._next_progress_at:
            self._next_progress_at = now + self.interval_secs
            self._clear_status()
            self.log.record("progress", self.snapshot())
        if now >= self._next_status_at:
            self._next_status_at = now + 1.0
            line = "\r" + self.status_line()
            try:
                self.log.stream.write(line + "\x1b[K")
                self.log.stream.flush()
                self._status_shown = True
            except (BrokenPipeError, ValueError):
                pass
        if self.on_tick is not None:
            self.on_tick(now)

    def _clear_status(self) -> None:
        if self._status_shown:
            try:
                self.log.stream.write("\r\x1b[K")
            except (BrokenPipeError, ValueError):
                pass
            self._status_shown = False

    def emit_final(self) -> None:
        self._clear_status()
        self.log.record("stats", self.snapshot())


def regular_file_bytes_left(fd: int) -> int | None:
    """Bytes from the offset to the end when `fd` is a regular file (`< events.ndjson`), else None."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        return max(info.st_size - os.lseek(fd, 0, os.SEEK_CUR), 0)
    except OSError:
        return None
