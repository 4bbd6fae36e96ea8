"""One input chunk of events in, its rendered alerts out: the unit of work of a helper process.

`render_chunk` runs what `AlertsProcessor`'s record handler runs per event (parse, keep rule,
alert, format, dumps) over a whole chunk of lines, and leaves the one step that must see every
alert in input order — dedupe — to the caller: each rendered alert comes with the 64-bit digest of
its dedupe key. `pack_into` / `unpack_from` carry a result through a shared-memory buffer as flat
arrays plus one blob (no pickle, no per-record objects on the way).

Pure: lines and a clock value in, a `Chunk` out; bad lines are only *located* here (their reason
and dead-letter entry are made by the caller's `BadRecords`, from the line it still holds).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

Render = Callable[[dict[str, Any], bytes, int], "tuple[int, bytes] | None"]


@dataclass(slots=True)
class Chunk:
    """The rendered alerts of one chunk, in input order.

    `blob` holds the alerts' JSON lines, each with its newline; alert i's newline is at `ends[i]`
    and its dedupe digest is `digests[i]` (0: never deduplicated). `bad`
    lists the indexes, in the chunk's lines, of lines that are not JSON objects; `good` counts
    the records (JSON objects), `filtered` those that were not alerts, `line_count` the chunk's
    lines, blank ones included (its caller numbers lines from it: a piece is split only once).
    """

    digests: array
    ends: array
    blob: bytes | bytearray | memoryview
    bad: array
    filtered: int
    good: int
    line_count: int

    def packed_bytes(self) -> int:
        return 8 * len(self.digests) + 4 * len(self.ends) + 4 * len(self.bad) + len(self.blob)

    def pack_into(self, buffer: Any) -> tuple[int, int, int, int, int, int]:
        """Write the arrays and the blob to `buffer` (it must hold `packed_bytes()`); returns the
        counts `unpack_from` needs: (kept, bad, filtered, good, line count, blob bytes)."""
        at = 0
        for part in (self.digests.tobytes(), self.ends.tobytes(), self.bad.tobytes(), self.blob):
            buffer[at : at + len(part)] = part
            at += len(part)
        return len(self.digests), len(self.bad), self.filtered, self.good, self.line_count, len(self.blob)

    @classmethod
    def unpack_from(
        cls, buffer: Any, kept: int, bad_count: int, filtered: int, good: int, line_count: int, blob_bytes: int
    ) -> Chunk:
        """The chunk `pack_into` wrote; its blob is a view of `buffer` (no copy of the alerts), so
        the buffer must not be written again until the chunk is written out."""
        view = memoryview(buffer)
        digests, ends, bad = array("Q"), array("I"), array("I")
        at = 8 * kept
        digests.frombytes(view[:at])
        ends.frombytes(view[at : at + 4 * kept])
        at += 4 * kept
        bad.frombytes(view[at : at + 4 * bad_count])
        at += 4 * bad_count
        blob = view[at : at + blob_bytes]
        return cls(digests, ends, blob, bad, filtered, good, line_count)


def render_chunk(lines: list[bytes], render: Render, now_ms: int) -> Chunk:
    """Every line of a chunk: blank lines skipped, lines that are not JSON objects located in
    `bad`, the rest rendered (filtered events only counted). The same decisions as
    `StdinSource._feed`, line by line."""
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    digests, ends, bad = array("Q"), array("I"), array("I")
    # one growing buffer, not a list of lines: each line is freed at once, so the next dumps
    # reuses its memory (a list held a whole piece of orjson's over-allocated buffers: 18 MB for
    # 256 KiB of tiny events)
    blob = bytearray()
    add_digest, add_end = digests.append, ends.append
    filtered = good = 0
    for index, line in enumerate(lines):
        if not line:
            continue
        try:
            event = loads(line)
        except decode_error:
            if not line.strip():
                continue
            bad.append(index)
            continue
        if type(event) is not dict:
            bad.append(index)
            continue
        good += 1
        found = render(event, line, now_ms)
        if found is None:
            filtered += 1
            continue
        add_digest(found[0])
        blob += found[1]
        add_end(len(blob))
        blob += b"\n"
    return Chunk(digests, ends, blob, bad, filtered, good, len(lines))
