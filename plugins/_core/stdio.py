"""The two ends of a shell pipe as stages of the processor contract: stdin and stdout.

`StdinSource` is the stream contract's input side (DESIGN section 3.1): binary chunked reads,
blank lines skipped, bad records counted and dead-lettered (`--strict` → 65), and the shutdown
rule for transforms and sinks — on a stop signal it keeps reading until end of input or
`--shutdown-timeout-secs`, so a signal to every stage of a pipe loses nothing.

`StdoutSink` is the output side: compact JSON lines written in batches; a commit is a flush, so
upstream state (dedupe keys, cursors) is saved only once the reader has the records.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import termios
import time
from typing import Any

import orjson

from .errors import BadInputError, ConfigError, OutputClosed, TempFailError
from .ndjson import LineReader, OversizedLine
from .options import Runtime, StreamConfig
from .output import BatchWriter
from .processor import SINK, SOURCE, CommitToken, Emit, LinesEmit, Position, Processor, SkipRecord, StageFailed
from .state import write_all

DEAD_LETTER_RAW_MAX_BYTES = 64 * 1024


class DeadLetter:
    """Appends `{"error", "line_no", "raw"}` lines to `--dead-letter`.

    The path is checked at start (`check()`: exit 2 if it cannot be written), the file is bounded
    by `max_bytes` (a flood of one-byte bad lines must not fill the disk: past the bound entries
    are counted, not written), and a write failure (full disk) costs the dead letters, never the
    run: good records keep flowing and the loss is said once.
    """

    def __init__(self, path: str | None, runtime: Runtime, max_bytes: int) -> None:
        self.path = path
        self.runtime = runtime
        self.max_bytes = max_bytes
        self._fd: int | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._size = 0
        self.dropped = 0
        self._failed = False

    def check(self) -> None:
        """Open (create) the file now, so a wrong path is a usage error before any input."""
        if self.path is None:
            return
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise ConfigError(
                f"cannot open --dead-letter {self.path}: {exc.strerror}",
                "point --dead-letter (HARMONY_PIPES_DEAD_LETTER) at a writable file",
            ) from None

    def add(self, error: str, line_no: int, raw: bytes) -> None:
        if self.path is None:
            return
        text = raw[:DEAD_LETTER_RAW_MAX_BYTES].decode("utf-8", errors="replace")
        entry: dict[str, Any] = {"error": error, "line_no": line_no, "raw": text}
        if len(raw) > DEAD_LETTER_RAW_MAX_BYTES:
            entry["raw_truncated"] = True
        line = orjson.dumps(entry) + b"\n"
        if self._failed or self._size + self._pending_bytes + len(line) > self.max_bytes:
            self._drop(1, "is full (--dead-letter-max-bytes)" if not self._failed else None)
            return
        self._pending.append(line)
        self._pending_bytes += len(line)

    def _drop(self, count: int, why: str | None) -> None:
        self.dropped += count
        self.runtime.stats.counters["dead_letters_dropped"] = self.dropped
        if why is not None:
            self.runtime.log.warning_once(
                "dead-letter-full",
                f"dead-letter file {self.path} {why}: further bad records are counted, not written",
            )

    def flush(self) -> None:
        if not self._pending or self.path is None:
            return
        data = b"".join(self._pending)
        count = len(self._pending)
        self._pending, self._pending_bytes = [], 0
        try:
            if self._fd is None:
                self.check()
            write_all(self._fd, data)  # type: ignore[arg-type]
            self._size += len(data)
        except (OSError, ConfigError) as exc:
            self._failed = True
            reason = "disk full" if isinstance(exc, OSError) and exc.errno == errno.ENOSPC else str(exc)
            self._drop(count, f"cannot be written ({reason})")

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


def unread_bytes(fd: int) -> int | None:
    """Bytes waiting in a pipe (FIONREAD); None where the kernel cannot say."""
    try:
        buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return None
    return int.from_bytes(buf, "little")


class BadRecords:
    """The bad-record policy of one stage: count, dead-letter, and `--strict` → exit 65."""

    def __init__(self, runtime: Runtime, config: StreamConfig) -> None:
        self.counters = runtime.stats.counters
        self.dead_letter = DeadLetter(config.dead_letter_path, runtime, config.dead_letter_max_bytes)
        self.strict = config.strict
        self.max_line_bytes = config.max_line_bytes

    def __call__(self, line_no: int, line: bytes | OversizedLine, reason: str | None = None) -> None:
        if reason is None:
            reason, raw = describe_bad_line(line, self.max_line_bytes)
        else:
            raw = line.head if isinstance(line, OversizedLine) else line
        self.counters["bad_records"] += 1
        self.dead_letter.add(reason, line_no, raw)
        if self.strict:
            raise BadInputError(f"bad record at input line {line_no}: {reason}", "fix the input or drop --strict")


class StdinSource(Processor):
    """NDJSON on stdin as the head of a chain: one `poll` reads one chunk (or waits one idle
    interval) and hands every good record to the next stage."""

    role = SOURCE
    command = "stdin"

    def __init__(self, runtime: Runtime, config: StreamConfig, *, fd: int = 0) -> None:
        super().__init__(runtime, config)
        self.config = config
        self.fd = fd
        self.bad = BadRecords(runtime, config)
        self.reader = LineReader(fd, max_line_bytes=config.max_line_bytes, idle_secs=config.flush_idle_ms / 1000.0)
        self._batches = self.reader.batches()
        self._handler: Emit | None = None
        self._gate_open = True
        self.deadline: float | None = None
        self.cut_short_bytes: int | None = None  # set when the shutdown timeout stopped reading
        self.downstream: Processor | None = None  # whose failure an exception from `emit` is
        self.lines_handler: LinesEmit | None = None  # the downstream stage's whole-chunk path
        self._stopped_by_failure = False

    def open(self, resume: Any = None) -> None:
        self.bad.dead_letter.check()
        self.runtime.stats.watch_input(self.fd)  # percent done on a terminal, for a regular file

    def request_stop(self) -> None:
        """Transforms and sinks drain their input: keep reading until EOF or the timeout."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.config.shutdown_timeout_secs

    def stop_now(self) -> None:
        """A stage downstream failed for good: stop reading at once (what is unread stays; the
        failure, not the shutdown timeout, is what the command reports)."""
        self.deadline = time.monotonic()
        self._stopped_by_failure = True

    def give_up(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.cut_short_bytes = unread_bytes(self.fd) or 0
            return True
        return False

    def poll(self) -> bool:
        if self.give_up():
            return False
        try:
            first_line_no, lines = next(self._batches)
        except StopIteration:
            return False
        self.runtime.stats.counters["bytes_in"] = self.reader.bytes_read
        if lines:
            self._feed(first_line_no, lines)
        return True

    def _feed(self, first_line_no: int, lines: list[bytes | OversizedLine]) -> None:
        handler = self._handler
        if handler is None:
            handler = self._handler = self.emit
        loads = orjson.loads
        bad = self.bad
        good = 0
        try:
            start = 0
            if self.lines_handler is not None:  # a stage that takes whole chunks of good lines
                start = good = self.lines_handler(lines)  # type: ignore[arg-type]
                if start:
                    lines = lines[start:]
            for offset, line in enumerate(lines, start):
                if not line:
                    continue  # blank lines are not records (and must not cost an exception each)
                try:
                    record = loads(line)  # type: ignore[arg-type]
                except (orjson.JSONDecodeError, TypeError):
                    if type(line) is bytes and not line.strip():
                        continue
                    bad(first_line_no + offset, line)
                    continue
                if type(record) is not dict:
                    bad(first_line_no + offset, line)
                    continue
                good += 1
                try:
                    handler(record, line)  # type: ignore[arg-type]
                except SkipRecord as exc:
                    bad(first_line_no + offset, line, str(exc))
        except (BadInputError, OutputClosed, StageFailed):
            raise
        except BaseException as exc:  # raised by the stage the record was handed to
            raise StageFailed(self.downstream, exc) from exc
        finally:
            self.runtime.stats.counters["records_in"] += good

    def on_tick(self) -> None:
        self.bad.dead_letter.flush()

    def close(self) -> int:
        self.bad.dead_letter.close()
        if self.cut_short_bytes is not None and not self._stopped_by_failure:
            waiting = f"{self.cut_short_bytes} bytes were still waiting on stdin" if self.cut_short_bytes else ""
            raise TempFailError(
                f"stopped reading after --shutdown-timeout-secs {self.config.shutdown_timeout_secs:g}"
                + (f"; {waiting}" if waiting else "; the writer had not closed stdin"),
                "everything read was processed and committed; stop the writer first, or raise --shutdown-timeout-secs",
            )
        return 0


class StdoutSink(Processor):
    """stdout as the tail of a chain: records are batched into few writes; commit = flush."""

    role = SINK
    command = "stdout"

    def __init__(self, runtime: Runtime, writer: BatchWriter, idle_secs: float) -> None:
        super().__init__(runtime)
        self.writer = writer
        self.idle_secs = idle_secs
        self._commits = 0

    def record_handler(self) -> Emit:
        write = self.writer.write

        def on_record(record: dict[str, Any], raw: bytes) -> None:
            write(raw)

        return on_record

    def next_token(self) -> CommitToken:
        return CommitToken(None, self._commits + 1)

    def commit_due(self, at_end: bool = False) -> bool:
        """Lines waited `--flush-idle-ms` (input idle, or a slow trickle); a full buffer flushes
        by itself, so steady input costs one write per 256 KiB, not one per input chunk."""
        writer = self.writer
        if writer.pending_lines == 0:
            return False
        return at_end or writer.clock() - writer.last_flush_at >= self.idle_secs

    def commit(self, positions: dict[str, Position], token: CommitToken) -> None:
        self.writer.flush()
        self._commits = token.number

    def durable_through(self) -> int:
        return self._commits

    def drain(self) -> None:
        self.writer.flush()


# Linux's default limit for an unprivileged process's pipe: reads of up to 1 MiB from a pipe, as
# from a file, whenever the writer is ahead (a default 64 KiB pipe gives 64 KiB chunks)
STDIN_PIPE_BYTES = 1 << 20


def grow_pipe(fd: int, size_bytes: int) -> None:
    """Ask for a larger pipe buffer on `fd` if it is a pipe (best effort: Linux only, limits apply)."""
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    try:
        if setpipe is not None and stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, setpipe, size_bytes)
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size or the user's pipe quota: keep the default


def emit_to_writer(writer: BatchWriter) -> Emit:
    """An `emit` that writes the record's bytes to `writer` (a sink's receipts)."""
    write = writer.write

    def emit(record: dict[str, Any], raw: bytes) -> None:
        write(raw)

    return emit


def stdin_is_regular_file(fd: int = 0) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False
