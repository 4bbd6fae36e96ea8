"""Batched NDJSON output: one `os.write` per batch, not per record, and quiet on a closed pipe."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from .errors import OutputClosed

DEFAULT_MAX_BUFFER_BYTES = 256 * 1024
IOV_MAX = 1024


class BatchWriter:
    """Collects serialized lines and writes them in large batches to `fd`.

    Callers add compact JSON lines *without* the trailing newline. A flush happens when the
    buffer passes `max_buffer_bytes`, when the caller says so (idle input, end of a page, exit),
    and never per record. EPIPE (the reader went away, e.g. `| head -1`) becomes `OutputClosed`
    so the command can persist its state and exit 0 quietly.
    """

    def __init__(
        self,
        fd: int = 1,
        *,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fd = fd
        self.max_buffer_bytes = max_buffer_bytes
        self.clock = clock
        self.lines_written = 0
        self.bytes_written = 0
        self.last_flush_at = clock()
        self.closed = False
        # called after every successful write: state that must follow output (dedupe keys,
        # cursors) is persisted here, so it never runs ahead of what the reader received
        self.on_flushed: Callable[[], None] | None = None
        self._lines: list[bytes] = []
        self._size = 0

    @property
    def pending_lines(self) -> int:
        return len(self._lines)

    def write(self, line: bytes) -> None:
        self._lines.append(line)
        self._size += len(line) + 1
        if self._size >= self.max_buffer_bytes:
            self.flush()

    def write_lines(self, lines: list[bytes]) -> None:
        """`write` for many lines at once (any bytes-like objects): one call per page, not per record."""
        self._lines.extend(lines)
        self._size += sum(map(len, lines)) + len(lines)
        if self._size >= self.max_buffer_bytes:
            self.flush()

    def write_now(self, parts: list[bytes | memoryview], lines: int) -> None:
        """Write `parts` (together `lines` whole lines, newlines included) at once, after what
        is buffered, keeping no reference: for blocks in a buffer the caller reuses next (a
        helper process's shared memory) — written from there, not copied."""
        self.flush()
        if self.closed:
            raise OutputClosed()
        try:
            written = write_vectors(self.fd, parts)
        except BrokenPipeError as exc:
            self.closed = True
            raise OutputClosed() from exc
        self.lines_written += lines
        self.bytes_written += written
        self.last_flush_at = self.clock()
        if self.on_flushed is not None:
            self.on_flushed()

    def flush(self) -> None:
        self.last_flush_at = self.clock()
        if not self._lines:
            return
        lines, self._lines, self._size = self._lines, [], 0
        data = b"\n".join(lines) + b"\n"
        if self.closed:
            raise OutputClosed()
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except BrokenPipeError as exc:
            self.closed = True
            raise OutputClosed() from exc
        self.lines_written += len(lines)
        self.bytes_written += len(data)
        if self.on_flushed is not None:
            self.on_flushed()

    def flush_if_stale(self, max_staleness_secs: float) -> None:
        """Flush when lines have waited longer than `max_staleness_secs` (a slow trickle)."""
        if self._lines and self.clock() - self.last_flush_at >= max_staleness_secs:
            self.flush()


def write_vectors(fd: int, parts: list[bytes | memoryview]) -> int:
    """Every byte of `parts` to `fd` with `os.writev` (short writes resumed); returns the count."""
    views = [memoryview(part) for part in parts if len(part)]
    total = 0
    while views:
        written = os.writev(fd, views[:IOV_MAX])
        total += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]
    return total
