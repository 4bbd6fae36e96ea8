"""The collection loop as steps: windows → scroll pages → events handed on → safe points.

`Collector.steps()` is a generator the source processor (run.py) advances one step per `poll`:
a step is one scroll page (its new events emitted), one finished window (the cursor advanced: a
safe point), or one nap between cycles. The cursor never moves past a window that was not fully
read: retries exhausted, a stop signal or an error leave it at the window's start, with the
identities of the events already handed on remembered, so they are not repeated — that state is
a safe point too. Persisting it is the processor's business, once downstream made the events
durable (DESIGN 3a).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from harmony_pipes._core.errors import PipesError, TempFailError, UnreachableError
from harmony_pipes._core.hec import event_time_us
from harmony_pipes._core.metrics import Gauge
from harmony_pipes._core.options import Runtime

from .classify import InvalidScroll
from .client import HecClient, Stopped
from .config import CollectConfig
from .cursor import CursorState, event_identity, identity_key
from .page import ONE_LINE, BadEvent, event_dict, event_line, identity_fields
from .paginate import END_LOOP, ScrollPaginator
from .timeparse import US_PER_SEC, format_api_time
from .transport import Ticket
from .windows import Window, WindowPlan, complete_before, next_density, observed_density, plan_length_us

MAX_SCROLL_RESTARTS_PER_WINDOW = 5


NAP_SECS = 0.2  # the wait between cycles is cut into naps, so the runner's timers and signals run


@dataclass
class WindowResult:
    received: int = 0
    emitted: int = 0
    truncated: bool = False
    # the events came oldest first (eventCreated never went down, every one parseable), and the
    # last one's eventCreated: where a capped window was read in full up to
    ordered: bool = True
    last_created_us: int | None = None


class Collector:
    """Reads windows of events with `client` into `emit`, keeping `state` (the cursor)."""

    def __init__(
        self,
        client: HecClient,
        runtime: Runtime,
        state: CursorState,
        config: CollectConfig,
        now_us: Callable[[], int],
        emit: Callable[[bytes], None],
    ) -> None:
        self.client = client
        self.runtime = runtime
        self.state = state
        self.config = config
        self.now_us = now_us
        self.emit = emit
        self.log = runtime.log
        self.stats = runtime.stats
        self.safe = True  # everything emitted is covered by `state` (no window half read)
        self.progress = 0  # grows whenever `state` moves
        for name in (
            "requests",
            "pages",
            "events",
            "duplicates_skipped",
            "retries",
            "token_refreshes",
            "windows",
            "windows_split",
            "scroll_restarts",
            "cycles",
            "rate_limited",
        ):
            self.stats.counters.setdefault(name, 0)
        self.health = runtime.health
        if not (config.once or config.end_us is not None):
            self.health.interval_secs = config.interval_secs
        runtime.gauges.append(
            Gauge(
                "events_cursor_lag_seconds",
                "How far the cursor (everything before it is delivered) is behind now.",
                lambda: max(0.0, time.time() - self.state.cursor_us / US_PER_SEC),
            )
        )

    # -- cycles --------------------------------------------------------------------------------

    def steps(self) -> Iterator[None]:
        """--once / --end: one pass up to now (or --end). Otherwise a cycle every interval."""
        if self.config.once or self.config.end_us is not None:
            try:
                yield from self.cycle()
            except Stopped:
                return
            self.health.cycle_ok()
            return
        first = True
        while not self.runtime.stop():
            try:
                yield from self.cycle()
            except PipesError as exc:
                self.health.cycle_failed(exc)
                # Without /healthz an exit code is the only signal of credentials or permissions
                # refused, or a wrong URL, region or CA on the first cycle: retrying forever would
                # hide them. With /healthz (--metrics-addr) the probe shows them, and a fix heals.
                fatal = not isinstance(exc, TempFailError | UnreachableError) or (
                    first and isinstance(exc, UnreachableError)
                )
                if fatal and not self.health.keep_running:
                    raise
                self.log.warning(f"{exc.one_line()}; trying again in {self.config.interval_secs:g} s")
            except Stopped:
                return
            else:
                self.health.cycle_ok()
            first = False
            deadline = time.monotonic() + self.config.interval_secs
            while (remaining := deadline - time.monotonic()) > 0:
                if self.runtime.stop():
                    return
                time.sleep(min(NAP_SECS, remaining))
                yield

    def cycle(self) -> Iterator[None]:
        """Read `[cursor - overlap, now]` window by window, each sized from the density seen so far."""
        self.stats.add("cycles")
        now_us = self.now_us()
        end_us = now_us if self.config.end_us is None else min(now_us, self.config.end_us)
        start_us = max(self.state.cycle_start_us(self.config.overlap_us), self.state.origin_us)
        config = self.config

        def length_us() -> int:
            return plan_length_us(self.state.density_per_sec, config.max_records_per_window, config.window_us)

        plan = WindowPlan(start_us, end_us, length_us)
        try:
            while plan and not self.runtime.stop():
                window = plan.next()
                self.stats.add("windows")
                self.safe = False
                result = yield from self.read_window(window)
                if result.truncated:
                    where = f"window {format_api_time(window.start_us)}..{format_api_time(window.end_us)}"
                    complete_to = complete_before(result.ordered, result.last_created_us, window)
                    if complete_to is not None:
                        # read in full up to its last event: only the rest is read again
                        self.learn_density(result.received, complete_to - window.start_us)
                        plan.split_at(window, complete_to)
                        self.stats.add("windows_split")
                        self.log.debug(f"{where} returned {result.received} events: split at the last one")
                        yield from self.advance(complete_to)
                        continue
                    if plan.split(window):
                        self.stats.add("windows_split")
                        self.log.debug(f"{where} returned {result.received} events: split in half")
                        continue
                    self.log.warning(
                        f"{where} still returns {result.received} events at its shortest; some may be missing"
                    )
                else:
                    self.learn_density(result.received, window.length_us)
                yield from self.advance(window.end_us)
        except (PipesError, Stopped):
            self.settle()
            raise
        if self.runtime.stop():
            self.settle()
            raise Stopped()

    def advance(self, to_us: int) -> Iterator[None]:
        """A window fully read: the cursor moves past it — a safe point."""
        self.state.advance(to_us, self.config.overlap_us)
        self.settle()
        yield

    def settle(self) -> None:
        """The state as it stands covers everything emitted (a window read, or one broken off
        with its emitted identities remembered): a safe point."""
        self.safe = True
        self.progress += 1

    def learn_density(self, events: int, span_us: int) -> None:
        self.state.density_per_sec = next_density(self.state.density_per_sec, observed_density(events, span_us))

    # -- one window ----------------------------------------------------------------------------

    def read_window(self, window: Window) -> Iterator[None]:
        restarts = 0
        while True:
            try:
                return (yield from self._scroll(window))
            except InvalidScroll as exc:  # also ScrollInterrupted: a page answer that never came
                restarts += 1
                self.stats.add("scroll_restarts")
                if restarts > MAX_SCROLL_RESTARTS_PER_WINDOW:
                    raise TempFailError(
                        f"the scroll of window {format_api_time(window.start_us)} broke off "
                        f"{restarts} times in a row ({exc})",
                        "temporary: retry later",
                    ) from None
                self.log.debug(f"scroll lost ({exc}): restarting the window from its start")

    def _scroll(self, window: Window) -> Iterator[None]:
        """One scroll over `window`. The next page is asked for as soon as this page's scrollId
        is known, and this page's events are handed on meanwhile: the server's time and ours
        overlap instead of adding up. Only one request is ever in flight, on one connection and
        one thread (a helper thread taking the answer cost more in GIL hand-offs than it saved)."""
        client = self.client
        request = {
            "startDate": format_api_time(window.start_us),
            "endDate": format_api_time(window.end_us),
            **self.config.filters,
        }
        pager = ScrollPaginator(max_pages=self.config.max_pages_per_window)
        result = WindowResult()
        state = self.state
        seen = state.seen
        legacy = state.legacy_seen
        identity = identity_key
        decode_fields = identity_fields
        line_of = event_line
        last_created = -(1 << 62)
        ordered = True
        emit = self.emit
        counters = self.stats.counters
        cap = self.config.max_records_per_window
        query = self.client.query_events
        doc = query({"requestData": request})
        while True:
            counters["pages"] += 1
            events = doc.get("responseData") or []
            one_line = doc.get(ONE_LINE, False)
            lines: list[Any] = []
            envelope = doc.get("responseEnvelope")
            offered = envelope.get("scrollId") if isinstance(envelope, dict) else None
            ahead: Ticket | None = None
            if (
                events
                and type(offered) is str
                and offered
                and result.received + len(events) < cap
                and pager.pages + 1 < pager.max_pages
                and not self.runtime.stop()
            ):
                ahead = client.start_query({"requestData": {**request, "scrollId": offered}})
            try:
                keys: list[str] = []
                for raw in events:
                    try:
                        fields = decode_fields(raw)
                    except BadEvent:
                        counters["bad_records"] += 1
                        continue
                    event_id = fields.eventId
                    if type(event_id) is str and event_id:
                        key = identity(event_id, fields.type, fields.eventCreated, fields.customerId, fields.entityId)
                    else:
                        key = event_identity(event_dict(raw))
                    keys.append(key)
                    created = event_time_us(fields.eventCreated)
                    if created is None or created < last_created:
                        ordered = False
                    else:
                        last_created = created
                    if key in seen or (legacy and legacy.get(event_id) == created):
                        counters["duplicates_skipped"] += 1
                        continue
                    seen[key] = window.end_us if created is None else created
                    lines.append(raw if one_line else line_of(raw))
                result.received += len(keys)
                for line in lines:
                    emit(line)
                result.emitted += len(lines)
                counters["events"] += len(lines)
                scroll_id = pager.next_scroll_id(offered, keys)
                if result.received >= cap:
                    result.truncated = True
                    break
                if scroll_id is None:
                    result.truncated = pager.incomplete
                    if pager.ended_by == END_LOOP:
                        self.log.warning_once("scroll-loop", "the server repeated a page of the scroll; stopping it")
                    break
                if self.runtime.stop():
                    raise Stopped()  # the window is unfinished: the cursor must not pass it
                yield  # one page handed on: the runner's timers run while the next one comes
                sent, ahead = ahead, None  # (None: no token in hand when it was due; asked now)
                doc = query({"requestData": {**request, "scrollId": scroll_id}}, sent)
            finally:
                if ahead is not None:  # asked for, not wanted: let it end
                    client.discard(ahead)
        result.ordered = ordered
        result.last_created_us = last_created if result.received else None
        return result
