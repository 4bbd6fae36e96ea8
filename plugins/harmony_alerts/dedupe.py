"""Bounded, restart-proof dedupe of alert keys in ~28 bytes per key.

A Python set of 1,000,000 int digests costs ~100 MB; here each key is a 64-bit XXH3 digest in
an open-addressing table held in one `array('Q')` (load ≤ 0.5), plus an insertion-ordered ring
of (digest, seen_at_secs) for oldest-first eviction by count (`max_keys`) and age (`ttl_secs`).
Deletion uses backward-shift, so there are no tombstones and lookups stay short.

Persistence is an append-only log of 12-byte entries (digest, seen_at) written *after* the
alerts carrying those keys were flushed to stdout: a kill -9 can re-emit at most the last batch,
never lose one. The log is rewritten (atomically) from the ring when it grows past twice the live
keys.

Clocks must never make keys expire early: a log entry dated in the future (a corrupted entry, or
one written while the clock was wrong) is read as dated now, and keys are expired once after the
whole log is read, against the current time — not against each entry's own date. While running,
key ages follow `SteadyClock`, which never runs ahead of the monotonic clock.
"""

from __future__ import annotations

import os
import struct
import time
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from xxhash import xxh3_64_intdigest

from harmony_pipes._core.errors import ConfigError
from harmony_pipes._core.state import atomic_write_bytes, disk_error, write_all

LOG_MAGIC = b"HPDEDUP2"  # 2: XXH3 digests (1 held blake2b digests, which cannot be converted)
ENTRY = struct.Struct("<QI")
FUTURE_TOLERANCE_SECS = 300  # an entry dated later than now + this is read as dated now
CLOCK_SLACK_SECS = 120.0  # how far the wall clock may run ahead of the monotonic one


class SteadyClock:
    """Wall-clock seconds for key ages that never go back and never run ahead of the monotonic
    clock by more than `slack_secs`: a clock stepped forward (a wrong NTP answer, a VM resumed
    with a stale clock fixed) must not expire every key at once. `jump_secs` is set the first
    time the wall clock strays further than `slack_secs` (the caller warns once)."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        slack_secs: float = CLOCK_SLACK_SECS,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._anchor_wall = wall()
        self._anchor_mono = monotonic()
        self.slack_secs = slack_secs
        self._last = int(self._anchor_wall)
        self.jump_secs: float | None = None

    def now_secs(self) -> int:
        wall = self._wall()
        expected = self._anchor_wall + (self._monotonic() - self._anchor_mono)
        if self.jump_secs is None and abs(wall - expected) > self.slack_secs:
            self.jump_secs = wall - expected
        now = max(self._last, int(min(wall, expected + self.slack_secs)))
        self._last = now
        return now


def key_digest(key: str) -> int:
    """64-bit XXH3 digest of a dedupe key (stable across runs and machines, ~7x cheaper than
    blake2b here); 0 marks an empty slot, so it is mapped to 1."""
    return xxh3_64_intdigest(key.encode()) or 1


class DigestSet:
    """Insertion-ordered set of 64-bit digests with count and age bounds."""

    def __init__(self, max_keys: int, ttl_secs: float | None = None) -> None:
        self.max_keys = max(1, max_keys)
        self.ttl_secs = ttl_secs
        # the table grows by doubling, so a small run never pays for a million-key table
        self._max_capacity = 1 << max(4, (self.max_keys * 2 - 1).bit_length())
        capacity = min(self._max_capacity, 1 << 18)  # 2 MiB: typical runs never rehash
        self._mask = capacity - 1
        self._table = array("Q", bytes(8 * capacity))
        self._ring_keys = array("Q")
        self._ring_times = array("I")
        self._head = 0
        self._count = 0
        self._expired_at = -1
        self.evicted = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, digest: int) -> bool:
        table = self._table
        mask = self._mask
        slot = digest & mask
        while True:
            found = table[slot]
            if found == digest:
                return True
            if found == 0:
                return False
            slot = (slot + 1) & mask

    def add(self, digest: int, now_secs: int) -> bool:
        """Insert; False when already present. Evicts the oldest keys past the bounds first.

        Keys older than `ttl_secs` are expired *before* the lookup (at most once per second), so
        a key seen again after its TTL is new again, not a duplicate. The hot path (a new key, no
        bound reached) probes the table once; eviction and growth, which move entries, are rare
        and probe again.
        """
        if now_secs != self._expired_at and self.ttl_secs is not None:
            self._expired_at = now_secs
            self.expire(now_secs)
        table = self._table
        mask = self._mask
        slot = digest & mask
        found = table[slot]
        while found:
            if found == digest:
                return False
            slot = (slot + 1) & mask
            found = table[slot]
        if self._count >= self.max_keys:
            self._evict_oldest()
            slot = -1
        elif self._count * 2 >= mask and mask + 1 < self._max_capacity:
            self._grow()
            table, mask = self._table, self._mask
            slot = -1
        if slot < 0:  # entries moved: find the free slot again
            slot = digest & mask
            while table[slot]:
                slot = (slot + 1) & mask
        table[slot] = digest
        self._count += 1
        self._ring_keys.append(digest)
        self._ring_times.append(now_secs & 0xFFFFFFFF)
        return True

    def add_many(self, digests: Iterable[int], now_secs: int) -> list[int]:
        """`add` for a chunk's digests in order (0: none, skipped); returns the indexes of the
        duplicates. The hot path (a new key, no bound reached) is inlined: a helper process
        renders alerts as fast as this process can take them, so this loop is on the critical
        path of the pool (pool.py)."""
        if now_secs != self._expired_at and self.ttl_secs is not None:
            self._expired_at = now_secs
            self.expire(now_secs)
        duplicates: list[int] = []
        table, mask = self._table, self._mask
        # below this count an insert neither evicts nor grows the table
        room = min(self.max_keys, (mask + 1) // 2 if mask + 1 < self._max_capacity else self.max_keys)
        count = self._count
        append_key, append_time = self._ring_keys.append, self._ring_times.append
        stamp = now_secs & 0xFFFFFFFF
        for index, digest in enumerate(digests):
            if not digest:
                continue
            if count >= room:  # the slow path: evict or grow, then go on with the new table
                self._count = count
                if not self.add(digest, now_secs):
                    duplicates.append(index)
                table, mask, count = self._table, self._mask, self._count
                room = min(self.max_keys, (mask + 1) // 2 if mask + 1 < self._max_capacity else self.max_keys)
                continue
            slot = digest & mask
            found = table[slot]
            while found:
                if found == digest:
                    duplicates.append(index)
                    break
                slot = (slot + 1) & mask
                found = table[slot]
            else:
                table[slot] = digest
                count += 1
                append_key(digest)
                append_time(stamp)
        self._count = count
        return duplicates

    def _grow(self) -> None:
        capacity = len(self._table) * 2
        mask = capacity - 1
        table = array("Q", bytes(8 * capacity))
        keys = self._ring_keys
        for i in range(self._head, len(keys)):
            digest = keys[i]
            slot = digest & mask
            while table[slot] != 0:
                slot = (slot + 1) & mask
            table[slot] = digest
        self._table, self._mask = table, mask

    def expire(self, now_secs: int) -> None:
        if self.ttl_secs is None:
            return
        oldest_allowed = now_secs - self.ttl_secs
        times = self._ring_times
        while self._head < len(times) and times[self._head] < oldest_allowed:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        digest = self._ring_keys[self._head]
        self._head += 1
        self._count -= 1
        self.evicted += 1
        self._delete(digest)
        if self._head > 65536 and self._head * 2 > len(self._ring_keys):
            del self._ring_keys[: self._head]
            del self._ring_times[: self._head]
            self._head = 0

    def _delete(self, digest: int) -> None:
        table = self._table
        mask = self._mask
        slot = digest & mask
        while table[slot] != digest:
            if table[slot] == 0:
                return
            slot = (slot + 1) & mask
        # backward-shift deletion keeps every probe chain unbroken
        hole = slot
        slot = (slot + 1) & mask
        while True:
            found = table[slot]
            if found == 0:
                break
            home = found & mask
            if (slot - home) & mask >= (slot - hole) & mask:
                table[hole] = found
                hole = slot
            slot = (slot + 1) & mask
        table[hole] = 0

    def entries(self) -> list[tuple[int, int]]:
        """Live (digest, seen_at_secs) in insertion order."""
        keys = self._ring_keys
        times = self._ring_times
        return [(keys[i], times[i]) for i in range(self._head, len(keys))]


class DedupeLog:
    """Append-only persistence for a `DigestSet`, with atomic compaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.entries_on_disk = 0
        self.future_entries = 0  # entries of the last load dated in the future (read as now)

    def load_into(self, digests: DigestSet, now_secs: int | None = None) -> int:
        """Replay the log (oldest first, applying the count bound), then expire against
        `now_secs`; returns entries read. Entries dated after `now_secs` (+ a tolerance) are
        read as dated `now_secs` and counted in `future_entries`."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        if len(data) < len(LOG_MAGIC) and LOG_MAGIC.startswith(data):
            # created but its header not (fully) written: a crash or a full disk at the first append
            self._truncate(0)
            return 0
        if not data.startswith(LOG_MAGIC):
            if data.startswith(b"HPDEDUP"):
                raise ConfigError(
                    f"dedupe state {self.path} was written by another harmony-alerts version",
                    "move it away (the keys are re-learned; alerts already sent may be sent once more)",
                )
            raise ConfigError(f"dedupe state {self.path} is not a harmony-alerts key log", "move it away")
        body = memoryview(data)[len(LOG_MAGIC) :]
        usable = len(body) - len(body) % ENTRY.size
        if usable != len(body):
            # a torn last entry (kill -9 or a full disk mid-append) is dropped *from the file* too:
            # appended after it, every later entry would be read misaligned, as garbage digests
            self._truncate(len(LOG_MAGIC) + usable)
        count = 0
        future = 0
        latest_allowed = None if now_secs is None else now_secs + FUTURE_TOLERANCE_SECS
        ttl_secs, digests.ttl_secs = digests.ttl_secs, None  # no expiry by an entry's own date
        try:
            for digest, seen_at in ENTRY.iter_unpack(body[:usable]):
                if latest_allowed is not None and seen_at > latest_allowed:
                    seen_at = now_secs
                    future += 1
                digests.add(digest, seen_at)
                count += 1
        finally:
            digests.ttl_secs = ttl_secs
        if now_secs is not None:
            digests.expire(now_secs)
        self.entries_on_disk = count
        self.future_entries = future
        return count

    def append(self, new_entries: list[tuple[int, int]]) -> None:
        if not new_entries:
            return
        pack = ENTRY.pack
        data = b"".join(pack(d, t & 0xFFFFFFFF) for d, t in new_entries)
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                if os.fstat(self._fd).st_size == 0:  # new, or left empty by a crash
                    data = LOG_MAGIC + data
            write_all(self._fd, data)  # a short write is never taken for success
        except OSError as exc:
            raise disk_error(self.path, exc) from exc
        self.entries_on_disk += len(new_entries)

    def _truncate(self, size: int) -> None:
        try:
            os.truncate(self.path, size)
        except OSError as exc:
            raise disk_error(self.path, exc) from exc

    def sync(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise disk_error(self.path, exc) from exc

    def compact(self, digests: DigestSet) -> None:
        """Rewrite the log with only the live keys (atomic: old or new file, never half)."""
        live = digests.entries()
        pack = ENTRY.pack
        self.close()
        atomic_write_bytes(self.path, LOG_MAGIC + b"".join(pack(d, t) for d, t in live))
        self.entries_on_disk = len(live)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


PENDING_MAGIC = b"HPDPEND1"
PENDING_ID_BYTES = 32
PENDING_ENTRY = struct.Struct("<QQI")  # commit number, digest, seen_at


class PendingKeys:
    """Dedupe keys staged for sink commits that are not durable yet (`harmony-pipes chain`).

    At a commit the keys of the alerts it covers are appended here (tagged with the commit's
    number) *before* the sink commits; once the sink says the commit is durable they move to the
    key log. After a crash, `recover` moves the keys of every commit the sink kept and drops the
    rest, so the log holds exactly the keys of the alerts the sink stored.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._sink_id: str | None = None
        self._entries: list[tuple[int, int, int]] = []

    @property
    def empty(self) -> bool:
        return not self._entries

    def recover(self, key_log: DedupeLog, digests: DigestSet, token: Any | None) -> tuple[int, int]:
        """Apply what a crash left staged; returns (keys applied, keys dropped)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0, 0
        header = len(PENDING_MAGIC) + PENDING_ID_BYTES
        entries: list[tuple[int, int, int]] = []
        sink_id = None
        if data.startswith(PENDING_MAGIC) and len(data) >= header:
            sink_id = data[len(PENDING_MAGIC) : header].rstrip(b"\0").decode("ascii", "replace")
            body = memoryview(data)[header:]
            body = body[: len(body) - len(body) % PENDING_ENTRY.size]  # a torn last entry
            entries = list(PENDING_ENTRY.iter_unpack(body))
        keep = token is not None and token.sink_id == sink_id
        applied = [(d, t) for n, d, t in entries if keep and n <= token.number]
        if applied:
            key_log.append(applied)
            for digest, seen_at in applied:
                digests.add(digest, seen_at)
        self._remove()
        return len(applied), len(entries) - len(applied)

    def stage(self, token: Any, keys: list[tuple[int, int]]) -> None:
        number = token.number
        staged = [(number, d, t & 0xFFFFFFFF) for d, t in keys]
        data = b"".join(PENDING_ENTRY.pack(*entry) for entry in staged)
        try:
            if self._fd is None or self._sink_id != token.sink_id:
                self._remove()
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
                self._sink_id = token.sink_id
                ident = (token.sink_id or "").encode("ascii")[:PENDING_ID_BYTES].ljust(PENDING_ID_BYTES, b"\0")
                data = PENDING_MAGIC + ident + data
            write_all(self._fd, data)
            os.fsync(self._fd)  # before the sink's commit, which may reach the disk first otherwise
        except OSError as exc:
            raise disk_error(self.path, exc) from exc
        self._entries.extend(staged)

    def apply_through(self, token: Any, key_log: DedupeLog) -> None:
        """Move the keys of every commit up to `token` into the key log."""
        number = token.number
        ready = [(d, t) for n, d, t in self._entries if n <= number]
        if not ready:
            return
        key_log.append(ready)
        key_log.sync()  # the keys are in the log for good before the staged copy goes
        rest = [entry for entry in self._entries if entry[0] > number]
        self._entries = rest
        if not rest:
            self._remove()
            return
        ident = (self._sink_id or "").encode("ascii")[:PENDING_ID_BYTES].ljust(PENDING_ID_BYTES, b"\0")
        self.close()
        atomic_write_bytes(self.path, PENDING_MAGIC + ident + b"".join(PENDING_ENTRY.pack(*e) for e in rest))

    def _remove(self) -> None:
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise disk_error(self.path, exc) from exc
        self._sink_id = None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
