"""Time windows: split `[start, end]` into pieces of at most `--window-secs`, halve on truncation.

A gateway that silently stops at ~10,000 records per query loses the newest events of an
over-long window. A window that returns at least `--max-records-per-window` events is therefore
split in half and both halves re-read (already-emitted events are skipped by the cursor's seen
set), until each piece is under the cap or as short as `min_window_us`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

MIN_WINDOW_US = 1_000  # 1 ms: below this a split cannot separate events any more


@dataclass(frozen=True)
class Window:
    start_us: int
    end_us: int

    @property
    def length_us(self) -> int:
        return self.end_us - self.start_us


def split_range(start_us: int, end_us: int, window_us: int) -> list[Window]:
    """Consecutive windows covering `[start_us, end_us]`, each at most `window_us` long."""
    if window_us <= 0:
        raise ValueError("window_us must be positive")
    windows: list[Window] = []
    cursor = start_us
    while cursor < end_us:
        nxt = min(end_us, cursor + window_us)
        windows.append(Window(cursor, nxt))
        cursor = nxt
    return windows


def halve(window: Window, min_window_us: int = MIN_WINDOW_US) -> tuple[Window, Window] | None:
    """The two halves of `window`, or None when it is already too short to split."""
    if window.length_us < 2 * min_window_us:
        return None
    mid = window.start_us + window.length_us // 2
    return Window(window.start_us, mid), Window(mid, window.end_us)


class WindowPlan:
    """The queue of windows still to read, oldest first; a split puts its halves in front."""

    def __init__(self, windows: list[Window], min_window_us: int = MIN_WINDOW_US) -> None:
        self._pending: deque[Window] = deque(windows)
        self.min_window_us = min_window_us
        self.splits = 0

    def __bool__(self) -> bool:
        return bool(self._pending)

    def __len__(self) -> int:
        return len(self._pending)

    def next(self) -> Window:
        return self._pending.popleft()

    def split(self, window: Window) -> bool:
        """Re-queue `window` as two halves (oldest first); False when it cannot be split."""
        halves = halve(window, self.min_window_us)
        if halves is None:
            return False
        self._pending.appendleft(halves[1])
        self._pending.appendleft(halves[0])
        self.splits += 1
        return True
