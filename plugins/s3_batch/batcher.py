"""When an object is sealed (pure policy: the clock and the body files are injected).

A batch is sealed when it reaches `--max-records`, when the next record would push the *stored*
object past `--max-bytes` (measured on bytes actually written, after compression: the body is
flushed to get an exact figure before deciding), or when `--max-age-secs` passed since its first
record. Records of different partitions (`{field:NAME}`, `{date}`, `{hour}` in the key template)
never share an object; at most `max_open_batches` partitions are open at once, the oldest one is
sealed to make room for a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

DEFAULT_MAX_RECORDS = 100_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_AGE_SECS = 300.0
DEFAULT_MAX_OPEN_BATCHES = 32
NOTHING: tuple[()] = ()
BLOCK_MARGIN_BYTES = 1024  # see add_block


class Body(Protocol):
    """What the batcher needs from an object body (`body.BodyWriter` in production)."""

    records: int
    written_bytes: int

    def add(self, line: bytes) -> None: ...

    def add_block(self, block: bytes, count: int) -> None: ...

    def size_bound_with(self, extra_raw_bytes: int) -> int: ...

    def flush(self) -> None: ...


@dataclass(frozen=True)
class Limits:
    max_records: int = DEFAULT_MAX_RECORDS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_age_secs: float = DEFAULT_MAX_AGE_SECS
    max_open_batches: int = DEFAULT_MAX_OPEN_BATCHES


@dataclass
class OpenBatch:
    partition: tuple[str, ...]
    body: Body
    opened_at: float
    first_ms: int = 0
    last_ms: int = 0
    reason: str = ""  # why it was sealed: records, bytes, age, partitions, drain
    budget: int = 0  # bytes that may still be added before the size limit is checked again
    seen_written: int = 0  # body.written_bytes when the budget was computed
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def records(self) -> int:
        return self.body.records


class Batcher:
    """Routes records to open batches and hands back the batches that must be sealed now."""

    def __init__(
        self,
        limits: Limits,
        open_body: Callable[[tuple[str, ...]], Body],
        clock: Callable[[], float],
    ) -> None:
        self.limits = limits
        self.open_body = open_body
        self.clock = clock
        self.open: dict[tuple[str, ...], OpenBatch] = {}
        self.max_records = limits.max_records

    def add(self, partition: tuple[str, ...], record_ms: int, line: bytes) -> Sequence[OpenBatch]:
        """Add one record; returns batches to seal (already removed from the open set)."""
        batch = self.open.get(partition)
        size = len(line)
        cost = size + (size >> 6) + 4  # >= what this record adds to the body's size bound
        if batch is None or batch.budget < cost or batch.body.written_bytes != batch.seen_written:
            return self._add_checked(partition, record_ms, line, batch, cost)
        body = batch.body
        body.add(line)
        batch.budget -= cost
        if record_ms < batch.first_ms:
            batch.first_ms = record_ms
        elif record_ms > batch.last_ms:
            batch.last_ms = record_ms
        if body.records >= self.max_records:
            return [self._close(partition, "records")]
        return NOTHING

    def add_block(self, partition: tuple[str, ...], first_ms: int, last_ms: int, block: bytes, count: int) -> bool:
        """Add `count` records (`block`: them joined by newlines) at once when no record of them
        can seal the batch — `add` one by one would seal nothing either; False (nothing added)
        when the batch is not open yet or may fill: the caller then adds them one by one."""
        batch = self.open.get(partition)
        if batch is None or batch.body.records + count >= self.max_records:
            return False
        body = batch.body
        max_bytes = self.limits.max_bytes
        # `add` decides each record on a bound that its flushes make exact: that bound stays
        # within this one (for all the records at once) plus one more compressed_bound constant
        if body.size_bound_with(len(block) + count + 1) + BLOCK_MARGIN_BYTES > max_bytes:
            return False
        body.add_block(block, count)
        batch.budget = max_bytes - body.size_bound_with(0)
        batch.seen_written = body.written_bytes
        if first_ms < batch.first_ms:
            batch.first_ms = first_ms
        if last_ms > batch.last_ms:
            batch.last_ms = last_ms
        return True

    def _add_checked(
        self, partition: tuple[str, ...], record_ms: int, line: bytes, batch: OpenBatch | None, cost: int
    ) -> list[OpenBatch]:
        """The slow path: a new partition, or a batch that may be near its byte limit."""
        sealed: list[OpenBatch] = []
        if batch is not None and not self._fits(batch, len(line)):
            sealed.append(self._close(partition, "bytes"))
            batch = None
        if batch is None:
            if len(self.open) >= self.limits.max_open_batches:
                oldest = min(self.open.values(), key=lambda b: b.opened_at)
                sealed.append(self._close(oldest.partition, "partitions"))
            batch = OpenBatch(partition, self.open_body(partition), self.clock(), record_ms, record_ms)
            batch.budget = self.limits.max_bytes - batch.body.size_bound_with(0)
            batch.seen_written = batch.body.written_bytes
            self.open[partition] = batch
        body = batch.body
        body.add(line)
        batch.budget -= cost
        if record_ms < batch.first_ms:
            batch.first_ms = record_ms
        elif record_ms > batch.last_ms:
            batch.last_ms = record_ms
        if body.records >= self.max_records:
            sealed.append(self._close(partition, "records"))
        return sealed

    def _fits(self, batch: OpenBatch, line_bytes: int) -> bool:
        """Will the stored object stay within max_bytes with this record? Exact near the limit.

        Also refreshes the batch's byte budget: records are only checked again once their
        (pessimistic) sizes used it up, so the check is not paid per record.
        """
        max_bytes = self.limits.max_bytes
        if batch.body.size_bound_with(line_bytes) > max_bytes:
            batch.body.flush()  # the bound was loose (compressor backlog); measure what is written
            if batch.body.size_bound_with(line_bytes) > max_bytes:
                return False
        batch.budget = max_bytes - batch.body.size_bound_with(0)
        batch.seen_written = batch.body.written_bytes
        return True

    def _close(self, partition: tuple[str, ...], reason: str) -> OpenBatch:
        batch = self.open.pop(partition)
        batch.reason = reason
        return batch

    def due(self) -> list[OpenBatch]:
        """Batches whose first record is older than max_age_secs."""
        now = self.clock()
        max_age = self.limits.max_age_secs
        expired = [p for p, b in self.open.items() if now - b.opened_at >= max_age]
        return [self._close(p, "age") for p in expired]

    def next_due_in(self) -> float | None:
        """Seconds until the next age seal (None when nothing is open)."""
        if not self.open:
            return None
        oldest = min(b.opened_at for b in self.open.values())
        return max(0.0, oldest + self.limits.max_age_secs - self.clock())

    def drain(self, reason: str = "drain") -> list[OpenBatch]:
        """Every open batch, oldest first (end of input, SIGTERM, a full spool)."""
        ordered = sorted(self.open, key=lambda p: self.open[p].opened_at)
        return [self._close(p, reason) for p in ordered]

    def largest(self) -> OpenBatch | None:
        if not self.open:
            return None
        partition = max(self.open, key=lambda p: self.open[p].records)
        return self._close(partition, "spool-full")
