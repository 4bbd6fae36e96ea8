"""A second core for a standalone harmony-alerts: helper processes render chunks of input.

Why: per event harmony-alerts parses the event (as any NDJSON tool must), then builds, formats
and serializes an alert about twice the event's size; on a corpus that is nearly all alerts that
is ~2.5x the CPU of the orjson floor (one loads, one dumps), most of it in C already. Another
process is the one way left to keep up with the floor there (issue #14).

How: `PooledStdin` is stdin as the head of `stdin → harmony-alerts → stdout`. It reads chunks as
`StdinSource` does, but unsplit (a piece is split into lines only by the process that renders
it), cuts them into pieces of about `PIECE_BYTES`, and hands each to a helper with
a free slot (`Helper`: a fresh interpreter running helper.py, which imports only rendering — a
fork would double the parent's memory in the pair's peak; for a large file on stdin, started
before this process imports its command, spawn.py), or renders it itself when every slot
is taken or the helper is still starting up — so this process works too, never waits for the
helper's ~0.1 s of imports, and the split follows the speed of each. Pieces and
results travel through shared memory (memfd slots, each an input and an output area); the pipes
carry a few bytes per piece: copying megabytes through pipes cost more system time than the
rendering saved (the first prototype of this ran at 0.46x the floor).

This process takes the results strictly in input order and does everything that has state:
dedupe, counters, bad records, stdout and the key log. So the output, the stats line, the dead
letters and the saved keys are those of the one-process path, byte for byte. A helper that dies
(kill -9, out of memory) costs nothing: its pieces are rendered here, and the run goes on.

In `harmony-pipes chain`, between a source and a sink, `PooledAlerts` does the same with the
events the source hands on: pieces of the source's bytes go to the helper, and the rendered
alerts go to the sink as blocks of lines (`emit_lines`), held at most until the next commit point
(`settle`). Not used: under `--strict` (the first bad record must stop everything after it), with
`--workers 0`, in a chain that reads stdin or writes stdout, and until a chunk of at least
`POOL_MIN_LINES` lines or `POOL_MIN_BYTES` arrives (an empty or trickling input never starts a
helper).
"""

from __future__ import annotations

import os
import subprocess
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from harmony_pipes._core.errors import BadInputError, OutputClosed
from harmony_pipes._core.ndjson import OversizedLine
from harmony_pipes._core.options import Runtime, StreamConfig
from harmony_pipes._core.processor import Emit, StageFailed
from harmony_pipes._core.stdio import STDIN_PIPE_BYTES, StdinSource, grow_pipe

from .chunks import Chunk, Render, render_chunk
from .config import AlertsConfig
from .render import make_render
from .run import AlertsProcessor
from .spawn import (
    FAILED,
    IN_BYTES,
    POOL_MIN_BYTES,
    READY,
    RESULT,
    SLOTS_PER_HELPER,
    TASK,
    TOO_BIG,
    HelperProcess,
    available_cpus,
    discard_early,
    read_exact,
    take_early,
)

POOL_MIN_LINES = 64  # a piece holds at least this many lines
PIECE_BYTES = 256 << 10  # input chunks are cut into pieces of about this size (one line at least)
# Pieces this process may render ahead of the oldest one a helper still holds (output is in input
# order), while they hold at most RENDER_AHEAD_BYTES (input and alerts). With 2 pieces it waited
# for a slow helper piece 13 % of its time (py-spy) and the pair used 1.70-1.81 CPUs; with 7 it
# used 1.85-1.90. Bounded in bytes too: a piece of tiny events renders into more than a piece of
# big ones, and 7 such pieces put the 1M-dedupe-keys run at 98-99 MB peak (90-91 with 2).
RENDER_AHEAD_PIECES = 7
RENDER_AHEAD_BYTES = 3 << 20
Apply = Callable[[Any, Chunk], None]
"""`apply(tag, chunk)`: what the owner of a `RenderPool` does with each rendered piece, in order."""


class HelperFailed(RuntimeError):
    """A helper process died or could not render a piece."""


def default_workers() -> int:
    """One helper when this process may use two or more CPUs (affinity and CPU quota), else none:
    the pair costs 1.1-1.2x the CPU of one process, a loss where there is no second CPU."""
    return 1 if available_cpus() >= 2 else 0


class Helper(HelperProcess):
    """One helper process (spawn.py, helper.py) as the pool drives it: its free slots and the
    pieces it holds, in order."""

    def __init__(self, spec: dict[str, Any], started: HelperProcess | None = None) -> None:
        if started is None:
            super().__init__()
        else:  # one spawn.start_early started: its pipes, slots and process are ours now
            vars(self).update(vars(started))
        try:
            self.configure(orjson.dumps(spec))  # a few hundred bytes into an empty pipe: never blocks
        except OSError:  # it is gone already (an early one killed meanwhile): reaped, not leaked
            self.shut(kill=True)
            raise
        self.outputs = [memoryview(slot)[IN_BYTES:] for slot in self.slots]
        self.free_slots = list(range(SLOTS_PER_HELPER))
        self.in_flight: deque[int] = deque()  # slots, in the order the helper answers them
        self.alive = True
        self.up = False  # it said READY: its interpreter and imports are done (~0.1 s after the spawn)

    def is_up(self) -> bool:
        """Whether it has started up, found out without waiting: until then this process renders
        every piece itself rather than queue one behind a helper still importing."""
        if not self.up and self.ready():
            self._read_ready()
        return self.up

    def _read_ready(self) -> None:
        head = read_exact(self.result_fd, RESULT.size)
        if head is None or RESULT.unpack(head)[0] != READY:
            raise HelperFailed(f"harmony-alerts helper process {self.pid} ended while starting up")
        self.up = True

    def send(self, data: bytes, now_ms: int) -> None:
        slot = self.free_slots.pop()
        self.slots[slot][: len(data)] = data
        os.write(self.task_fd, TASK.pack(slot, len(data), now_ms))  # a few bytes: never blocks
        self.in_flight.append(slot)

    def receive(self) -> Chunk | None:
        """The oldest piece in flight, rendered; None when it was too big for its slot. Its slot
        is free again: the chunk (a view of the slot) must be written out before the next `send`."""
        slot = self.in_flight.popleft()
        self.free_slots.append(slot)
        if not self.up:
            self._read_ready()
        head = read_exact(self.result_fd, RESULT.size)
        if head is None:
            raise HelperFailed(f"harmony-alerts helper process {self.pid} ended unexpectedly")
        status, *counts = RESULT.unpack(head)
        if status == TOO_BIG:
            return None
        if status == FAILED:
            raise HelperFailed(f"harmony-alerts helper process {self.pid} could not render a piece")
        return Chunk.unpack_from(self.outputs[slot], *counts)

    def how_it_ended(self) -> str:
        try:
            code = self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:  # alive, but it failed a piece
            return ""
        return f" (killed by signal {-code})" if code < 0 else f" (exit code {code})"

    def stop(self) -> None:
        """Close its pipes and reap it (`shut`); one that never started up holds no work and is
        killed (a short input does not wait for its imports)."""
        self.alive = False
        for view in self.outputs:
            view.release()
        self.shut(kill=not self.up and not self.in_flight)


class RenderPool:
    """Pieces of event lines rendered in helper processes (or here, when every slot is taken),
    handed back strictly in the order they were given (module doc). `apply(tag, chunk)` gets each
    result; an error rendering here is a failure of the `alerts` stage."""

    def __init__(self, alerts: AlertsProcessor, workers: int) -> None:
        self.runtime = alerts.runtime
        self.alerts = alerts
        self.workers = workers
        self.helpers: list[Helper] | None = None  # started with the first piece
        self.render: Render | None = None
        # pieces in input order: (the caller's tag, the piece's bytes, the Helper rendering it or
        # the Chunk, and for a Chunk rendered here the bytes it holds: its input and its alerts)
        self.queue: deque[tuple[Any, bytes | memoryview, Helper | Chunk, int]] = deque()
        self.held_bytes = 0  # of the pieces rendered here, not yet applied

    @property
    def started(self) -> bool:
        return self.helpers is not None

    def start(self) -> None:
        spec = self.alerts.render_spec()
        helpers: list[Helper] = []
        try:
            for _ in range(self.workers):
                helpers.append(self._helper(spec))
        except (OSError, subprocess.SubprocessError) as exc:
            self.runtime.log.warning(f"cannot start a helper process ({exc}); {len(helpers)} of {self.workers} run")
        self.runtime.stats.extra["helper_processes"] = len(helpers)
        self.helpers = helpers

    @staticmethod
    def _helper(spec: dict[str, Any]) -> Helper:
        """The helper the entry point started early (spawn.py), else a new one; a new one too when
        the early one is gone already (killed before the pool needed it)."""
        early = take_early()
        if early is not None:
            try:
                return Helper(spec, early)
            except OSError:
                pass
        return Helper(spec)

    def dispatch(self, tag: Any, data: bytes | memoryview, apply: Apply, lines: list[bytes] | None = None) -> None:
        """One piece (`data`: its lines, newline-separated) to a helper with a free slot, else
        rendered here (`lines`: its lines when the caller has them split already); then what is
        done is applied. A piece a helper renders is never split in this process."""
        if self.helpers is None:
            self.start()
        self.take(apply)  # results already there free their slots
        now_ms = self.alerts.now_secs[0] * 1000
        helper = next((h for h in self.helpers or () if h.alive and h.free_slots and self._is_up(h)), None)
        if helper is not None and len(data) <= IN_BYTES:
            try:
                helper.send(data, now_ms)
                self.queue.append((tag, data, helper, 0))
            except OSError as exc:  # it died before this piece: rendered here, as its others will be
                self._lost(helper, f"harmony-alerts helper process {helper.pid} is gone ({exc.strerror})")
                helper = None
        if helper is None:
            chunk = self.render_here(bytes(data).split(b"\n") if lines is None else lines)
            held = len(data) + len(chunk.blob)
            self.held_bytes += held
            self.queue.append((tag, data, chunk, held))
        self.take(apply, keep_at_most=SLOTS_PER_HELPER * len(self.helpers or ()) + RENDER_AHEAD_PIECES)

    def render_here(self, plain: list[bytes]) -> Chunk:
        if self.render is None:
            self.render = make_render(self.alerts.render_spec())
        try:
            return render_chunk(plain, self.render, self.alerts.now_secs[0] * 1000)
        except BaseException as exc:  # this process's own rendering, as a record handler's error
            raise StageFailed(self.alerts, exc) from exc

    def take(self, apply: Apply, wait_all: bool = False, keep_at_most: int | None = None) -> None:
        """Apply the pieces at the front of the queue that are done; `wait_all`: every piece,
        `keep_at_most`: wait only until the queue is that short and the pieces rendered here hold
        at most RENDER_AHEAD_BYTES (waiting sooner would leave this process idle while a helper
        finishes its oldest piece)."""
        queue = self.queue
        while queue:
            tag, data, work, held = queue[0]
            if isinstance(work, Helper):
                must = wait_all or (
                    keep_at_most is not None and (len(queue) > keep_at_most or self.held_bytes > RENDER_AHEAD_BYTES)
                )
                if not must and work.alive and not work.ready():
                    return
                chunk = self._receive(work, data)
            else:
                chunk = work
                self.held_bytes -= held
            queue.popleft()
            apply(tag, chunk)

    def _receive(self, helper: Helper, data: bytes | memoryview) -> Chunk:
        """The helper's result; rendered here when it was too big for the slot, or the helper
        is gone (its pieces still in flight are rendered here too, in their turn)."""
        if helper.alive:
            try:
                chunk = helper.receive()
            except (OSError, HelperFailed) as exc:
                self._lost(helper, str(exc))
            else:
                if chunk is not None:
                    return chunk
        else:
            helper.in_flight.popleft()
        return self.render_here(bytes(data).split(b"\n"))

    def _is_up(self, helper: Helper) -> bool:
        try:
            return helper.is_up()
        except (OSError, HelperFailed) as exc:
            self._lost(helper, str(exc))
            return False

    def _lost(self, helper: Helper, why: str) -> None:
        helper.alive = False
        self.runtime.log.warning(
            f"{why}{helper.how_it_ended()}; its input is rendered in the main process, nothing is lost"
        )

    def stop(self) -> None:
        for helper in self.helpers or ():
            helper.stop()
        discard_early()  # started for a file that turned out to hold too few lines for a pool


class PooledStdin(StdinSource):
    """stdin for a standalone harmony-alerts, rendering chunks in helper processes (module doc)."""

    def __init__(self, runtime: Runtime, config: StreamConfig, alerts: AlertsProcessor, workers: int) -> None:
        super().__init__(runtime, config)
        self.alerts = alerts
        self.pool = RenderPool(alerts, workers)
        if workers > 0:  # reads come unsplit: a piece a helper renders is split only there
            self._batches = self.reader.batches(whole=True)
        # the number of the next line to feed or apply: lines are numbered here, from the pieces'
        # line counts (LineReader does not count the reads it leaves unsplit)
        self.line_no = 1

    def open(self, resume: Any = None) -> None:
        super().open(resume)
        if self.pool.workers > 0:  # a 64 KiB pipe would cut the input into pieces of ~45 events
            grow_pipe(self.fd, STDIN_PIPE_BYTES)

    def poll(self) -> bool:
        pool = self.pool
        if self.give_up():
            pool.take(self._apply, wait_all=True)
            return False
        try:
            _, lines = next(self._batches)
        except StopIteration:
            pool.take(self._apply, wait_all=True)
            return False
        self.runtime.stats.counters["bytes_in"] = self.reader.bytes_read
        if type(lines) is bytes:  # a whole read, unsplit (LineReader.batches)
            self._pieces(lines)
            return True
        if not lines:  # input idle: write out everything read, so the commit can flush it
            pool.take(self._apply, wait_all=True)
            return True
        plain = _plain(lines)
        size = sum(map(len, plain)) + len(plain)
        if not pool.started and (pool.workers <= 0 or (len(lines) < POOL_MIN_LINES and size < POOL_MIN_BYTES)):
            self._feed_here(lines)
            return True
        step = max(POOL_MIN_LINES, len(plain) * PIECE_BYTES // max(size, 1))
        for start in range(0, len(plain), step):
            piece = plain[start : start + step]
            pool.dispatch(lines[start : start + step], b"\n".join(piece), self._apply, piece)
        return True

    def _feed_here(self, lines: list[Any]) -> None:
        """Lines fed as one process feeds them (before the helpers start: nothing is queued)."""
        first_line_no = self.line_no
        self.line_no += len(lines)
        self._feed(first_line_no, lines)

    def _pieces(self, block: bytes) -> None:
        """A read's lines, unsplit, in pieces of about PIECE_BYTES (cut at newlines): what a piece
        of tiny events grows into stays small (memory) and the two processes trade work often
        enough to stay busy together. A small first read is fed as one process feeds it."""
        pool = self.pool
        if not pool.started and len(block) < POOL_MIN_BYTES:
            lines = block.split(b"\n")
            if len(lines) < POOL_MIN_LINES:
                self._feed_here(lines)
                return
        view = memoryview(block)
        start = 0
        while start <= len(block):  # (b"" is one blank line, a piece too: lines are numbered in order)
            end = block.find(b"\n", start + PIECE_BYTES)
            if end < 0:
                end = len(block)
            piece = view[start:end]  # a piece a helper renders is copied only into its slot
            pool.dispatch(piece, piece, self._apply)
            start = end + 1

    def _apply(self, lines: list[Any] | memoryview, chunk: Chunk) -> None:
        """A rendered piece, in input order: its bad lines, then its alerts in writes of at most
        the output batch size, each followed by saving its alerts' dedupe keys — so a kill -9
        repeats at most one batch, as one process does. (A piece that came unsplit, a view of its read,
        has no oversized line, and is split here only for its bad lines.)"""
        first_line_no = self.line_no
        self.line_no += chunk.line_count
        bad = list(chunk.bad)
        if type(lines) is memoryview:
            lines = bytes(lines).split(b"\n") if bad else []
        oversized = [i for i, line in enumerate(lines) if type(line) is OversizedLine]
        if oversized:
            bad = sorted(bad + oversized)
        for index in bad:
            self.bad(first_line_no + index, lines[index])
        counters = self.runtime.stats.counters
        counters["records_in"] += chunk.good
        counters["filtered"] += chunk.filtered
        writer = self.runtime.writer
        ends = chunk.ends
        start = 0
        try:
            while start < len(ends):
                begin = ends[start - 1] + 1 if start else 0
                stop = max(start + 1, bisect_right(ends, begin + writer.max_buffer_bytes - 1, start))
                parts, count = self.alerts.take_alerts(chunk, start, stop)
                if count:
                    writer.write_now(parts, count)
                start = stop
        except (BadInputError, OutputClosed, StageFailed):
            raise
        except BaseException as exc:  # a full disk under the key log, as `_feed` reports it
            raise StageFailed(self.downstream, exc) from exc

    def close(self) -> int:
        try:
            return super().close()
        finally:
            self.pool.stop()


class PooledAlerts(AlertsProcessor):
    """harmony-alerts inside `harmony-pipes chain`, between a source and a sink: the events it
    is handed (as the source's bytes, never parsed here) are rendered in pieces by a `RenderPool`
    and handed to the sink as blocks of lines, in input order. It holds what it was handed until
    a piece fills or the next commit point (`settle`), so the sink's commit still covers every
    record the source's checkpoint names: the exactly-once protocol is unchanged."""

    takes_raw = True

    def __init__(self, runtime: Runtime, config: AlertsConfig, stream: StreamConfig | None, workers: int) -> None:
        super().__init__(runtime, config, stream)
        self.pool = RenderPool(self, workers)
        self.pending: list[bytes] = []  # lines handed to us, not yet in a piece
        self.pending_bytes = 0

    def record_handler(self) -> Emit:
        pending = self.pending
        append = pending.append

        def on_record(record: dict[str, Any] | None, raw: bytes) -> None:
            append(raw)
            self.pending_bytes += len(raw) + 1
            if self.pending_bytes >= PIECE_BYTES:
                self._dispatch()

        return on_record

    def _dispatch(self) -> None:
        """The pending lines as one piece: to a helper (started with the first full piece), or
        rendered here while none runs (a trickle never starts one)."""
        plain = self.pending[:]
        self.pending.clear()
        full = self.pending_bytes >= PIECE_BYTES
        self.pending_bytes = 0
        if self.pool.started or full:
            self.pool.dispatch(None, b"\n".join(plain), self._apply, plain)
        else:
            self._apply(None, self.pool.render_here(plain))

    def holding(self) -> bool:
        return bool(self.pending) or bool(self.pool.queue)

    def settle(self) -> None:
        if self.pending:
            self._dispatch()
        self.pool.take(self._apply, wait_all=True)

    def _apply(self, tag: Any, chunk: Chunk) -> None:
        """A rendered piece, in input order: its alerts deduplicated and handed on as lines."""
        if chunk.bad:  # the source hands on JSON objects only: one that is not is this stage's failure
            error = BadInputError(f"{len(chunk.bad)} records handed to harmony-alerts are not JSON objects")
            raise StageFailed(self, error)
        self.runtime.stats.counters["filtered"] += chunk.filtered
        if not len(chunk.ends):
            return
        parts, count = self.take_alerts(chunk, 0, len(chunk.ends))
        if count:
            lines: list[bytes] = []
            for part in parts:
                lines += bytes(part).split(b"\n")[:-1]
            self.emit_lines(lines)

    def drain(self) -> None:
        self.settle()

    def close(self) -> int:
        try:
            return super().close()
        finally:
            self.pool.stop()


def _plain(lines: list[Any]) -> list[bytes]:
    """The lines as a helper gets them: an oversized line stands as a blank one (`_apply` makes
    it a bad record)."""
    if all(type(line) is bytes for line in lines):
        return lines
    return [line if type(line) is bytes else b"" for line in lines]
