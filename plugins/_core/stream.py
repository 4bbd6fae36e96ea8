"""The stdin → stdout loop every transform and sink shares (DESIGN section 3).

A processor supplies `on_record(record, raw) -> bytes | None` (one compact JSON line to emit, or
nothing) and optional hooks; this module does everything else the contract asks for: chunked
reads, bad-record policy (count, dead-letter, `--strict` → 65), batched output flushed when
input idles and at exit, timers for the processor (`on_tick`), back-pressure (`can_read`),
and a drain on end of input, SIGTERM or SIGINT.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import orjson

from .errors import BadInputError, OutputClosed
from .ndjson import LineReader, OversizedLine
from .options import Runtime, StreamConfig
from .state import write_all

DEAD_LETTER_RAW_MAX_BYTES = 64 * 1024


class SkipRecord(Exception):
    """Raised by `on_record` for a record it refuses (e.g. schema-invalid): a bad record."""


class DeadLetter:
    """Appends `{"error", "line_no", "raw"}` lines; opened lazily so no file appears without need."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._fd: int | None = None
        self._pending: list[bytes] = []

    def add(self, error: str, line_no: int, raw: bytes) -> None:
        if self.path is None:
            return
        text = raw[:DEAD_LETTER_RAW_MAX_BYTES].decode("utf-8", errors="replace")
        entry: dict[str, Any] = {"error": error, "line_no": line_no, "raw": text}
        if len(raw) > DEAD_LETTER_RAW_MAX_BYTES:
            entry["raw_truncated"] = True
        self._pending.append(orjson.dumps(entry) + b"\n")

    def flush(self) -> None:
        if not self._pending or self.path is None:
            return
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        data = b"".join(self._pending)
        self._pending = []
        write_all(self._fd, data)

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def describe_bad_line(line: bytes | OversizedLine, max_line_bytes: int) -> tuple[str, bytes]:
    """Why a line is not a record, and the bytes to keep for the dead-letter file."""
    if isinstance(line, OversizedLine):
        return f"line is {line.length_bytes} bytes, longer than --max-line-bytes {max_line_bytes}", line.head
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"invalid JSON: {exc}", line
    return f"not a JSON object (got {type(value).__name__})", line


def run_transform(
    runtime: Runtime,
    config: StreamConfig,
    on_record: Callable[[dict[str, Any], bytes], bytes | None],
    *,
    on_tick: Callable[[], None] | None = None,
    on_drain: Callable[[], None] | None = None,
    can_read: Callable[[], bool] | None = None,
    stdin_fd: int = 0,
) -> None:
    """Run until end of input or a stop signal, then drain. Raises BadInputError under --strict.

    `on_drain` runs at the end in every case but a closed stdout (where it still runs, so state is
    persisted) and must make durable whatever the processor holds.
    """
    stats = runtime.stats
    counters = stats.counters
    writer = runtime.writer
    dead_letter = DeadLetter(config.dead_letter_path)
    idle_secs = config.flush_idle_ms / 1000.0

    def on_idle() -> None:
        writer.flush()
        dead_letter.flush()
        if on_tick is not None:
            on_tick()
        counters["bytes_in"] = reader.bytes_read
        stats.tick()

    reader = LineReader(
        stdin_fd,
        max_line_bytes=config.max_line_bytes,
        idle_secs=idle_secs,
        on_idle=on_idle,
        should_stop=runtime.stop,
        gate=can_read,
    )
    stats.watch_input(stdin_fd)
    loads = orjson.loads
    write = writer.write
    strict = config.strict

    def bad(line_no: int, line: bytes | OversizedLine, reason: str | None = None) -> None:
        if reason is None:
            reason, raw = describe_bad_line(line, config.max_line_bytes)
        else:
            raw = line.head if isinstance(line, OversizedLine) else line
        counters["bad_records"] += 1
        dead_letter.add(reason, line_no, raw)
        if strict:
            raise BadInputError(f"bad record at input line {line_no}: {reason}", "fix the input or drop --strict")

    try:
        for first_line_no, lines in reader.batches():
            good = 0
            try:
                for offset, line in enumerate(lines):
                    try:
                        record = loads(line)  # type: ignore[arg-type]
                    except (orjson.JSONDecodeError, TypeError):
                        if type(line) is bytes and not line.strip():
                            continue  # blank lines are not records
                        bad(first_line_no + offset, line)
                        continue
                    if type(record) is not dict:
                        bad(first_line_no + offset, line)
                        continue
                    good += 1
                    try:
                        out = on_record(record, line)  # type: ignore[arg-type]
                    except SkipRecord as exc:
                        bad(first_line_no + offset, line, str(exc))
                        continue
                    if out is not None:
                        write(out)
            finally:
                counters["records_in"] += good
                counters["bytes_in"] = reader.bytes_read  # progress lines count bytes as they are read
            writer.flush_if_stale(idle_secs)
            if on_tick is not None:
                on_tick()
            stats.tick()
    except OutputClosed:
        counters["bytes_in"] = reader.bytes_read
        dead_letter.close()
        if on_drain is not None:
            try:
                on_drain()
            except OutputClosed:
                pass
        raise
    except BadInputError:
        counters["bytes_in"] = reader.bytes_read
        dead_letter.close()
        if on_drain is not None:
            on_drain()
        raise
    counters["bytes_in"] = reader.bytes_read
    dead_letter.close()
    if on_drain is not None:
        on_drain()
    writer.flush()
    if runtime.stop.signal_name:
        runtime.log.info(f"Stopped by {runtime.stop.signal_name}; output flushed and state saved.")
