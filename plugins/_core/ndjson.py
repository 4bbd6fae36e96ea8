"""NDJSON input: binary chunked reads with idle detection and a hard line-length bound.

Reading `os.read(fd, 1 MiB)` and splitting on newlines is several times faster than iterating a
text file, and `select()` with a timeout tells us when input went quiet so the output can be
flushed (a trickle must never sit in a buffer inside a shipper's pipe). A line longer than
`max_line_bytes` is never held in memory: its head is kept for the dead-letter file and the rest
is skipped up to the next newline.
"""

from __future__ import annotations

import os
import select
import stat
from collections.abc import Iterator
from dataclasses import dataclass

DEFAULT_MAX_LINE_BYTES = 1 << 20
DEFAULT_CHUNK_BYTES = 1 << 20
OVERSIZE_HEAD_BYTES = 1024


@dataclass(frozen=True)
class OversizedLine:
    """Stands in for a line that exceeded the limit: its length and first bytes."""

    length_bytes: int
    head: bytes


class LineReader:
    """Yields `(first_line_no, lines)` per chunk read from `fd`.

    `lines` holds `bytes` (without the newline) or an `OversizedLine`. Line numbers are 1-based
    and count every physical line, blank ones included, so dead-letter entries point at the
    input. When no byte arrived for `idle_secs` it yields an empty batch, so the caller gets
    control back (to flush output, run timers, notice a signal) and may simply stop iterating.
    """

    def __init__(
        self,
        fd: int,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        idle_secs: float = 0.2,
    ) -> None:
        self.fd = fd
        self.max_line_bytes = max_line_bytes
        self.chunk_bytes = chunk_bytes
        self.idle_secs = idle_secs
        self.bytes_read = 0
        self._selectable = _is_selectable(fd)

    def _readable(self) -> bool:
        """Wait up to `idle_secs` for input; False when none came (the input is idle)."""
        if not self._selectable:
            return True
        ready, _, _ = select.select([self.fd], [], [], self.idle_secs)
        return bool(ready)

    def batches(self, whole: bool = False) -> Iterator[tuple[int, list[bytes | OversizedLine] | bytes]]:
        """`whole`: a read whose complete lines are all within the limit comes as one `bytes` of
        those lines (newline-separated, without the last newline), not split: for a caller that
        hands most of its input on unsplit (harmony-alerts' helper processes, which split their
        pieces themselves). Any other read still comes as a list. Counting a read's newlines
        costs as much as splitting it, so in this mode lines are not numbered (the first item
        is always 0, lists included): the caller numbers them once it has split them."""
        pending = b""
        skipping: OversizedLine | None = None  # inside an oversized line, waiting for its end
        line_no = 0 if whole else 1  # whole: not counted (see above)
        max_line = self.max_line_bytes
        while True:
            if not self._readable():
                yield line_no, []
                continue
            try:
                chunk = os.read(self.fd, self.chunk_bytes)
            except InterruptedError:
                continue
            if not chunk:
                break
            self.bytes_read += len(chunk)
            if skipping is not None:
                cut = chunk.find(b"\n")
                if cut < 0:
                    skipping = OversizedLine(skipping.length_bytes + len(chunk), skipping.head)
                    continue
                done = OversizedLine(skipping.length_bytes + cut, skipping.head)
                skipping = None
                yield line_no, [done]
                line_no += not whole
                chunk = chunk[cut + 1 :]
            if whole:
                cut = chunk.rfind(b"\n")
                # one copy (`pending + chunk[:cut]` made two: a fresh MiB costs its page faults too)
                block = b"".join((pending, memoryview(chunk)[:cut])) if cut >= 0 else b""
                if cut >= 0 and not _may_hold_a_line_over(block, max_line):
                    pending = chunk[cut + 1 :]
                    if len(pending) > max_line:
                        skipping = OversizedLine(len(pending), pending[:OVERSIZE_HEAD_BYTES])
                        pending = b""
                    yield 0, block
                    continue
            # the pending line joins the chunk's first line only: no copy of the whole chunk
            data_bytes = len(pending) + len(chunk)
            lines: list[bytes | OversizedLine] = chunk.split(b"\n")
            if pending:
                lines[0] = pending + lines[0]  # type: ignore[operator]
            pending = lines.pop()  # type: ignore[assignment]
            if len(pending) > max_line:
                skipping = OversizedLine(len(pending), pending[:OVERSIZE_HEAD_BYTES])
                pending = b""
            # only then can a complete line be too long (max(map(len)): no Python loop per line)
            if data_bytes > max_line and max(map(len, lines), default=0) > max_line:  # type: ignore[arg-type]
                for i, line in enumerate(lines):
                    if len(line) > max_line:  # type: ignore[arg-type]
                        lines[i] = OversizedLine(len(line), line[:OVERSIZE_HEAD_BYTES])  # type: ignore
            if lines:
                yield line_no, lines
                if not whole:
                    line_no += len(lines)
        if skipping is not None:
            yield line_no, [skipping]
        elif pending:
            yield line_no, [pending]


def _may_hold_a_line_over(data: bytes, max_line_bytes: int) -> bool:
    """False when no line of `data` is longer than `max_line_bytes`, found with a few `find`s
    instead of a split: a line longer than that covers a whole aligned window of
    (max_line_bytes + 1) // 2 bytes, so a newline in every such window rules it out. True means
    "look line by line" (a line over half the limit, or a limit smaller than the lines)."""
    window = max(1, (max_line_bytes + 1) // 2)
    find = data.find
    return any(find(b"\n", start, start + window) < 0 for start in range(0, len(data) - window + 1, window))


def _is_selectable(fd: int) -> bool:
    """Regular files are always readable; select() is only useful for pipes, ttys and sockets."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode)
