"""Object bodies streamed to a file: NDJSON or one JSON array, gzip / zstd / none.

Records go through the compressor in 256 KiB slices and straight to disk, so memory does not
grow with the object size. The writer knows the bytes actually written plus an upper bound for
what the compressor still holds; near `--max-bytes` it forces a sync flush so the limit is
checked on exact stored bytes (objects end within one record of the limit, never above it).
gzip is zlib-ng (ISA-L at level 1), written as one gzip member of independent segments (see
`_GzipSegments`) so that two threads can compress one body; zstd is one stream.

Layout, chosen so a body cut anywhere by a crash can be read back record by record: every record
ends with a newline. NDJSON is `rec\\n rec\\n ...`; a JSON array is `[rec\\n,rec\\n,rec\\n]` (valid
JSON, parses as one list). A record is complete when its newline is present.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

from isal import isal_zlib
from zlib_ng import zlib_ng

from harmony_pipes._core.state import write_all

FORMATS = ("ndjson", "json-array")
COMPRESSIONS = ("gzip", "zstd", "none")
DEFAULT_LEVELS = {"gzip": 5, "zstd": 3, "none": 0}
CONTENT_TYPES = {"ndjson": "application/x-ndjson", "json-array": "application/json"}
FORMAT_EXTENSIONS = {"ndjson": ".ndjson", "json-array": ".json"}
COMPRESSION_EXTENSIONS = {"gzip": ".gz", "zstd": ".zst", "none": ""}
CONTENT_ENCODINGS = {"gzip": "gzip", "zstd": "zstd", "none": None}

SLICE_BYTES = 256 * 1024
MAX_SLICES_IN_FLIGHT = 4  # per body, when compressing on a worker thread: bounds memory
# compressed bytes are written (and hashed) in pieces of this size, and at every flush: fewer
# system calls, and fewer times the worker thread has to take the GIL back (see Spool)
WRITE_BYTES = 256 * 1024
TRAILER_BOUND_BYTES = 32  # gzip: final block + CRC32 + ISIZE; zstd: last block + checksum; "]"
READ_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class BodySpec:
    """What an object body looks like; shared by the writer, the reader and the stores."""

    format: str = "ndjson"
    compression: str = "gzip"
    level: int | None = None

    @property
    def extension(self) -> str:
        return FORMAT_EXTENSIONS[self.format] + COMPRESSION_EXTENSIONS[self.compression]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def content_encoding(self) -> str | None:
        return CONTENT_ENCODINGS[self.compression]

    @property
    def effective_level(self) -> int:
        return DEFAULT_LEVELS[self.compression] if self.level is None else self.level


def compressed_bound(raw_bytes: int) -> int:
    """Most bytes `raw_bytes` of input can become (deflate and zstd worst cases, rounded up)."""
    return raw_bytes + (raw_bytes >> 7) + 64


def one_record_bound_bytes(spec: BodySpec, record_bytes: int) -> int:
    """Most bytes a sealed object holding one record of `record_bytes` can take (the bound
    `BodyWriter.size_bound_with` gives for it): `--max-bytes` below this for the longest record
    `--max-line-bytes` allows could not hold every record, so it is refused at start."""
    pending = record_bytes + 2 + 2  # the record's newline and comma/bracket, the array's close
    if spec.compression == "none":
        return pending + 1
    return compressed_bound(pending) + TRAILER_BOUND_BYTES


class _NoCompressor:
    def compress(self, data: bytes) -> bytes:
        return data

    def sync(self) -> bytes:
        return b""

    def finish(self) -> bytes:
        return b""


def gzip_module(level: int) -> Any:
    """The deflate library for a gzip level: ISA-L for level 1, zlib-ng for 2-9.

    Measured on alert NDJSON (table in docs/s3-batch.md): ISA-L's level 1 is faster than
    zlib-ng's levels 1 and 2 with a better ratio than zlib-ng's 1; from level 2 on, zlib-ng
    compresses better than any ISA-L level. zlib-ng's level 5 (the default) compresses better than
    zlib's level 6 (the level s3-batch used before zlib-ng) at about twice its speed. Both release
    the GIL while they compress.
    """
    return isal_zlib if level <= ISAL_MAX_LEVEL else zlib_ng


ISAL_MAX_LEVEL = 1
WINDOW_BYTES = 32 * 1024  # deflate's window: each gzip segment is primed with the raw bytes before it
# a gzip member header (RFC 1952): deflate, no name or comment, mtime 0, OS unknown
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


class _GzipSegments:
    """One gzip member built from independently compressed segments (the layout pigz writes).

    Each segment is raw deflate primed with the 32 KiB of input before it (so matches reach
    back as in one stream: the ratio is within 0.2 % of a single stream) and ends with a sync
    flush (byte-aligned, so segments concatenate, and a body cut after any segment decodes up to
    it). Segments do not depend on each other's compressor state, so the caller can compress
    the last one of an input chunk itself while the worker thread still finishes the ones
    before — this is what keeps the commit after every chunk from waiting for the compressor.
    The member ends with a final block and the CRC-32 and size of all input: a standard gzip
    file for `gzip -dc`, Python's gzip, Spark and Athena.
    """

    def __init__(self, level: int) -> None:
        self._module = gzip_module(level)
        self._level = level

    def segment(self, data: bytes, window: bytes, final: bool = False) -> bytes:
        module = self._module
        if window:
            obj = module.compressobj(self._level, module.DEFLATED, -15, zdict=window)
        else:
            obj = module.compressobj(self._level, module.DEFLATED, -15)
        return obj.compress(data) + obj.flush(module.Z_FINISH if final else module.Z_SYNC_FLUSH)

    @staticmethod
    def trailer(crc32: int, size: int) -> bytes:
        return struct.pack("<II", crc32 & 0xFFFFFFFF, size & 0xFFFFFFFF)


class _Zstd:
    def __init__(self, level: int) -> None:
        import zstandard

        self._zstd = zstandard
        self._obj = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()

    def compress(self, data: bytes) -> bytes:
        return self._obj.compress(data)

    def sync(self) -> bytes:
        return self._obj.flush(self._zstd.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self) -> bytes:
        return self._obj.flush(self._zstd.COMPRESSOBJ_FLUSH_FINISH)


def _stream_compressor(spec: BodySpec) -> Any:
    if spec.compression == "zstd":
        return _Zstd(spec.effective_level)
    return _NoCompressor()


class BodyWriter:
    """Appends records to one object body file; `flush()` writes them, `fsync()` makes them durable.

    With an `executor` (one worker thread, FIFO), slices are compressed and written there while
    the caller parses the next records; zlib-ng, ISA-L, zstd, hashlib and os.write release the
    GIL, so this uses the second core. Every operation that needs the exact state waits for the
    slices in flight. `begin_flush()` starts a flush and `end_flush()` waits for it, so a caller
    can start the flushes of several bodies before waiting for the first; for gzip,
    `begin_flush()` compresses the last slice on the calling thread while the worker finishes
    the earlier ones (see `_GzipSegments`).
    """

    def __init__(self, path: str | os.PathLike[str], spec: BodySpec, executor: Executor | None = None) -> None:
        self.path = os.fspath(path)
        self.spec = spec
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._segments = _GzipSegments(spec.effective_level) if spec.compression == "gzip" else None
        self._compressor = None if self._segments else _stream_compressor(spec)
        self._window = b""  # gzip: the last WINDOW_BYTES of input fed (the next segment's dictionary)
        self._crc32 = 0  # gzip: of all input written so far (updated in order, by the writing thread)
        self._tail: list[tuple[bytes, bytes]] = []  # gzip: (input, segment) compressed by begin_flush
        self._sha = hashlib.sha256()
        self._slices: list[bytes] = []
        self._slice_bytes = 0
        self._out: list[bytes] = [GZIP_HEADER] if self._segments else []  # compressed, not yet written
        self._out_bytes = len(GZIP_HEADER) if self._segments else 0
        self._fed_since_sync = 0  # raw bytes inside the compressor, not yet on disk for sure
        self._array = spec.format == "json-array"
        self.records = 0
        self._fed_records = 0
        self._flushing_records = 0
        self.raw_bytes = 0
        self.written_bytes = 0
        self.flushed_records = 0  # records whose bytes are all in the file (page cache)
        self.synced_records = 0  # records fsynced
        self.finished = False
        self._executor = executor
        self._in_flight: deque[tuple[Future[None], tuple[Any, ...]]] = deque()  # (future, its arguments)

    def add(self, line: bytes) -> None:
        """Append one serialized record (no trailing newline)."""
        self._slices.append(line)
        self._slice_bytes += len(line) + 2  # newline, and the array's comma or bracket
        self.records += 1
        if self._slice_bytes >= SLICE_BYTES:
            self._feed()

    def add_block(self, block: bytes, count: int) -> None:
        """Append `count` records at once: `block` is them joined by newlines (no trailing one)."""
        self._slices.append(block.replace(b"\n", b"\n,") if self._array else block)
        self._slice_bytes += len(block) + count + 1  # as `add` counts them: each record + 2
        self.records += count
        if self._slice_bytes >= SLICE_BYTES:
            self._feed()

    def size_bound_with(self, extra_raw_bytes: int) -> int:
        """Upper bound of the sealed object size if a record of `extra_raw_bytes` were added."""
        # bytes still buffered or being written are output of input counted in _fed_since_sync
        pending = self._fed_since_sync + self._slice_bytes + extra_raw_bytes + 2
        if self.spec.compression == "none":
            return self.written_bytes + pending + 1
        return self.written_bytes + compressed_bound(pending) + TRAILER_BOUND_BYTES

    def _take(self) -> bytes:
        """The slices added since the last call, joined into body bytes (b"" when none)."""
        if not self._slices:
            return b""
        if self._array:
            lead = b"," if self._fed_records else b"["
            data = lead + b"\n,".join(self._slices) + b"\n"
        else:
            data = b"\n".join(self._slices) + b"\n"
        self._fed_records = self.records
        self._slices.clear()
        self._slice_bytes = 0
        self.raw_bytes += len(data)
        self._fed_since_sync += len(data)
        return data

    def _next_window(self, data: bytes) -> bytes:
        """The dictionary for the segment after `data` (and remember it)."""
        window = self._window
        if len(data) >= WINDOW_BYTES:
            self._window = data[-WINDOW_BYTES:]
        else:
            self._window = (window + data)[-WINDOW_BYTES:]
        return window

    def _feed(self) -> None:
        data = self._take()
        if not data:
            return
        if self._segments is not None:
            self._run(self._segment_and_write, data, self._next_window(data))
        else:
            self._run(self._compress_and_write, data)

    def _run(self, task: Callable[..., None], *args: Any) -> None:
        """Run a compressor step here, or queue it on the worker (bounded: waits for old ones)."""
        if self._executor is None:
            task(*args)
            return
        while len(self._in_flight) >= MAX_SLICES_IN_FLIGHT:
            self._in_flight.popleft()[0].result()
        self._in_flight.append((self._executor.submit(task, *args), args))

    def _segment_and_write(self, data: bytes, window: bytes) -> None:
        self._append(data, self._segments.segment(data, window))  # type: ignore[union-attr]

    def _append(self, data: bytes, segment: bytes) -> None:
        """Account one gzip segment, in input order, and buffer it for writing."""
        self._crc32 = zlib_ng.crc32(data, self._crc32)
        self._buffer(segment)
        if self._out_bytes >= WRITE_BYTES:
            self._write_out()

    def _compress_and_write(self, data: bytes) -> None:
        self._buffer(self._compressor.compress(data))  # type: ignore[union-attr]
        if self._out_bytes >= WRITE_BYTES:
            self._write_out()

    def _sync_and_write(self) -> None:
        self._buffer(self._compressor.sync())  # type: ignore[union-attr]
        self._write_out()

    def _buffer(self, data: bytes) -> None:
        if data:
            self._out.append(data)
            self._out_bytes += len(data)

    def _settle(self) -> None:
        """Wait for the slices in flight (re-raising a write error such as a full disk)."""
        while self._in_flight:
            self._in_flight.popleft()[0].result()

    def _write_out(self) -> None:
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_bytes = 0
        self._sha.update(data)
        write_all(self.fd, data)
        self.written_bytes += len(data)

    def begin_flush(self) -> None:
        """Start writing every record added so far (see end_flush)."""
        if self._segments is not None:
            # what is left, and the last segments the worker has not started, are compressed
            # here while the worker finishes the others (the caller would only wait): taken
            # from the end while that leaves the worker at least as much as this thread
            data = self._take()
            todo = [(data, self._next_window(data))] if data else []
            mine = len(data)
            theirs = sum(len(args[0]) for future, args in self._in_flight if not future.done())
            while self._in_flight:
                future, args = self._in_flight[-1]
                size = len(args[0])
                if mine + size > theirs - size or not future.cancel():
                    break
                self._in_flight.pop()
                todo.insert(0, args)
                mine += size
                theirs -= size
            self._tail = [(data, self._segments.segment(data, window)) for data, window in todo]
        else:
            self._feed()
            self._run(self._sync_and_write)
        self._flushing_records = self._fed_records

    def end_flush(self) -> None:
        """Wait until the records of `begin_flush` are in the file (no fsync): size becomes exact."""
        self._settle()
        for data, segment in self._tail:  # after the worker's segments: input order
            self._append(data, segment)
        self._tail = []
        self._write_out()
        self._fed_since_sync = 0
        self.flushed_records = self._flushing_records

    def flush(self) -> None:
        """Push everything through the compressor to the file (no fsync)."""
        self.begin_flush()
        self.end_flush()

    def fsync(self) -> int:
        """fsync what is flushed; returns how many records became durable with this call."""
        newly = self.flushed_records - self.synced_records
        if newly:
            os.fsync(self.fd)
            self.synced_records = self.flushed_records
        return newly

    def sync(self) -> int:
        """Flush and fsync; returns how many records became durable with this call."""
        if self.records == self.synced_records:
            return 0
        self.flush()
        return self.fsync()

    def finish(self) -> tuple[int, str]:
        """Write the trailer (and the closing bracket of an array), fsync, close.

        Returns (stored bytes, sha256 hex of the stored bytes).
        """
        self._settle()
        data = self._take()
        if self._array:
            data += b"]"
            self.raw_bytes += 1
        if self._segments is not None:
            self._append(data, self._segments.segment(data, self._next_window(data), final=True))
            self._buffer(self._segments.trailer(self._crc32, self.raw_bytes))
        else:
            self._buffer(self._compressor.compress(data))  # type: ignore[union-attr]
            self._buffer(self._compressor.finish())  # type: ignore[union-attr]
        self._write_out()
        os.fsync(self.fd)
        os.close(self.fd)
        self.flushed_records = self.synced_records = self.records
        self.finished = True
        return self.written_bytes, self._sha.hexdigest()

    def abort(self) -> None:
        """Close without sealing (the file stays for crash recovery)."""
        if not self.finished:
            try:
                self._settle()
            except OSError:
                pass
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.finished = True


def _decompressed_chunks(path: str | os.PathLike[str], compression: str) -> Iterator[bytes]:
    """Decompress a possibly truncated body as far as it goes, in bounded chunks."""
    with open(path, "rb") as handle:
        if compression == "none":
            while chunk := handle.read(READ_CHUNK_BYTES):
                yield chunk
            return
        if compression == "gzip":
            decoder: Any = zlib.decompressobj(31)
        else:
            import zstandard

            decoder = zstandard.ZstdDecompressor().decompressobj()
        while chunk := handle.read(READ_CHUNK_BYTES):
            try:
                out = decoder.decompress(chunk)
            except Exception:  # truncated or torn tail: keep what decoded so far
                return
            if out:
                yield out
            if compression == "gzip" and decoder.eof:
                return


def read_records(path: str | os.PathLike[str], spec: BodySpec) -> Iterator[bytes]:
    """The complete records of a body (a torn last record is dropped), without separators."""
    pending = b""
    first = True
    for chunk in _decompressed_chunks(path, spec.compression):
        data = pending + chunk if pending else chunk
        lines = data.split(b"\n")
        pending = lines.pop()
        for line in lines:
            if spec.format == "json-array":
                if first:
                    line = line[1:] if line.startswith(b"[") else line
                elif line.startswith(b","):
                    line = line[1:]
                first = False
            if line and line != b"]":
                yield line
