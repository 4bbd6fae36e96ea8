"""The processor contract and its runner, with small processors written against the contract."""

from __future__ import annotations

import os
from itertools import pairwise
from typing import Any

import orjson
import pytest

from harmony_pipes._core.errors import AuthError, ConfigError, ExitCode, RuntimeFailure
from harmony_pipes._core.log import Log
from harmony_pipes._core.options import Runtime, StreamConfig
from harmony_pipes._core.output import BatchWriter
from harmony_pipes._core.processor import SINK, SOURCE, TRANSFORM, CommitToken, Processor, Resume, SkipRecord
from harmony_pipes._core.runner import Runner, worst_exit_code
from harmony_pipes._core.signals import StopFlag
from harmony_pipes._core.stats import Stats
from harmony_pipes._core.stdio import StdinSource
from harmony_pipes.chain import split_stages


def runtime(name: str, stop: StopFlag, events: list) -> Runtime:
    class ListStream:
        def write(self, text: str) -> None:
            events.append(("log", name, text.strip()))

        def flush(self) -> None:
            pass

    log = Log(name, stream=ListStream())  # type: ignore[arg-type]
    return Runtime(name, log, Stats(name, log), BatchWriter(1), stop)


class CountingSource(Processor):
    """Emits `total` records, a safe point after every `every` records; position = count."""

    role = SOURCE
    command = "src"

    def __init__(self, rt: Runtime, events: list, total: int, every: int, fail_at: int | None = None) -> None:
        super().__init__(rt)
        self.events, self.total, self.every, self.fail_at = events, total, every, fail_at
        self.sent = 0
        self.start_at = 0
        self.stop_requested = False

    def open(self, resume: Resume | None = None) -> None:
        if resume is not None:
            self.sent = self.start_at = resume.position
        self.events.append(("open", "src", None if resume is None else resume.position))

    def poll(self) -> bool:
        if self.stop_requested or self.sent >= self.total:
            return False
        for _ in range(self.every):
            if self.fail_at is not None and self.sent == self.fail_at:
                raise AuthError("refused", "fix it")
            self.sent += 1
            self.emit({"n": self.sent}, orjson.dumps({"n": self.sent}))
        self.progress += 1
        return True

    def request_stop(self) -> None:
        self.stop_requested = True

    def checkpoint(self, token: CommitToken) -> Any:
        return self.sent

    def committed(self, position: Any, token: CommitToken) -> None:
        self.events.append(("committed", "src", position))


class Doubler(Processor):
    role = TRANSFORM
    command = "double"

    def __init__(self, rt: Runtime, events: list) -> None:
        super().__init__(rt)
        self.events = events
        self.seen = 0

    def open(self, resume: Resume | None = None) -> None:
        self.events.append(("open", "double", None if resume is None else resume.position))

    def on_record(self, record: dict[str, Any], raw: bytes) -> None:
        self.seen += 1
        for copy in (1, 2):
            out = {**record, "copy": copy}
            self.emit(out, orjson.dumps(out))

    def checkpoint(self, token: CommitToken) -> Any:
        return {"seen": self.seen}

    def committed(self, position: Any, token: CommitToken) -> None:
        self.events.append(("committed", "double", position))


class ListSink(Processor):
    """Keeps records; a commit is durable only at the next tick (as s3-batch's fsync timer)."""

    role = SINK
    command = "sink"

    def __init__(self, rt: Runtime, events: list, resume_from: tuple | None = None, skip_odd: bool = False) -> None:
        super().__init__(rt)
        self.events = events
        self.records: list[dict] = []
        self.commits: list[tuple[int, dict]] = []
        self.durable = 0
        self.resume_from = resume_from
        self.skip_odd = skip_odd
        self.accepting = True
        self.fail_with: Exception | None = None

    def on_record(self, record: dict[str, Any], raw: bytes) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        if self.skip_odd and record["n"] % 2:
            raise SkipRecord("odd")
        self.records.append(record)

    def can_accept(self) -> bool:
        return self.accepting

    def next_token(self) -> CommitToken:
        return CommitToken("sink-1", len(self.commits) + 1)

    def commit(self, positions: dict, token: CommitToken) -> None:
        self.commits.append((token.number, dict(positions)))
        self.events.append(("commit", "sink", dict(positions)))

    def on_tick(self) -> None:
        self.durable = len(self.commits)

    def drain(self) -> None:
        self.durable = len(self.commits)

    def durable_through(self) -> int:
        return self.durable

    def resume_positions(self):
        return self.resume_from


def make_chain(total=10, every=5, **kwargs):
    events: list = []
    stop = StopFlag()
    src = CountingSource(runtime("src", stop, events), events, total, every, kwargs.pop("fail_at", None))
    dbl = Doubler(runtime("double", stop, events), events)
    sink = ListSink(runtime("sink", stop, events), events, **kwargs)
    return events, stop, src, dbl, sink


def test_commits_are_ordered_sink_first_then_transforms_then_the_source() -> None:
    events, stop, src, dbl, sink = make_chain()
    code = Runner([src, dbl, sink], stop).run()
    assert code == 0
    assert len(sink.records) == 20
    flow = [(kind, who, pos) for kind, who, pos in events if kind in ("commit", "committed")]
    # each save upstream follows the sink's commit of that position, the transform's before the source's
    for i, (kind, who, pos) in enumerate(flow):
        if kind == "committed" and who == "src":
            assert flow[i - 1][:2] == ("committed", "double") and flow[i - 1][2]["seen"] == pos
            assert any(k == "commit" and p["0:src"] == pos for k, _, p in flow[:i])
    assert [k for k, _, _ in flow].count("committed") >= 2
    saved = [pos for kind, who, pos in events if kind == "committed" and who == "src"]
    assert saved[-1] == 10
    assert sink.commits[-1][1] == {"0:src": 10, "1:double": {"seen": 10}}


def test_the_sinks_last_commit_is_given_back_to_every_stage_on_open() -> None:
    token = CommitToken("sink-1", 7)
    events, stop, src, dbl, sink = make_chain(resume_from=(token, {"0:src": 5, "1:double": {"seen": 5}}))
    Runner([src, dbl, sink], stop).run()
    opens = [(who, pos) for kind, who, pos in events if kind == "open"]
    assert opens == [("double", {"seen": 5}), ("src", 5)]  # opened from the sink back
    assert [r["n"] for r in sink.records[::2]] == list(range(6, 11))  # resumed after 5


def test_a_commit_becomes_known_upstream_only_once_durable() -> None:
    events, stop, src, dbl, sink = make_chain(total=5, every=5)
    runner = Runner([src, dbl, sink], stop)
    runner._open()
    runner._poll_head()
    runner._maybe_commit()
    assert [e for e in events if e[0] == "committed"] == []  # committed, not durable yet
    sink.on_tick()
    runner._notify_durable()
    assert [e[1] for e in events if e[0] == "committed"] == ["double", "src"]


def test_the_heads_own_failure_still_commits_what_reached_the_sink() -> None:
    _events, stop, src, dbl, sink = make_chain(total=20, every=5, fail_at=10)
    runner = Runner([src, dbl, sink], stop)
    code = runner.run()
    assert code == ExitCode.AUTH
    assert len(sink.records) == 20  # records 1..10, twice
    assert sink.commits[-1][1]["0:src"] == 10
    assert isinstance(runner.failures[0][1], AuthError)


def test_a_sink_failure_commits_nothing_more_and_notifies_nobody() -> None:
    events, stop, src, dbl, sink = make_chain(total=20, every=5)
    sink.fail_with = RuntimeFailure("disk full", "free space")
    runner = Runner([src, dbl, sink], stop)
    assert runner.run() == ExitCode.RUNTIME
    assert sink.commits == [] and not [e for e in events if e[0] == "committed"]
    assert runner.failures[0][0] is sink


def test_a_refused_record_is_a_bad_record_of_the_stage_that_refused_it() -> None:
    from harmony_pipes._core.options import StreamConfig
    from harmony_pipes._core.stdio import BadRecords

    _events, stop, src, dbl, sink = make_chain(total=4, every=2, skip_odd=True)
    bad = BadRecords(sink.runtime, StreamConfig())
    assert Runner([src, dbl, sink], stop, {id(sink): bad}).run() == 0
    assert [r["n"] for r in sink.records] == [2, 2, 4, 4]
    assert sink.runtime.stats.counters["bad_records"] == 4
    assert sink.runtime.stats.counters["records_in"] == 8


def test_a_stop_signal_asks_the_source_to_stop_and_the_rest_is_committed() -> None:
    _events, stop, src, dbl, sink = make_chain(total=100, every=5)
    stop.request("SIGTERM")
    assert Runner([src, dbl, sink], stop).run() == 0
    assert src.stop_requested and src.sent < 100
    assert sink.commits[-1][1]["0:src"] == src.sent


def test_back_pressure_pauses_the_source() -> None:
    _events, stop, src, dbl, sink = make_chain(total=10, every=5)
    runner = Runner([src, dbl, sink], stop)
    runner._open()
    sink.accepting = False
    assert not runner._accepting()
    sink.accepting = True
    assert runner._accepting()


class StepClock:
    """A monotonic clock that moves `step` seconds every time it is read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_source_that_resumes_from_positions_commits_at_most_once_a_second() -> None:
    events, stop, src, dbl, sink = make_chain(total=100, every=5)  # 20 safe points
    clock = StepClock(0.3)
    times: list[float] = []
    original = sink.commit

    def commit(positions: dict, token: CommitToken) -> None:
        times.append(clock.now)
        original(positions, token)

    sink.commit = commit  # type: ignore[method-assign]
    assert Runner([src, dbl, sink], stop, clock=clock).run() == 0
    assert 2 <= len(sink.commits) < 10  # not one per safe point
    gaps = [b - a for a, b in pairwise(times[:-1])]
    assert all(gap >= 1.0 for gap in gaps)  # (the last one is the end's, whenever that comes)
    assert sink.commits[-1][1] == {"0:src": 100, "1:double": {"seen": 100}}  # everything, at the end
    assert len(sink.records) == 200
    saved = [pos for kind, who, pos in events if kind == "committed" and who == "src"]
    assert saved[-1] == 100


def test_a_sink_that_pushes_back_gets_its_commit_at_once() -> None:
    """Back-pressure is released by the commit (s3-batch seals there): it is not paced."""
    _events, stop, src, dbl, sink = make_chain(total=40, every=5)
    sink.can_accept = lambda: len(sink.records) - 10 * len(sink.commits) < 10  # type: ignore[method-assign]
    clock = StepClock(0.01)
    assert Runner([src, dbl, sink], stop, clock=clock).run() == 0
    # one per safe point (each one made room), then the end's
    assert [positions["0:src"] for _, positions in sink.commits[:8]] == list(range(5, 45, 5))
    assert clock.now < 1.0
    assert len(sink.records) == 80


def test_worst_exit_code_ranks_configuration_first_and_try_again_last() -> None:
    assert worst_exit_code([0, 75, 3]) == 3
    assert worst_exit_code([4, 2, 1]) == 2
    assert worst_exit_code([65, 75]) == 65
    assert worst_exit_code([]) == 0


def test_chain_text_splits_like_a_shell_pipe() -> None:
    assert split_stages("a -x | b 'y | z' |c") == [["a", "-x"], ["b", "y | z"], ["c"]]
    with pytest.raises(ConfigError):
        split_stages("a | | b")
    with pytest.raises(ConfigError):
        split_stages("a || b")
    with pytest.raises(ConfigError):
        split_stages("a 'open")


class ChunkSink(ListSink):
    """Takes the leading lines of each chunk that start with `{"fast"` in one call."""

    def __init__(self, rt: Runtime, events: list) -> None:
        super().__init__(rt, events)
        self.fast: list[bytes] = []

    def lines_handler(self):
        def take(lines: list[bytes]) -> int:
            count = 0
            for line in lines:
                if not line.startswith(b'{"fast"'):
                    break
                count += 1
            self.fast += lines[:count]
            self.records += [orjson.loads(line) for line in lines[:count]]
            return count

        return take


def test_a_stage_can_take_the_leading_lines_of_a_chunk_and_the_rest_go_one_by_one(tmp_path) -> None:
    events: list = []
    stop = StopFlag()
    lines = [b'{"fast":1}', b'{"fast":2}', b"not json", b'{"fast":3}', b"", b"[1]", b'{"slow":4}']
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"\n".join(lines) + b"\n")
    dead = tmp_path / "dead.ndjson"
    head_rt = runtime("stdin", stop, events)
    head = StdinSource(head_rt, StreamConfig(dead_letter_path=str(dead)), fd=os.open(data, os.O_RDONLY))
    sink = ChunkSink(runtime("sink", stop, events), events)
    assert Runner([head, sink], stop).run() == 0
    assert sink.fast == lines[:2]  # the first good lines in one call; the rest one by one
    assert sink.records == [{"fast": 1}, {"fast": 2}, {"fast": 3}, {"slow": 4}]
    assert head_rt.stats.counters["records_in"] == 4
    assert head_rt.stats.counters["bad_records"] == 2
    bad = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [b["line_no"] for b in bad] == [3, 6]  # physical line numbers, as without the fast path


class Batcher(Processor):
    """A transform that holds what it is handed (bytes only) and hands it on as lines, in blocks
    of `block` or when the runner settles it — as harmony-alerts with its helper does in a chain."""

    role = TRANSFORM
    command = "batch"
    takes_raw = True

    def __init__(self, rt: Runtime, events: list, block: int) -> None:
        super().__init__(rt)
        self.events, self.block = events, block
        self.held: list[bytes] = []
        self.handed_on = 0
        self.parsed_here: list[Any] = []

    def on_record(self, record: dict[str, Any] | None, raw: bytes) -> None:
        self.parsed_here.append(record)
        self.held.append(raw)
        if len(self.held) >= self.block:
            self.settle()

    def holding(self) -> bool:
        return bool(self.held)

    def settle(self) -> None:
        lines, self.held = self.held, []
        self.handed_on += len(lines)
        self.emit_lines(lines)

    def checkpoint(self, token: CommitToken) -> Any:
        assert not self.held, "a checkpoint while records are held"
        return {"handed_on": self.handed_on}


class BytesSource(CountingSource):
    """CountingSource handing on bytes only (as harmony-events does)."""

    def poll(self) -> bool:
        if self.sent >= self.total:
            return False
        for _ in range(self.every):
            self.sent += 1
            self.emit(None, orjson.dumps({"n": self.sent}))  # type: ignore[arg-type]
        self.progress += 1
        return True


class LinesSink(ListSink):
    """ListSink with a lines path that takes the first `take` lines of each block it is handed."""

    def __init__(self, rt: Runtime, events: list, take: int) -> None:
        super().__init__(rt, events)
        self.take, self.blocks = take, []

    def lines_handler(self, objects: bool = False):
        def handle(lines: list[bytes]) -> int:
            self.blocks.append((objects, len(lines)))
            taken = lines[: self.take]
            self.records += [orjson.loads(line) for line in taken]
            return len(taken)

        return handle


def test_a_transform_that_holds_records_is_settled_before_every_commit_and_hands_on_lines() -> None:
    events: list = []
    stop = StopFlag()
    src = BytesSource(runtime("src", stop, events), events, total=25, every=5)
    batch = Batcher(runtime("batch", stop, events), events, block=4)
    sink = LinesSink(runtime("sink", stop, events), events, take=3)
    clock = StepClock(2.0)  # every safe point may commit
    assert Runner([src, batch, sink], stop, clock=clock).run() == 0
    assert batch.parsed_here == [None] * 25  # bytes only: nothing parsed for a stage that takes raw
    assert [r["n"] for r in sink.records] == list(range(1, 26))  # in order, each once
    # the lines path took 3 of each block, the 4th went one by one; blocks are marked as objects
    assert all(objects for objects, _ in sink.blocks) and sum(n for _, n in sink.blocks) == 25
    # every commit covers exactly what the source's position names: settled first
    for _number, positions in sink.commits:
        assert positions["1:batch"] == {"handed_on": positions["0:src"]}
    assert sink.commits[-1][1]["0:src"] == 25
    assert batch.runtime.stats.counters["records_in"] == 25
    assert batch.runtime.stats.counters["records_out"] == 25
    assert sink.runtime.stats.counters["records_in"] == 25
