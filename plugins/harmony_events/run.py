"""The harmony-events processor (a source) and `harmony-events test`.

`EventsSource` advances the `Collector` one step per `poll` (a page, a window's end, a nap) and
hands each new event on as its own bytes. Its position is the cursor document; it is saved
(`committed`) only once the stage after it made the events durable — stdout flushed when run
alone, the sink's commit in `harmony-pipes chain` — so the cursor never passes an event the
reader does not have. A sink's copy of the position wins over the file when it is newer (a crash
between the sink's commit and our save).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import orjson

from harmony_pipes._core.errors import ConfigError, PipesError
from harmony_pipes._core.options import Runtime
from harmony_pipes._core.processor import SOURCE, CommitToken, Position, Processor, Resume
from harmony_pipes._core.retry import Backoff
from harmony_pipes._core.state import StateDir

from .client import HecClient
from .collect import Collector
from .config import COMMAND, CollectConfig, ConnectionConfig, now_us, read_access_key
from .cursor import STATE_FILE, CursorState, CursorStore
from .timeparse import US_PER_SEC, format_api_time

INSECURE_WARNING = "--insecure: TLS certificates are NOT verified; only use this on a network you trust"
POSITION_SEQ = "position_seq"  # in the cursor document: grows with every position made
STATE_DIR_KEY = "state_dir"  # in a position: whose it is


def make_client(
    connection: ConnectionConfig,
    env: Mapping[str, str],
    runtime: Runtime | None,
    *,
    max_retries: int | None = None,
) -> HecClient:
    """The HTTP client; the access key is read here (file or env) and only ever given to it."""
    access_key = read_access_key(env, connection.access_key_file)
    stop = runtime.stop if runtime is not None else None
    if runtime is not None:
        runtime.log.add_secret(access_key)  # a last line of defence; the client scrubs answers itself

    def on_retry(reason: str, delay: float) -> None:
        if runtime is not None:
            runtime.log.debug(f"retrying in {delay:.2f} s: {reason}")

    return HecClient(
        connection.base_url,
        connection.client_id,
        access_key,
        timeout_secs=connection.timeout_secs,
        verify_tls=not connection.insecure,
        backoff=Backoff(
            base_delay_secs=connection.retry_base_delay_secs,
            max_retries=connection.max_retries if max_retries is None else max_retries,
        ),
        stats=runtime.stats if runtime is not None else None,
        sleep=stop.sleep if stop is not None else None,
        on_retry=on_retry,
    )


class EventsSource(Processor):
    role = SOURCE
    command = COMMAND

    def __init__(
        self,
        runtime: Runtime,
        connection: ConnectionConfig,
        config: CollectConfig,
        env: Mapping[str, str],
        clock_us: Callable[[], int] = now_us,
    ) -> None:
        super().__init__(runtime)
        self.connection = connection
        self.config = config
        self.env = env
        self.clock_us = clock_us
        self.client: HecClient | None = None
        self.state_dir: StateDir | None = None
        self.store = CursorStore(None)
        self.collector: Collector | None = None
        self._steps: Iterator[None] | None = None
        self.position_seq = 0
        self._saved_seq = 0
        self._saver: ThreadPoolExecutor | None = None
        self._saving: Future[None] | None = None
        if config.tenant:
            runtime.stats.extra["tenant"] = config.tenant
        runtime.health.success_on_progress = False  # a cycle that ends well is the success, not a tick

    # -- lifecycle ----------------------------------------------------------------------------

    def open(self, resume: Resume | None = None) -> None:
        log = self.runtime.log
        self.client = make_client(self.connection, self.env, self.runtime)
        if self.connection.insecure:
            log.warning(INSECURE_WARNING)
        if self.config.state_dir:
            self.state_dir = StateDir(self.config.state_dir, owner=COMMAND)
        else:
            log.warning("no --state-dir: the cursor is kept in memory only; a restart begins again at --start")
        self.store = CursorStore(self.state_dir)
        source = f"{self.client.base_url} {self.client.client_id}"
        state = self._load(source, resume)
        self.collector = Collector(self.client, self.runtime, state, self.config, self.clock_us, self._emit_line)
        self._steps = self.collector.steps()
        log.debug(f"collecting from {format_api_time(state.cursor_us)} ({self.client.base_url})")

    def _load(self, source: str, resume: Resume | None) -> CursorState:
        own = self.store.load(source)
        if own is not None and self.store.migrated_from is not None:
            self.runtime.log.info(
                f"cursor file format {self.store.migrated_from} migrated: the {len(own.legacy_seen)} eventIds it "
                "remembered still count as emitted until they leave the overlap"
            )
        own_seq = self.store.extra.get(POSITION_SEQ, 0) if own is not None else 0
        state = own
        if resume is not None and isinstance(resume.position, dict) and self._ours(resume.position):
            # the sink's last commit names where we stood; our file may lag it (a crash between
            # the sink's commit and our save) or, run alone since, lead it
            theirs_seq = int(resume.position.get(POSITION_SEQ) or 0)
            if theirs_seq > own_seq:
                try:
                    state = CursorState.from_json(resume.position)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    raise ConfigError(
                        f"the sink's last commit holds no harmony-events cursor for stage {self.stage_key}",
                        "run the same chain as before, or move the sink's spool away",
                    ) from exc
                if state.source and state.source != source:
                    raise ConfigError(
                        f"the sink's last commit holds the cursor of another source ({state.source})",
                        "run the same chain as before, or give it a new sink state dir",
                    )
                own_seq = theirs_seq
        self.position_seq = self._saved_seq = own_seq
        if state is None:
            state = CursorState(cursor_us=self.config.start_us, source=source, origin_us=self.config.start_us)
        return state

    def _ours(self, position: dict[str, Any]) -> bool:
        """A position the sink keeps is this state dir's (a chain started over with a fresh
        --state-dir for this stage means: start over)."""
        return self.state_dir is not None and position.get(STATE_DIR_KEY) == str(self.state_dir.path.resolve())

    def _emit_line(self, line: bytes) -> None:
        # the page's own bytes (a msgspec.Raw view of them); the record is parsed downstream if needed
        self.emit(None, line if type(line) is bytes else bytes(line))  # type: ignore[arg-type]

    def poll(self) -> bool:
        assert self._steps is not None
        try:
            next(self._steps)
        except StopIteration:
            return False
        return True

    @property
    def at_safe_point(self) -> bool:
        return self.collector is None or self.collector.safe

    @property
    def progress(self) -> int:  # type: ignore[override]
        return 0 if self.collector is None else self.collector.progress

    # -- positions ----------------------------------------------------------------------------

    def checkpoint(self, token: CommitToken) -> Position | None:
        if self.collector is None or self.state_dir is None:
            return None
        self.position_seq += 1
        doc = self.collector.state.to_json()
        doc[POSITION_SEQ] = self.position_seq
        doc[STATE_DIR_KEY] = str(self.state_dir.path.resolve())
        return orjson.Fragment(orjson.dumps(doc))

    def committed(self, position: Position | None, token: CommitToken) -> None:
        """Save the cursor the sink made durable — on a helper thread, in order: the next window
        is read meanwhile (a crash before it lands costs at most a repeat)."""
        if position is None or self.state_dir is None or self.position_seq == self._saved_seq:
            return
        self._saved_seq = self.position_seq
        self.wait_for_saves()
        if self._saver is None:
            self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cursor-save")
        self._saving = self._saver.submit(self.state_dir.write_json, STATE_FILE, position, self.store.version)

    def wait_for_saves(self) -> None:
        """Until the cursor save in flight (if any) is on disk; its failure is raised here."""
        saving, self._saving = self._saving, None
        if saving is not None:
            saving.result()

    def close(self) -> int:
        try:
            self.wait_for_saves()
        finally:
            if self._saver is not None:
                self._saver.shutdown()
                self._saver = None
            if self._steps is not None:
                self._steps.close()  # a scroll page still in flight is waited for
            if self.client is not None:
                self.client.close()
            if self.state_dir is not None:
                self.state_dir.close()
        return 0


def run_test(connection: ConnectionConfig, env: Mapping[str, str], echo: Callable[[str], None]) -> int:
    """`harmony-events test`: token, then one tiny query (first page of the last hour)."""
    client = make_client(connection, env, None, max_retries=min(1, connection.max_retries))
    if connection.insecure:
        echo("warning: " + INSECURE_WARNING)
    echo(f"harmony-events test: {client.base_url} as client {client.client_id}")
    try:
        client.token()
        echo(f"  ok    token issued (valid {client.token_ttl_secs:g} s)")
        now = now_us()
        body = {
            "requestData": {
                "startDate": format_api_time(now - 3600 * US_PER_SEC),
                "endDate": format_api_time(now),
            }
        }
        doc = client.query_events(body)
        events = doc.get("responseData") or []
        echo(f"  ok    event query answered: {len(events)} event(s) on the first page of the last hour")
    except PipesError as exc:
        echo(f"  FAIL  {exc.message}")
        if exc.fix:
            echo(f"        fix: {exc.fix}")
        raise
    finally:
        client.close()
    echo("  all checks passed")
    return 0
