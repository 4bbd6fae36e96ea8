"""Counters, the final `{"stats": {...}}` line, the live status line and interval progress lines.

Every command ends with exactly one stats line on stderr. Counters are plain ints in a dict so
processors can add their own (`duplicates`, `objects`, `retries`) without touching this module.
`--stats-interval-secs N` prints `{"progress": {...}}` every N seconds (a different key, so a
reader looking for the final line never mistakes a progress line for it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from .log import Log


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
            **self.counters,
            **self.extra,
            "elapsed_secs": round(elapsed_secs, 3),
            "rate_per_sec": round(main_count / elapsed_secs, 1),
        }

    def tick(self) -> None:
        """Called from the run loop (per chunk and when idle): prints what is due."""
        now = self.clock()
        if now >= self._next_progress_at:
            self._next_progress_at = now + self.interval_secs
            self._clear_status()
            self.log.raw(orjson.dumps({"progress": self.snapshot()}).decode())
        if now >= self._next_status_at:
            self._next_status_at = now + 1.0
            snap = self.snapshot()
            line = (
                f"\r{self.command}: {snap['records_in']} in, {snap['records_out']} out, "
                f"{snap['bad_records']} bad, {snap['rate_per_sec']:.0f}/s"
            )
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
        self.log.raw(orjson.dumps({"stats": self.snapshot()}).decode())
