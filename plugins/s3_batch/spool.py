"""The durable spool: open batch bodies, sealed objects, per-destination delivery state.

Layout of `--spool-dir` (0700, files 0600, locked by the running sink):

    open/<seq>.body      body of an open batch: written after every input chunk, fsynced every
                         --fsync-interval-ms
    open/<seq>.json      its partition and body format (written once, when the batch opens)
    commits.log          one JSON line per commit: {"<seq>": records written to that open body}
    objects/<seq>.json   manifest of a sealed object: keys, sha256, sizes, times — fixed before
                         the first upload attempt, so every retry writes the same key and bytes
    objects/<seq>.body   the sealed body, byte for byte what is uploaded
    objects/<seq>.done.<dest>   marker: <dest> confirmed this object (or set it aside, below)
    quarantine/<seq>.body           an object set aside: byte for byte the sealed body
    quarantine/<seq>.dest-<dest>.json   why <dest> can never take it (a refused key) + manifest
    quarantine/<seq>.damaged.json   why its manifest was unusable (+ the damaged manifest's text)
    control.json         paused destinations (written by `s3-batch pause|resume`)
    destinations.json    names and URLs of the running sink's destinations (for status)

Commits (the gap-free prefix across partitions). Open bodies write their slices to disk on
their own schedule, so after a kill -9 one partition's body can hold records newer than records
another partition still had in memory. What counts is therefore only the *commit*, made after
every input chunk (before more input is read): every open body with new records is flushed
through its compressor into its file (page cache, no fsync), then one line with each body's
record count is appended to `commits.log` (no fsync). Records are accepted when committed: they
survive a kill -9 of the process. The *sync*, every `--fsync-interval-ms`, fsyncs the bodies
and then the log, so a power loss takes at most what was committed since the last sync. A
commit also runs before any seal that could overtake another partition's records (one that
leaves other open bodies with uncommitted records), followed by a sync, so a sealed object never
holds records newer than a record a crash could still lose.

Recovery keeps exactly the committed records of each open body: whatever a kill -9 leaves, the
records kept are all records read up to the last commit or seal — a gap-free prefix of the
input. After a power loss the page cache may have reached the disk in any order, so the log
can name more records than a body still holds: recovery then keeps the state of the newest log
line that every open body still covers (the bodies and the log are fsynced in that order at
each sync, so that state is at least the last sync's). (A spool without `commits.log`, from an
older version, recovers every complete record, as it did then.)

Sealing order: body fsynced → (commit + sync) → manifest written atomically → body renamed into
objects/. An object's files are deleted (body, manifest, markers) only when every destination
confirmed. After a crash, `recover()` finishes interrupted seals and turns every open body into
a sealed object holding its committed records.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from harmony_pipes._core.errors import PipesError
from harmony_pipes._core.state import StateDir, atomic_write_bytes, ensure_private_dir, fsync_dir, write_all

from .batcher import OpenBatch
from .body import BodySpec, BodyWriter, read_records
from .control import CONTROL_FILE, DESTINATIONS_FILE, FORMAT_VERSION, read_control
from .keys import KeyTemplate, TimeExtractor
from .manifest import DAMAGED_SUFFIX, QUARANTINE_DIR, manifest_problem, quarantine_name

OWNER = "s3-batch"  # the command a spool directory belongs to (_core.state.claim_dir)
COMMIT_LOG = "commits.log"
COMMIT_NUMBER_KEY = "@n"  # in a commit line: the number of a commit point (grows across restarts)
POSITIONS_KEY = "@p"  # in a commit line: where each upstream stage stood (harmony-pipes chain)
SPOOL_ID_FILE = "spool-id"
COMMIT_LOG_MAX_BYTES = 1 << 20  # rewritten (only the open bodies' counts) beyond this size
# While bodies are compressed on a worker thread, the GIL is handed over this often (Python's
# default is 5 ms): each time the worker comes back from zlib-ng / ISA-L / zstd it needs the
# GIL for a moment, and the main thread, busy parsing, would otherwise keep it for up to 5 ms
# per hand-over — which starves the worker and serializes the two threads.
GIL_SWITCH_SECS = 0.0002


class SpoolBody(BodyWriter):
    """A body file inside the spool, named by its sequence id."""

    def __init__(self, path: Path, spec: BodySpec, seq: str, executor: Executor | None = None) -> None:
        super().__init__(path, spec, executor)
        self.seq = seq
        self._entry_durable = False
        self.committed_records = 0  # records covered by a commit (or by the seal): accepted

    def fsync(self) -> int:
        """fsync the records; the first time also the directory entry (power loss safety)."""
        newly = super().fsync()
        if newly and not self._entry_durable:
            fsync_dir(Path(self.path).parent)
            self._entry_durable = True
        return newly


@dataclass
class Entry:
    """One sealed object waiting for (some of) its destinations."""

    seq: str
    manifest: dict[str, Any]
    body_path: Path
    done: set[str] = field(default_factory=set)
    in_flight: set[str] = field(default_factory=set)

    @property
    def bytes(self) -> int:
        return int(self.manifest["bytes"])

    @property
    def sealed_ms(self) -> int:
        return int(self.manifest["sealed_ms"])


class SeqClock:
    """Sequence ids that sort by creation, unique even within one nanosecond tick."""

    def __init__(self) -> None:
        self._last = 0

    def advance_past(self, seq: str) -> None:
        """Never hand out an id at or below one already on disk (the wall clock may step back)."""
        self._last = max(self._last, int(seq))

    def next(self) -> str:
        value = max(time.time_ns(), self._last + 1)
        self._last = value
        return f"{value:020d}"


class Spool:
    """The sink's view of the spool directory; thread-safe for the delivery workers."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        spec: BodySpec,
        template: KeyTemplate,
        destinations: dict[str, str],
        prefixes: dict[str, str],
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        compress_in_thread: bool = True,
    ) -> None:
        self.state = StateDir(path, owner=OWNER)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="compress") if compress_in_thread else None
        self._switch_interval_secs = sys.getswitchinterval()
        if compress_in_thread:
            sys.setswitchinterval(min(self._switch_interval_secs, GIL_SWITCH_SECS))
        self.path = self.state.path
        self.open_dir = ensure_private_dir(self.path / "open")
        self.objects_dir = ensure_private_dir(self.path / "objects")
        self.spec = spec
        self.template = template
        self.destinations = destinations  # name -> URL
        self.prefixes = prefixes  # name -> key prefix
        self.wall_ms = wall_ms
        self.seq = SeqClock()
        self.entries: dict[str, Entry] = {}
        self.cond = threading.Condition()
        self.sealed_bytes = 0
        self.open_bodies: dict[str, SpoolBody] = {}
        self.commit_path = self.path / COMMIT_LOG
        self._commit_fd: int | None = None
        self._commit_bytes = 0
        self._log_dirty = False  # lines written since the last fsync of the log
        self.accepted = 0  # records committed or sealed by this run (what `records_accepted` reports)
        self._control_mtime_ns = -1
        self._control: dict[str, Any] = {"paused": []}
        self.spool_id = self._read_spool_id()
        self.commit_number = 0  # the newest commit point written (page cache)
        self.synced_number = 0  # the newest commit point fsynced (survives a power loss)
        self._positions: dict[str, Any] | None = None  # upstream positions of the newest commit point
        self.resume: tuple[int, dict[str, Any]] | None = None  # what recovery found: (number, positions)
        self.damaged: list[tuple[str, str]] = []  # (seq, why) of objects set aside by recover()
        # only `status` / `pause` read it (for the names): a full disk must not stop a start that
        # would deliver the backlog and so free the disk
        self.destinations_error: str | None = None
        try:
            self.state.write_json(DESTINATIONS_FILE, {"destinations": destinations, "pid": os.getpid()}, FORMAT_VERSION)
        except PipesError as exc:
            self.destinations_error = exc.one_line()

    def _read_spool_id(self) -> str:
        """A random name for this spool, kept for its life: the positions a chain's commit
        points record belong to it (a new spool has none)."""
        path = self.path / SPOOL_ID_FILE
        try:
            found = path.read_text().strip()
        except FileNotFoundError:
            found = ""
        if not found:
            found = os.urandom(8).hex()
            try:
                atomic_write_bytes(path, found.encode())
            except PipesError:  # a full disk must not stop the start that would free it
                pass  # (a chain then resumes its transforms from their own state, never from ours)
        return found

    # -- open batches -------------------------------------------------------------------------

    def new_body(self, partition: tuple[str, ...]) -> SpoolBody:
        if self._commit_fd is None:
            self._open_commit_log()  # before any body: a body without a log is an old version's
        seq = self.seq.next()
        meta = {
            "partition": list(partition),
            "format": self.spec.format,
            "compression": self.spec.compression,
            "level": self.spec.level,
            "opened_ms": self.wall_ms(),
        }
        atomic_write_bytes(self.open_dir / f"{seq}.json", orjson.dumps(meta))
        body = SpoolBody(self.open_dir / f"{seq}.body", self.spec, seq, self.executor)
        self.open_bodies[seq] = body
        return body

    def commit(self, sealing: SpoolBody | None = None) -> int:
        """Write every open body's new records to its file, then log the counts (no fsync).

        Returns the newly accepted records. Runs after every input chunk: what it accepts
        survives a kill -9 (page cache); `sync()` makes it survive a power loss. `sealing` is a
        finished body about to be sealed: it is written into the commit only if some other body
        had something to commit (else its seal alone makes its records durable, and they are
        the newest records anyway).
        """
        changed = [b for b in self.open_bodies.values() if b is not sealing and b.records != b.committed_records]
        if not changed:
            return 0
        for body in changed:  # start every flush before waiting for any: the worker goes on meanwhile
            body.begin_flush()
        for body in changed:
            body.end_flush()
        if sealing is not None:
            changed.append(sealing)
        self._append_commit({body.seq: body.flushed_records for body in changed})
        newly = 0
        for body in changed:
            newly += body.flushed_records - body.committed_records
            body.committed_records = body.flushed_records
        self.accepted += newly
        return newly

    def commit_point(self, number: int, positions: dict[str, Any] | None = None) -> int:
        """A numbered commit: every open body's new records written, then one log line with their
        counts, the number, and the upstream `positions` it covers (no fsync; `sync` follows).

        In `harmony-pipes chain` this is where the sink's state and every upstream stage's
        position become one: recovery keeps exactly the records of a commit line and reports the
        positions recorded with it (`resume`). Returns the newly accepted records.
        """
        changed = [b for b in self.open_bodies.values() if b.records != b.committed_records]
        for body in changed:
            body.begin_flush()
        for body in changed:
            body.end_flush()
        line: dict[str, Any] = {body.seq: body.flushed_records for body in changed}
        line[COMMIT_NUMBER_KEY] = number
        if positions:
            line[POSITIONS_KEY] = positions
            self._positions = positions
        self._append_commit(line)
        newly = 0
        for body in changed:
            newly += body.flushed_records - body.committed_records
            body.committed_records = body.flushed_records
        self.accepted += newly
        self.commit_number = number
        return newly

    def sync(self) -> None:
        """fsync the open bodies, then the commit log: what is committed survives a power loss.

        Bodies first: a log line on disk never names records whose bytes could still be lost.
        The log is compacted here (after the bodies' fsync) when it has grown too long.
        """
        for body in self.open_bodies.values():
            body.fsync()  # no syscall for a body without newly flushed records
        if self._commit_fd is not None and self._log_dirty:
            if self._commit_bytes >= COMMIT_LOG_MAX_BYTES:
                self._rewrite_commit_log()  # written and fsynced atomically
            else:
                os.fsync(self._commit_fd)
            self._log_dirty = False
        self.synced_number = self.commit_number

    def _meta_line(self) -> dict[str, Any]:
        """The commit number and positions a rewritten or fresh log must carry on."""
        meta: dict[str, Any] = {}
        if self.commit_number:
            meta[COMMIT_NUMBER_KEY] = self.commit_number
        if self._positions:
            meta[POSITIONS_KEY] = self._positions
        return meta

    def _open_commit_log(self) -> None:
        fd = os.open(self.commit_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fsync_dir(self.path)
        self._commit_fd = fd
        self._commit_bytes = os.fstat(fd).st_size

    def _append_commit(self, counts: dict[str, Any]) -> None:
        if self._commit_fd is None:
            self._open_commit_log()
        line = orjson.dumps(counts) + b"\n"
        write_all(self._commit_fd, line)  # type: ignore[arg-type]
        self._commit_bytes += len(line)
        self._log_dirty = True

    def _rewrite_commit_log(self) -> None:
        """Replace the log by one line: the committed counts of the bodies still open."""
        state: dict[str, Any] = {
            seq: body.committed_records for seq, body in self.open_bodies.items() if body.committed_records
        }
        state.update(self._meta_line())
        atomic_write_bytes(self.commit_path, orjson.dumps(state) + b"\n" if state else b"")
        os.close(self._commit_fd)  # type: ignore[arg-type]
        self._commit_fd = None
        self._open_commit_log()

    def read_commit_entries(self) -> list[tuple[dict[str, int], dict[str, Any]]] | None:
        """The commit log's lines, oldest first, each as (record counts per body, commit point
        meta: `@n`, `@p`); None for a spool without a commit log."""
        try:
            data = self.commit_path.read_bytes()
        except FileNotFoundError:
            return None
        out: list[tuple[dict[str, int], dict[str, Any]]] = []
        for line in data.split(b"\n")[:-1]:  # the piece after the last newline is a torn line
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                counts = {str(k): int(v) for k, v in doc.items() if not str(k).startswith("@")}
                meta = {k: v for k, v in doc.items() if str(k).startswith("@")}
                out.append((counts, meta))
        return out

    def read_commit_lines(self) -> list[dict[str, int]] | None:
        """The commit log's record counts per line, oldest first; None without a commit log."""
        entries = self.read_commit_entries()
        return None if entries is None else [counts for counts, _ in entries]

    def read_commits(self) -> dict[str, int] | None:
        """Committed record count per open body (the log's last state); None without a log."""
        lines = self.read_commit_lines()
        if lines is None:
            return None
        counts: dict[str, int] = {}
        for line in lines:
            counts.update(line)
        return counts

    def open_bytes(self) -> int:
        return sum(body.written_bytes + body._slice_bytes for body in self.open_bodies.values())

    def used_bytes(self) -> int:
        return self.sealed_bytes + self.open_bytes()

    # -- sealing ------------------------------------------------------------------------------

    def seal(self, batch: OpenBatch) -> Entry:
        """Fix the object's bytes and keys on disk, then make it visible to the deliverers."""
        body: SpoolBody = batch.body  # type: ignore[assignment]
        stored_bytes, sha256_hex = body.finish()
        # other partitions' records read before this object's newest ones must not be left
        # uncommitted (or unsynced) once it is sealed: a crash would keep this object and lose
        # those (a gap)
        self.commit(sealing=body)
        if any(b is not body and b.synced_records != b.committed_records for b in self.open_bodies.values()):
            self.sync()
        self.open_bodies.pop(body.seq, None)
        self.accepted += body.records - body.committed_records
        body.committed_records = body.records
        return self._seal_file(
            body.seq,
            body.spec,
            batch.partition,
            batch.first_ms,
            batch.last_ms,
            body.records,
            stored_bytes,
            body.raw_bytes,
            sha256_hex,
            batch.reason,
        )

    def _seal_file(
        self,
        seq: str,
        spec: BodySpec,
        partition: tuple[str, ...],
        first_ms: int,
        last_ms: int,
        records: int,
        stored_bytes: int,
        raw_bytes: int,
        sha256_hex: str,
        reason: str,
    ) -> Entry:
        sealed_ms = self.wall_ms()
        field_values = list(partition[: len(self.template.field_paths)])
        render_inputs = {
            "template": self.template.template,
            "first_ms": first_ms,
            "last_ms": last_ms,
            "sealed_ms": sealed_ms,
            "sha256": sha256_hex,
            "ext": spec.extension,
            "field_values": field_values,
        }
        keys = {name: render_key(render_inputs, prefix) for name, prefix in self.prefixes.items()}
        manifest = {
            "format_version": FORMAT_VERSION,
            "seq": seq,
            "records": records,
            "bytes": stored_bytes,
            "raw_bytes": raw_bytes,
            "format": spec.format,
            "compression": spec.compression,
            "content_type": spec.content_type,
            "content_encoding": spec.content_encoding,
            "partition": list(partition),
            "reason": reason,
            "keys": keys,
            **render_inputs,
        }
        atomic_write_bytes(self.objects_dir / f"{seq}.json", orjson.dumps(manifest))
        final = self.objects_dir / f"{seq}.body"
        os.replace(self.open_dir / f"{seq}.body", final)
        with contextlib.suppress(FileNotFoundError):
            (self.open_dir / f"{seq}.json").unlink()
        fsync_dir(self.objects_dir)
        fsync_dir(self.open_dir)
        return self._register(Entry(seq, manifest, final))

    def _register(self, entry: Entry) -> Entry:
        with self.cond:
            self.entries[entry.seq] = entry
            self.sealed_bytes += entry.bytes
            self.cond.notify_all()
        return entry

    # -- recovery -----------------------------------------------------------------------------

    def recover(self, time_of: TimeExtractor) -> tuple[int, int]:
        """Load sealed objects and seal the open bodies a crash left; returns (objects, records)."""
        recovered_records = 0
        names = [p.name.split(".", 1)[0] for p in [*self.objects_dir.iterdir(), *self.open_dir.iterdir()]]
        self.seq.advance_past(max((n for n in names if n.isascii() and n.isdigit()), default="0"))
        for manifest_path in sorted(self.objects_dir.glob("*.json")):
            seq = manifest_path.stem
            if not (seq.isascii() and seq.isdigit()):
                continue  # `<seq>.done.json`: the marker of a destination named "json"
            try:
                manifest = orjson.loads(manifest_path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                manifest = None
            problem = manifest_problem(manifest) if manifest is not None else "the manifest is not valid JSON"
            if problem is None and manifest["seq"] != seq:
                problem = f"the manifest names object {manifest['seq']!r}, not {seq!r}"
            if problem is not None:  # torn writes cannot happen (atomic): damage or a foreign file
                self._set_aside_damaged(seq, manifest_path, problem)
                continue
            body = self.objects_dir / f"{seq}.body"
            if not body.exists():
                pending = self.open_dir / f"{seq}.body"
                if pending.exists():  # crash between manifest and rename: finish the seal
                    os.replace(pending, body)
                    with contextlib.suppress(FileNotFoundError):
                        (self.open_dir / f"{seq}.json").unlink()
                else:  # crash while deleting a fully delivered object
                    self._delete_files(seq)
                    continue
            done = {p.name.split(".done.", 1)[1] for p in self.objects_dir.glob(f"{seq}.done.*")}
            entry = Entry(seq, manifest, body, done)
            for name, prefix in self.prefixes.items():  # a destination added since the seal
                entry.manifest["keys"].setdefault(name, render_key(manifest, prefix))
            self._register(entry)
            self._free_if_done(entry)
        for orphan in sorted(self.objects_dir.glob("*.body")):  # a body never outlives its manifest
            if orphan.stem not in self.entries:
                self._set_aside_damaged(orphan.stem, None, "the object's manifest is missing")
        objects = len(self.entries)
        limits = self._recovery_limits()
        for body_path in sorted(self.open_dir.glob("*.body")):
            limit = None if limits is None else limits.get(body_path.stem, 0)
            recovered_records += self._recover_open(body_path, time_of, limit)
        for stray in self.open_dir.glob("*.json"):
            if not (self.open_dir / f"{stray.stem}.body").exists():
                stray.unlink()
        for tmp in [
            *self.open_dir.glob(".*"),
            *self.objects_dir.glob(".*"),
            *self.path.glob(f".{COMMIT_LOG}.*.tmp"),
        ]:
            tmp.unlink()
        # every open body is sealed now: start this run's commit log with only the commit point
        # the kept records belong to (its number and positions carry on)
        if self._commit_fd is not None:
            os.close(self._commit_fd)
            self._commit_fd = None
        meta = self._meta_line()
        atomic_write_bytes(self.commit_path, orjson.dumps(meta) + b"\n" if meta else b"")
        self.synced_number = self.commit_number
        if self._positions:
            self.resume = (self.commit_number, self._positions)
        self._open_commit_log()
        for marker in self.objects_dir.glob("*.done.*"):  # a crash while deleting left these
            if marker.name.split(".done.", 1)[0] not in self.entries:
                marker.unlink()
        return len(self.entries) - objects, recovered_records

    def _recovery_limits(self) -> dict[str, int] | None:
        """Records to keep per open body: the newest committed state every open body covers.

        After a kill -9 that is the log's last state (the page cache holds every byte written).
        After a power loss a body may hold fewer records than the log names (the log reached the
        disk, some body bytes did not): keeping each body's complete records would leave a gap,
        so the state of the newest line that all bodies cover is kept. An open body's
        `open/<seq>.json` is fsynced when it opens; a seq without it was sealed since.
        """
        entries = self.read_commit_entries()
        if entries is None:
            return None
        final: dict[str, int] = {}
        for line, _ in entries:
            final.update(line)
        open_seqs = {p.stem for p in self.open_dir.glob("*.json")} | {p.stem for p in self.open_dir.glob("*.body")}
        have = {seq: self._complete_records(seq, final[seq]) for seq in open_seqs if final.get(seq)}
        used = entries
        if not all(have[seq] >= final[seq] for seq in have):
            final = {}
            for n, (line, _) in enumerate(entries):
                if any(count > have.get(seq, 0) for seq, count in line.items() if seq in open_seqs):
                    used = entries[:n]
                    break
                final.update(line)
        for _, meta in used:  # the commit point the kept records belong to
            if COMMIT_NUMBER_KEY in meta:
                self.commit_number = int(meta[COMMIT_NUMBER_KEY])
            if POSITIONS_KEY in meta:
                self._positions = meta[POSITIONS_KEY]
        return final

    def _body_spec(self, seq: str) -> tuple[BodySpec, dict[str, Any]]:
        try:
            meta = orjson.loads((self.open_dir / f"{seq}.json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            meta = {
                "partition": [],
                "format": self.spec.format,
                "compression": self.spec.compression,
                "level": self.spec.level,
            }
        return BodySpec(meta["format"], meta["compression"], meta.get("level")), meta

    def _complete_records(self, seq: str, limit: int) -> int:
        """How many of an open body's first `limit` records are complete (0 without a body)."""
        path = self.open_dir / f"{seq}.body"
        if not path.exists():
            return 0
        spec, _meta = self._body_spec(seq)
        count = 0
        for line in read_records(path, spec):
            if count >= limit:
                break
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                break  # as _recover_open: stop at the first doubt
            count += 1
        return count

    def _recover_open(self, body_path: Path, time_of: TimeExtractor, limit: int | None = None) -> int:
        """Seal an open body a crash left with its first `limit` (committed) records, or all."""
        seq = body_path.stem
        spec, meta = self._body_spec(seq)
        arrival_ms = int(meta.get("opened_ms") or body_path.stat().st_mtime * 1000)
        tmp = self.open_dir / f".{seq}.rewrite"
        writer = BodyWriter(tmp, spec)
        first_ms = last_ms = None
        for line in read_records(body_path, spec):
            if limit is not None and writer.records >= limit:
                break  # written but never committed: not accepted, and maybe newer than a lost record
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                break  # cannot happen for records we wrote; stop at the first doubt
            record_ms = time_of(record, arrival_ms) if isinstance(record, dict) else arrival_ms
            first_ms = record_ms if first_ms is None else min(first_ms, record_ms)
            last_ms = record_ms if last_ms is None else max(last_ms, record_ms)
            writer.add(line)
        if writer.records == 0:
            writer.abort()
            for path in (tmp, body_path, self.open_dir / f"{seq}.json"):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            return 0
        stored_bytes, sha256_hex = writer.finish()
        os.replace(tmp, body_path)
        self._seal_file(
            seq,
            spec,
            tuple(meta.get("partition") or ()),
            first_ms or arrival_ms,
            last_ms or arrival_ms,
            writer.records,
            stored_bytes,
            writer.raw_bytes,
            sha256_hex,
            "recovered",
        )
        return writer.records

    # -- quarantine ---------------------------------------------------------------------------

    def quarantine_dir(self) -> Path:
        return ensure_private_dir(self.path / QUARANTINE_DIR)

    def _keep_body(self, body_path: Path, seq: str) -> None:
        """Put the body into quarantine/ (a hard link: sealed bodies never change; else a copy)."""
        target = self.quarantine_dir() / f"{seq}.body"
        if target.exists():
            return
        try:
            os.link(body_path, target)
        except OSError:
            shutil.copyfile(body_path, target)
            os.chmod(target, 0o600)
        fsync_dir(target.parent)

    def quarantine(self, entry: Entry, dest: str, reason: str) -> None:
        """Set an object aside for `dest`, which can never take it (a refused key).

        The body and the reason are kept in quarantine/, then `dest` counts the object as done,
        so the objects behind it flow and the spool frees it once the others confirmed.
        """
        self._keep_body(entry.body_path, entry.seq)
        doc = {
            "destination": dest,
            "url": self.destinations.get(dest),
            "key": entry.manifest["keys"].get(dest),
            "reason": reason,
            "quarantined_ms": self.wall_ms(),
            "manifest": entry.manifest,
        }
        atomic_write_bytes(self.quarantine_dir() / quarantine_name(entry.seq, dest), orjson.dumps(doc))
        self.mark_done(entry, dest)

    def _set_aside_damaged(self, seq: str, manifest_path: Path | None, problem: str) -> None:
        """An object whose manifest is unusable: keep its body and the manifest's text, stop
        tracking it (its key and bytes can no longer be trusted)."""
        body = self.objects_dir / f"{seq}.body"
        if not body.exists():
            body = self.open_dir / f"{seq}.body"  # crash between the manifest and the rename
        text = b""
        if manifest_path is not None:
            with contextlib.suppress(OSError):
                text = manifest_path.read_bytes()[:65536]
        if body.exists():
            self._keep_body(body, seq)
        doc = {
            "seq": seq,
            "reason": problem,
            "body": f"{seq}.body" if body.exists() else None,
            "manifest_text": text.decode("utf-8", "replace"),
            "quarantined_ms": self.wall_ms(),
        }
        atomic_write_bytes(self.quarantine_dir() / f"{seq}{DAMAGED_SUFFIX}", orjson.dumps(doc))
        self.damaged.append((seq, problem))
        for path in (body, manifest_path, *self.objects_dir.glob(f"{seq}.done.*")):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    # -- delivery -----------------------------------------------------------------------------

    def next_for(self, dest: str) -> Entry | None:
        """The oldest object this destination has not confirmed (objects are never skipped)."""
        with self.cond:
            for entry in self.entries.values():  # dict keeps insertion (= seal) order
                if dest not in entry.done:
                    return entry
        return None

    def wait(self, timeout_secs: float) -> None:
        with self.cond:
            self.cond.wait(timeout_secs)

    def mark_done(self, entry: Entry, dest: str) -> None:
        marker = self.objects_dir / f"{entry.seq}.done.{dest}"
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        with self.cond:
            entry.done.add(dest)
            self._free_if_done(entry)
            self.cond.notify_all()

    def _free_if_done(self, entry: Entry) -> None:
        if not all(name in entry.done for name in self.destinations):
            return
        with self.cond:
            if self.entries.pop(entry.seq, None) is not None:
                self.sealed_bytes -= entry.bytes
        self._delete_files(entry.seq)

    def _delete_files(self, seq: str) -> None:
        """Body first, then manifest, then markers: a crash in between never re-sends."""
        for path in [
            self.objects_dir / f"{seq}.body",
            self.objects_dir / f"{seq}.json",
            *self.objects_dir.glob(f"{seq}.done.*"),
        ]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def backlog(self, dest: str) -> tuple[int, int, int | None]:
        """(objects, bytes, oldest sealed_ms) not yet confirmed by `dest`."""
        with self.cond:
            pending = [e for e in self.entries.values() if dest not in e.done]
        oldest = min((e.sealed_ms for e in pending), default=None)
        return len(pending), sum(e.bytes for e in pending), oldest

    def control(self) -> dict[str, Any]:
        """control.json, re-read only when it changed (cheap enough to call every loop)."""
        try:
            mtime_ns = (self.path / CONTROL_FILE).stat().st_mtime_ns
        except FileNotFoundError:
            mtime_ns = 0
        if mtime_ns != self._control_mtime_ns:
            self._control_mtime_ns = mtime_ns
            self._control = read_control(self.path) if mtime_ns else {"paused": []}
        return self._control

    def close(self) -> None:
        for body in list(self.open_bodies.values()):
            body.abort()
        if self._commit_fd is not None:
            os.close(self._commit_fd)
            self._commit_fd = None
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            sys.setswitchinterval(self._switch_interval_secs)
        self.state.close()


def render_key(inputs: dict[str, Any], prefix: str) -> str:
    """A destination's key from a manifest's stored render inputs (deterministic)."""
    template = KeyTemplate.parse(inputs["template"])
    return template.render(
        prefix=prefix,
        first_ms=inputs["first_ms"],
        last_ms=inputs["last_ms"],
        written_ms=inputs["sealed_ms"],
        sha256_hex=inputs["sha256"],
        ext=inputs["ext"],
        field_values=inputs.get("field_values", ()),
    )
