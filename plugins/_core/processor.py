"""The processor contract: one lifecycle every command implements, driven by `runner.Runner`.

A command is a *processor* in one of three roles (DESIGN section 3a):

- a **source** produces records (`poll`): harmony-events, aws-discovery, or stdin itself;
- a **transform** turns each record into zero or more records (`on_record` → `emit`):
  harmony-alerts;
- a **sink** takes records and makes them durable (`on_record` + `commit`): s3-batch, or stdout.

The lifecycle, in the spirit of singer-sdk's sink (`process_record`, `is_full`,
`process_batch`, `mark_drained`) and Vector's split of configuration from the running component:

    open(resume) → { poll | on_record }* with on_tick / can_accept → checkpoint → commit →
    committed → … → drain → close

**Commit points.** Records flow synchronously from the source through the transforms into the
sink, so between two records every stage's state describes exactly the records the sink has
received. At a *safe point* of the source (a window fully read, a cycle emitted, an input chunk
consumed) the runner asks each upstream stage for its `checkpoint` (a JSON-able position) and
hands them to the sink's `commit`, which stores them with the records (a transform that holds
records — harmony-alerts rendering in its helper process — is first told to `settle`: hand on
everything it holds, so the commit covers every record the positions name). Once the sink says the
commit is durable, the runner tells the upstream stages, nearest first (`committed`): each
transform saves its state for what the sink committed, then the source saves its cursor. After a
kill -9 the sink's last commit is the truth: the runner reads it (`resume_positions`) and every
stage resumes from the position the sink committed (`open(resume)`), as Kafka Connect's S3 sink
keeps its offsets with the objects it wrote. So no record is lost, and none is stored twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import PipesError
from .options import Runtime, StreamConfig

SOURCE = "source"
TRANSFORM = "transform"
SINK = "sink"

Emit = Callable[[dict[str, Any], bytes], None]
"""Hand one record downstream: the parsed record and its compact JSON bytes (no newline)."""

LinesEmit = Callable[[list[bytes]], int]
"""Take an input chunk's lines (without the newline; blank ones included) in one call: returns
how many of the first ones it took as records; the rest go through `Emit` one by one."""

Position = Any
"""A stage's position at a commit point: anything orjson can serialize (an `orjson.Fragment` of
already-serialized bytes is the cheap form for large positions)."""


class StageFailed(Exception):
    """A stage raised while handling a record handed to it: carries the stage, so the runner
    knows whose failure it was (the head's own errors let the rest commit; others do not)."""

    def __init__(self, stage: Processor | None, error: BaseException) -> None:
        super().__init__(str(error))
        self.stage = stage
        self.error = error


class SkipRecord(Exception):
    """Raised by `on_record` for a record it refuses (schema-invalid, unusable values): a bad
    record of that stage — counted, dead-lettered, fatal under `--strict` — and the next record
    flows."""


@dataclass(frozen=True)
class CommitToken:
    """Names one commit of the sink: `sink_id` (None for stdout, whose commits are durable at
    once) and a number that grows by one per commit, across restarts of the same sink."""

    sink_id: str | None
    number: int

    @property
    def deferred(self) -> bool:
        """True when durability comes later than the commit (s3-batch fsyncs on an interval)."""
        return self.sink_id is not None


@dataclass(frozen=True)
class Resume:
    """What the sink's last commit says about one upstream stage, given to `open` on restart."""

    position: Position
    token: CommitToken


class Processor:
    """Base of every command's processor; subclasses override the methods of their role.

    `emit` is wired by the runner before `open` (transforms and sources hand records on with
    it). `stage_key` names the stage inside a chain (`"2:harmony-alerts"`) for positions.
    """

    role: ClassVar[str] = TRANSFORM
    command: ClassVar[str] = ""
    takes_raw: ClassVar[bool] = False
    """True when `record_handler` needs only the bytes: a source's bytes-only record reaches it
    unparsed (`record` None)."""
    progress: int = 0
    """Sources: grows whenever the position moves (a window read, a cycle done), so the runner
    commits a move that emitted nothing."""

    def __init__(self, runtime: Runtime, stream: StreamConfig | None = None) -> None:
        self.runtime = runtime
        self.stream = stream  # the stdin options, for a command that reads stdin
        self.emit: Emit = _nowhere
        self.emit_lines: Callable[[list[bytes]], None] = _nowhere_lines
        """Hand several records on at once, as lines (JSON objects without the newline): the
        downstream stage's `lines_handler` takes what it can, the rest goes one by one."""
        self.stage_key = self.command

    # -- all roles ----------------------------------------------------------------------------

    def open(self, resume: Resume | None = None) -> None:
        """Load state, start workers, check destinations. `resume` is this stage's position in
        the sink's last commit, when the stage runs in a chain whose sink has one."""

    def on_tick(self) -> None:
        """Timers: called between input chunks and at least every `--flush-idle-ms`."""

    def drain(self) -> None:
        """End of input (or of the source): finish everything in hand and make it durable."""

    def close(self) -> int:
        """Release files, locks and workers; returns this stage's exit code (0 ok). Must not
        persist anything the tail has not made durable (after a failure it is called without
        a last commit). A `PipesError` raised here is this stage's failure."""
        return 0

    def failure(self) -> PipesError | None:
        """A fatal error met in the background (a destination refusing for good): the runner
        stops the input, commits what was read, drains, and exits with its code."""
        return None

    # -- sources ------------------------------------------------------------------------------

    def poll(self) -> bool:
        """Produce some records with `emit` and return soon (a page, a chunk, a nap of at most
        `--flush-idle-ms`), so timers and commits run; False once there is nothing more."""
        raise NotImplementedError(f"{type(self).__name__} is not a source")

    @property
    def at_safe_point(self) -> bool:
        """Sources: True when everything emitted so far is covered by `checkpoint()`."""
        return True

    def request_stop(self) -> None:
        """Sources: stop at the next safe point (SIGTERM, SIGINT, SIGHUP)."""

    def give_up(self) -> bool:
        """Sources: True when the head must end now although downstream pushes back (the
        shutdown timeout of a stop signal ran out while the sink waited for room)."""
        return False

    def stop_now(self) -> None:
        """Sources: a later stage failed for good; stop as soon as possible (at a safe point)."""
        self.request_stop()

    # -- transforms and sinks -----------------------------------------------------------------

    def record_handler(self) -> Emit:
        """The function called per input record (the hot path; built once after `open`)."""
        return self.on_record

    def lines_handler(self, objects: bool = False) -> LinesEmit | None:
        """Optional: a faster path for whole chunks of lines (see `LinesEmit`): stdin's, or
        with `objects` an upstream stage's `emit_lines` (JSON objects it serialized itself, so
        the handler may trust their shape)."""
        return None

    def on_record(self, record: dict[str, Any], raw: bytes) -> None:
        raise NotImplementedError(f"{type(self).__name__} takes no records")

    def can_accept(self) -> bool:
        """Back-pressure: False pauses the source until the stage has room again."""
        return True

    def holding(self) -> bool:
        """Transforms: True while records handed to this stage are not yet handed on (a
        transform that works in batches, in another process)."""
        return False

    def settle(self) -> None:
        """Transforms: hand on everything handed to this stage so far. Called at a commit
        point before any `checkpoint`, so the sink's commit covers every record upstream
        positions name."""

    # -- the commit protocol ------------------------------------------------------------------

    def checkpoint(self, token: CommitToken) -> Position | None:
        """Upstream stages: the position covering every record handed downstream so far (None:
        nothing to remember). Called only at a safe point, right before the sink's commit."""
        return None

    def committed(self, position: Position | None, token: CommitToken) -> None:
        """Upstream stages: the sink made `token` durable; persist the state for `position`."""

    # sinks only

    def next_token(self) -> CommitToken:
        raise NotImplementedError(f"{type(self).__name__} is not a sink")

    def commit_due(self, at_end: bool = False) -> bool:
        """Sinks: whether a commit at this safe point is worth making (`at_end`: the last one;
        due whenever anything is uncommitted)."""
        return True

    def commit(self, positions: dict[str, Position], token: CommitToken) -> None:
        """Sinks: make a commit point covering every record received, storing `positions`."""
        raise NotImplementedError(f"{type(self).__name__} is not a sink")

    def durable_through(self) -> int:
        """Sinks: the number of the newest commit that is durable now (0: none yet)."""
        return 0

    def resume_positions(self) -> tuple[CommitToken, dict[str, Position]] | None:
        """Sinks, after `open`: the token and upstream positions of the last commit on disk."""
        return None


def _nowhere(record: dict[str, Any], raw: bytes) -> None:
    raise RuntimeError("emit used before the runner connected this stage")


def _nowhere_lines(lines: list[bytes]) -> None:
    raise RuntimeError("emit_lines used before the runner connected this stage")
