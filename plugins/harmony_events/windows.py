"""Time windows: sized from the event density seen so far, split when a window hits the cap.

A gateway that silently stops at ~10,000 records per query loses the newest events of an
over-long window, and a window that is split after the fact costs re-reads. So each window is
planned to hold about half `--max-records-per-window` at the density the last windows showed
(`plan_length_us`; the density is remembered in the cursor file, so a restart plans well too),
never longer than `--window-secs`. A window that still returns the cap is split:
- when its events came oldest first (`complete_before`), everything created before the last one
  was read in full, so the window is split there and only the rest is read (no event is read
  twice, except those sharing the last timestamp);
- otherwise it is halved and both halves are re-read (already-emitted events are skipped by the
  cursor's seen set), until each piece is under the cap or as short as `min_window_us`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

MIN_WINDOW_US = 1_000  # 1 ms: below this a split cannot separate events any more
FILL = 0.5  # plan windows to hold this share of the cap: room for a burst twice the density
MIN_DENSITY_SPAN_US = 1_000_000  # a window shorter than 1 s says little about the density


@dataclass(frozen=True)
class Window:
    start_us: int
    end_us: int

    @property
    def length_us(self) -> int:
        return self.end_us - self.start_us


def halve(window: Window, min_window_us: int = MIN_WINDOW_US) -> tuple[Window, Window] | None:
    """The two halves of `window`, or None when it is already too short to split."""
    if window.length_us < 2 * min_window_us:
        return None
    mid = window.start_us + window.length_us // 2
    return Window(window.start_us, mid), Window(mid, window.end_us)


def plan_length_us(density_per_sec: float, max_records: int, window_us: int, min_window_us: int = MIN_WINDOW_US) -> int:
    """The window length expected to hold `FILL` × `max_records` events at `density_per_sec`."""
    if density_per_sec <= 0:
        return window_us
    wanted = int(FILL * max_records / density_per_sec * 1_000_000)
    return max(min_window_us, min(window_us, wanted))


def observed_density(events: int, span_us: int) -> float | None:
    """Events per second over a fully read span, or None when the span is too short to tell."""
    if span_us < MIN_DENSITY_SPAN_US:
        return None
    return events * 1_000_000 / span_us


def next_density(previous: float, observed: float | None) -> float:
    """Rise at once, fall by half per window: a quiet minute must not plan a burst into one query."""
    if observed is None:
        return previous
    return max(observed, previous * 0.5)


def complete_before(ordered: bool, last_created_us: int | None, window: Window) -> int | None:
    """Where a capped window may be split without re-reading: the eventCreated of its last event,
    when the events came oldest first (`ordered`: so every event created before the last one was
    among them) and that instant lies inside the window after its start. None otherwise (halve)."""
    if not ordered or last_created_us is None:
        return None
    return last_created_us if window.start_us < last_created_us < window.end_us else None


class WindowPlan:
    """The windows still to read, oldest first: planned one at a time from `length_us()` (the
    density may change as windows are read); a split puts its pieces in front."""

    def __init__(
        self,
        start_us: int,
        end_us: int,
        length_us: Callable[[], int] | int,
        min_window_us: int = MIN_WINDOW_US,
    ) -> None:
        self._pending: deque[Window] = deque()
        self._next_start_us = start_us
        self._end_us = end_us
        self._length_us = length_us if callable(length_us) else (lambda: length_us)
        self.min_window_us = min_window_us
        self.splits = 0

    def __bool__(self) -> bool:
        return bool(self._pending) or self._next_start_us < self._end_us

    def next(self) -> Window:
        if self._pending:
            return self._pending.popleft()
        start = self._next_start_us
        end = min(self._end_us, start + max(self.min_window_us, self._length_us()))
        self._next_start_us = end
        return Window(start, end)

    def split(self, window: Window) -> bool:
        """Re-queue `window` as two halves (oldest first); False when it cannot be split."""
        halves = halve(window, self.min_window_us)
        if halves is None:
            return False
        self._pending.appendleft(halves[1])
        self._pending.appendleft(halves[0])
        self.splits += 1
        return True

    def split_at(self, window: Window, at_us: int) -> None:
        """`window` was read in full up to `at_us`: only `[at_us, end]` is still to read. When it
        was the newest window planned, the rest is planned afresh (at the density now known)."""
        if window.end_us == self._next_start_us and not self._pending:
            self._next_start_us = at_us
        else:
            self._pending.appendleft(Window(at_us, window.end_us))
        self.splits += 1
