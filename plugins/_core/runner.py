"""The one runner: drives a chain of processors and orders their checkpoints.

    head (a source, or stdin) → transforms … → tail (a sink, or stdout)

A standalone command is a chain too: `harmony-alerts` runs `stdin → alerts → stdout`,
`s3-batch` runs `stdin → s3-batch` (its receipts go to stdout), `harmony-events` runs
`events → stdout`. `harmony-pipes chain` runs several commands this way in one process, records
handed over in memory.

The loop: poll the head (one page, chunk or idle nap), run every stage's timers, and at a safe
point of the head make a commit when the tail finds one due. Once the tail reports a commit
durable, the upstream stages are told, nearest to the tail first (see `processor`). At the end:
a last commit, `drain` of every stage after the head, the durable notifications, `close`.

Failures: an error of the head (a refused credential, `--strict`) still lets the rest commit
what reached it; an error of a later stage stops everything where it stands (state stays at the
last durable commit). A stop signal asks the head to stop at its next safe point (stdin reads
on until end of input or `--shutdown-timeout-secs`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from .errors import ExitCode, OutputClosed, PipesError
from .log import Log
from .processor import SINK, SOURCE, CommitToken, Emit, Position, Processor, Resume, SkipRecord, StageFailed
from .signals import StopFlag
from .stdio import BadRecords, StdinSource, StdoutSink, emit_to_writer

BACKPRESSURE_NAP_SECS = 0.02
# A source that resumes from positions (harmony-events, aws-discovery) into a sink with its own
# spool commits at most this often: each commit point costs every stage a checkpoint (the cursor
# document with its overlap identities, the staged dedupe keys, a commits.log line, flushed
# bodies) and its save once durable — ~15 ms a commit, a twentieth of the chain's main thread
# when every window of a dense tenant was one. A kill -9 replays at most this much more (the
# positions still name exactly what the sink kept); stdin (which cannot replay) and stdout
# (which flushes on its own idle rule) commit as before.
CHAIN_COMMIT_INTERVAL_SECS = 1.0

# The exit code of a chain is its worst stage's: configuration and credential problems first
# (nothing works until they are fixed), then unreachable, runtime, bad input, try-again.
_SEVERITY = {
    ExitCode.USAGE: 6,
    ExitCode.AUTH: 5,
    ExitCode.UNREACHABLE: 4,
    ExitCode.RUNTIME: 3,
    ExitCode.BAD_INPUT: 2,
    ExitCode.TEMPFAIL: 1,
    ExitCode.OK: 0,
}


def worst_exit_code(codes: Sequence[int]) -> int:
    """The code that says most: 2 > 3 > 4 > 1 > 65 > 75 > 0 (unknown codes rank as 1)."""
    return max(codes, key=lambda code: _SEVERITY.get(code, 3), default=0)


class Runner:
    def __init__(
        self,
        stages: Sequence[Processor],
        stop: StopFlag,
        bad_records: dict[int, BadRecords] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(stages) < 2:
            raise ValueError("a chain needs a head and a tail")
        self.stages = list(stages)
        self.head = self.stages[0]
        self.tail = self.stages[-1]
        self.upstream = self.stages[:-1]
        self.stop = stop
        # the bad-record policy of each stage after the head, by id(stage), for what it refuses
        self.bad_records = bad_records or {}
        self._pending: deque[tuple[CommitToken, dict[str, Position]]] = deque()
        self._stop_forwarded = False
        self._ending: tuple[Processor, PipesError] | None = None
        self._committed_progress = 0
        self.clock = clock
        self._paced = not isinstance(self.head, StdinSource) and not isinstance(self.tail, StdoutSink)
        self._last_commit_at = float("-inf")
        self.codes: dict[int, int] = {}
        self.failures: list[tuple[Processor, PipesError]] = []
        self.output_closed = False

    # -- wiring -------------------------------------------------------------------------------

    def _open(self) -> None:
        for index, stage in enumerate(self.stages):
            if stage.stage_key == stage.command:
                stage.stage_key = f"{index}:{stage.command}"
        for bad in self.bad_records.values():
            bad.dead_letter.check()
        self.tail.open(None)
        resume = self.tail.resume_positions()
        for stage in reversed(self.upstream):
            found = None
            if resume is not None and stage.stage_key in resume[1]:
                found = Resume(resume[1][stage.stage_key], resume[0])
            stage.open(found)
        if isinstance(self.tail, StdoutSink) and len(self.stages) > 2:
            # every flush delivers whole records to the reader: the transforms save their state
            # then (a kill -9 repeats at most one output batch); the head waits for a commit
            self.tail.writer.on_flushed = self._delivered_to_stdout
        # from the tail back: a stage's handler captures its `emit`, so that must be wired first
        for upstream, downstream in reversed(list(zip(self.upstream, self.stages[1:], strict=True))):
            upstream.emit = self._hop(upstream, downstream)
            if not isinstance(upstream, StdinSource):
                upstream.emit_lines = self._hop_lines(upstream, downstream, upstream.emit)

    def _hop(self, sender: Processor, stage: Processor) -> Emit:
        """The `emit` of `sender`: counts the record out and in, then hands it to `stage`."""
        handler = stage.record_handler()
        if isinstance(sender, StdinSource):
            sender.downstream = stage
            sender.lines_handler = stage.lines_handler()
            return handler  # a standalone command's hot path: StdinSource counts per chunk
        if isinstance(stage, StdoutSink):
            return handler  # records_out of the sender is what its stdout writer wrote
        out_counters = sender.runtime.stats.counters
        in_counters = stage.runtime.stats.counters
        bad = self.bad_records.get(id(stage))
        loads = orjson.loads
        parse = not stage.takes_raw

        def emit(record: dict[str, Any] | None, raw: bytes) -> None:
            out_counters["records_out"] += 1
            in_counters["records_in"] += 1
            try:
                if record is None and parse:  # a source handing on bytes only (events as the API sent them)
                    record = loads(raw)
                handler(record, raw)
            except SkipRecord as exc:
                if bad is None:
                    raise StageFailed(stage, exc) from exc
                bad(in_counters["records_in"], raw, str(exc))
            except (StageFailed, OutputClosed):
                raise
            except BaseException as exc:
                raise StageFailed(stage, exc) from exc

        return emit

    def _hop_lines(self, sender: Processor, stage: Processor, emit: Emit) -> Callable[[list[bytes]], None]:
        """The `emit_lines` of `sender`: the lines `stage`'s `lines_handler` takes are counted
        here, the rest go through `emit` (the per-record hop) one by one."""
        take = stage.lines_handler(objects=True)
        out_counters = sender.runtime.stats.counters
        in_counters = stage.runtime.stats.counters

        def emit_lines(lines: list[bytes]) -> None:
            taken = 0
            if take is not None:
                try:
                    taken = take(lines)
                except (StageFailed, OutputClosed):
                    raise
                except BaseException as exc:
                    raise StageFailed(stage, exc) from exc
                out_counters["records_out"] += taken
                in_counters["records_in"] += taken
            for line in lines[taken:] if taken else lines:
                emit(None, line)

        return emit_lines

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> int:
        """Run to the end; returns the exit code (the worst stage's). `failures` holds the
        errors to print, `output_closed` whether stdout's reader went away."""
        try:
            self._open()
            more = True
            while more:
                if self.stop() and not self._stop_forwarded:
                    self._stop_forwarded = True
                    self.head.request_stop()
                accepting = self._accepting()
                if accepting or not self.head.at_safe_point:
                    # (a head between safe points goes on to the next one, even past back-pressure:
                    # only there can the sink commit, seal and so make room)
                    more = self._poll_head()
                elif self.head.give_up():
                    more = False
                else:
                    time.sleep(BACKPRESSURE_NAP_SECS)
                if self.head.at_safe_point:
                    # before the timers: what a progress line reports is committed; at once when a
                    # stage pushes back (sealing at the commit is what makes room)
                    self._maybe_commit(urgent=not accepting)
                self._tick()
                self._notify_durable()
            self._finish()
        except StageFailed as failed:
            self._fail(failed.stage, failed.error)
        except OutputClosed:
            self.output_closed = True
            self._close_all()
        except PipesError as exc:  # the head failed where it could not commit (or opening failed)
            self._fail(self.head, exc)
        except BaseException:
            self._close_all()
            raise
        return worst_exit_code(list(self.codes.values()))

    def _accepting(self) -> bool:
        """False while a stage pushes back; a stage's background failure ends the input."""
        if self._ending is None:
            for stage in self.stages[1:]:
                failure = stage.failure()
                if failure is not None:
                    self._ending = (stage, failure)
                    self.head.stop_now()
                    break
        return all(stage.can_accept() for stage in self.stages[1:])

    def _poll_head(self) -> bool:
        try:
            return self.head.poll()
        except PipesError as exc:
            if not self.head.at_safe_point:
                raise
            # the head's own failure (credentials, --strict): the rest still commits what it got
            self._record(self.head, exc)
            return False

    def _tick(self) -> None:
        for stage in self.stages:
            try:
                stage.on_tick()
            except (StageFailed, OutputClosed):
                raise
            except BaseException as exc:
                if stage is self.head:
                    raise
                raise StageFailed(stage, exc) from exc
            stage.runtime.stats.tick()
        for bad in self.bad_records.values():
            bad.dead_letter.flush()

    def _maybe_commit(self, *, at_end: bool = False, urgent: bool = False) -> None:
        """Commit when the tail finds it due (at the end: whenever it holds anything), or the head
        moved (an empty window still moves a cursor) — for a paced chain, not sooner than
        CHAIN_COMMIT_INTERVAL_SECS after the last commit unless `at_end` or `urgent`."""
        tail = self.tail
        transforms = self.stages[1:-1]

        def due() -> bool:
            return tail.commit_due(at_end=at_end) or self.head.progress != self._committed_progress

        holding = any(stage.holding() for stage in transforms)
        if not (holding or due()):
            return
        if self._paced:
            now = self.clock()
            if not (at_end or urgent) and now - self._last_commit_at < CHAIN_COMMIT_INTERVAL_SECS:
                return
            self._last_commit_at = now
        if holding:
            for stage in transforms:  # nearest the head first: what it hands on, the next settles
                stage.settle()
            if not due():
                return
        self._committed_progress = self.head.progress
        token = tail.next_token()
        positions: dict[str, Position] = {}
        for stage in self.upstream:
            position = stage.checkpoint(token)
            if position is not None:
                positions[stage.stage_key] = position
        tail.commit(positions, token)
        self._pending.append((token, positions))

    def _notify_durable(self) -> None:
        if not self._pending:
            return
        durable = self.tail.durable_through()
        newest = None
        while self._pending and self._pending[0][0].number <= durable:
            newest = self._pending.popleft()
        if newest is None:
            return
        token, positions = newest
        for stage in reversed(self.upstream):  # transforms nearest the sink first, the source last
            stage.committed(positions.get(stage.stage_key), token)

    def _delivered_to_stdout(self) -> None:
        token = self.tail.next_token()
        for stage in reversed(self.stages[1:-1]):
            stage.committed(None, token)

    def _finish(self) -> None:
        try:
            self._maybe_commit(at_end=True)
            for stage in self.stages[1:]:
                stage.drain()
            self._notify_durable()
        except (StageFailed, OutputClosed):
            raise
        except BaseException as exc:
            raise StageFailed(self.tail, exc) from exc
        self._close_all()
        if self._ending is not None and not self.codes.get(self.stages.index(self._ending[0])):
            self._record(*self._ending)  # (unless the stage's close already said it, in its words)

    def _fail(self, stage: Processor | None, error: BaseException) -> None:
        """A stage failed while records moved: nothing more is committed; the state of every
        stage stays at the last durable commit."""
        if stage is None:
            stage = self.stages[1]
        if isinstance(error, OutputClosed):
            self.output_closed = True
        self._close_all()
        if isinstance(error, OutputClosed):
            return
        if isinstance(error, PipesError):
            self._record(stage, error)
            return
        raise error

    def _record(self, stage: Processor, error: PipesError) -> None:
        stage.runtime.health.cycle_failed(error)  # at once: a later tick must not call it a success
        self.failures.append((stage, error))
        index = self.stages.index(stage)
        if not self.codes.get(index):
            self.codes[index] = int(error.exit_code)

    def _close_all(self) -> None:
        for bad in self.bad_records.values():
            bad.dead_letter.close()
        for stage in self.stages:
            try:
                code = stage.close()
            except PipesError as exc:
                self._record(stage, exc)
                continue
            except OutputClosed:
                self.output_closed = True
                continue
            index = self.stages.index(stage)
            if code and not self.codes.get(index):
                self.codes[index] = code


def run_command(processor: Processor, head: StdinSource | None = None) -> int:
    """Run one command the way its console script does: `stdin →` a transform or sink, a
    source or transform `→ stdout`. Prints every failure as one line; returns the exit code.
    `head`: stdin read another way (harmony-alerts' helper processes)."""
    runtime = processor.runtime
    stream = processor.stream
    stages: list[Processor] = []
    if processor.role != SOURCE:
        if stream is None:
            raise ValueError(f"{processor.command} reads stdin but has no stream options")
        stages.append(head or StdinSource(runtime, stream))
    stages.append(processor)
    if processor.role == SINK:
        processor.emit = emit_to_writer(runtime.writer)  # its receipts
    else:
        idle_secs = (stream.flush_idle_ms if stream is not None else 200) / 1000.0
        stages.append(StdoutSink(runtime, runtime.writer, idle_secs))
    runner = Runner(stages, runtime.stop)
    code = runner.run()
    return report(runner, code)


def report(runner: Runner, code: int) -> int:
    """Print the failures the runner collected (one line each) and the closed-stdout note."""
    for stage, error in runner.failures:
        report_error(stage.runtime.log, error)
    if runner.output_closed:
        head = runner.stages[-2] if len(runner.stages) > 1 else runner.head
        head.runtime.log.info(
            "stdout was closed by its reader; state is saved up to what it received — run again to deliver the rest"
        )
        code = worst_exit_code([code, ExitCode.TEMPFAIL])
    if runner.stop.signal_name and not runner.failures:
        runner.head.runtime.log.info(f"stopped by {runner.stop.signal_name}; everything read was committed")
    return code


def report_error(log: Log, error: PipesError) -> None:
    """One line for a failure, as the CLI funnel prints one (`Log.fatal`)."""
    log.fatal(error.message, error.fix, int(error.exit_code))
