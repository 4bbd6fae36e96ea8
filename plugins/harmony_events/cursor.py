"""Where collection stands: the cursor time and the eventIds already emitted near it.

Each cycle reads `[cursor - overlap, now]`. Events that arrive late (created in the past, visible
later) are caught by the overlap; the eventIds emitted inside the overlap are remembered so a
re-read emits them once only. The state moves forward only after a window's events are written
and flushed (the caller persists it then), so a crash repeats at most the window in flight.
Pure: no clock, no disk — `CursorStore` in this module is the small I/O wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harmony_pipes._core.errors import ConfigError

from .settings import strip_userinfo

STATE_FILE = "harmony-events.cursor.json"
FORMAT_VERSION = 1
# Keep ids slightly longer than the overlap: the server may treat startDate as inclusive and
# clocks disagree a little.
SEEN_MARGIN_US = 1_000_000


@dataclass
class CursorState:
    """`cursor_us`: everything created before it (minus late arrivals) has been emitted.

    `seen` maps eventId (or a content key for events without one) to eventCreated (epoch us),
    for the events emitted at or after `cursor_us - overlap`.
    """

    cursor_us: int
    seen: dict[str, int] = field(default_factory=dict)
    source: str = ""
    origin_us: int = 0  # the first --start: a cycle never reads before it

    def cycle_start_us(self, overlap_us: int) -> int:
        return self.cursor_us - overlap_us

    def is_new(self, key: str) -> bool:
        return key not in self.seen

    def remember(self, key: str, created_us: int) -> None:
        self.seen[key] = created_us

    def advance(self, window_end_us: int, overlap_us: int) -> None:
        """Move the cursor to the end of a fully read window and forget ids it cannot meet again."""
        if window_end_us > self.cursor_us:
            self.cursor_us = window_end_us
        horizon = self.cursor_us - overlap_us - SEEN_MARGIN_US
        if any(created < horizon for created in self.seen.values()):
            self.seen = {key: created for key, created in self.seen.items() if created >= horizon}

    def to_json(self) -> dict[str, Any]:
        return {
            "cursor_us": self.cursor_us,
            "origin_us": self.origin_us,
            "source": self.source,
            "seen": self.seen,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CursorState:
        seen = data.get("seen") or {}
        return cls(
            cursor_us=int(data["cursor_us"]),
            seen={str(k): int(v) for k, v in seen.items()},
            source=str(data.get("source", "")),
            origin_us=int(data.get("origin_us", 0)),
        )


class CursorStore:
    """Loads and saves the `CursorState` in a `StateDir`, or keeps it in memory only."""

    def __init__(self, state_dir: Any | None) -> None:
        self.state_dir = state_dir
        self.saves = 0

    @property
    def persistent(self) -> bool:
        return self.state_dir is not None

    def load(self, source: str) -> CursorState | None:
        if self.state_dir is None:
            return None
        data = self.state_dir.read_json(STATE_FILE, FORMAT_VERSION)
        if data is None:
            return None
        try:
            state = CursorState.from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"state file {self.state_dir.file(STATE_FILE)} is not a harmony-events cursor",
                "move it away to start fresh",
            ) from exc
        # an older version stored the base URL as given, password included: never shown, and
        # the next save writes it without
        state.source = " ".join(strip_userinfo(part) for part in state.source.split(" "))
        if state.source and state.source != source:
            raise ConfigError(
                f"--state-dir holds the cursor of another source ({state.source})",
                "give each base URL / client id its own --state-dir",
            )
        return state

    def save(self, state: CursorState) -> None:
        if self.state_dir is not None:
            self.state_dir.write_json(STATE_FILE, state.to_json(), FORMAT_VERSION)
            self.saves += 1
