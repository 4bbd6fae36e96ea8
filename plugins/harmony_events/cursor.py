"""Where collection stands: the cursor time, the identities of the events emitted near it, and the
event density seen so far.

Each cycle reads `[cursor - overlap, now]`. Events that arrive late (created in the past, visible
later) are caught by the overlap; the identities of the events emitted inside the overlap are
remembered so a re-read emits them once only. The state moves forward only after a window's
events are written and flushed (the caller persists it then), so a crash repeats at most the
window in flight. Pure: no clock, no disk — `CursorStore` in this module is the small I/O wrapper.

**An event's identity** (`event_identity`) is eventId + type + eventCreated + customerId +
entityId, hashed to 32 hex characters. eventId alone is not unique: two detections of one email
can share it (a `spam` event and a Microsoft `suspicious_phishing` event four days apart, in a
public sanitized fixture), and keying on it alone dropped the second. The fields chosen are the
ones a re-read of the *same* detection cannot change: type and eventCreated tell two detections
of one email apart, customerId keeps tenants behind one MSP key apart, entityId is the object the
detection is about. Left out on purpose: `state`, `actions`, `severity` (they change while an
event is worked on: a re-read must not emit a second copy of a detection because someone
dismissed it) and `description` (Elastic's fingerprint has it, but it is display text that
Check Point may re-render, e.g. once a `<Unknown>` mailbox resolves). An event without an
eventId is keyed on a digest of its whole content.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from xxhash import xxh3_128_hexdigest

from harmony_pipes._core.errors import ConfigError

from .config import strip_userinfo

STATE_FILE = "harmony-events.cursor.json"
# 2: `seen` holds event identities (1 held eventIds; a format-1 file is migrated on load, its ids
# kept as `legacy_seen` until they fall out of the overlap). 2 also remembers `density_per_sec`.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# Keep identities slightly longer than the overlap: the server may treat startDate as inclusive
# and clocks disagree a little.
SEEN_MARGIN_US = 1_000_000
_SEP = "\x1f"  # cannot appear in the API's ids or timestamps


def identity_key(event_id: str, event_type: Any, created: Any, customer_id: Any, entity_id: Any) -> str:
    """The identity of an event with an eventId, from its fields (see the module docstring)."""
    text = f"{event_id}{_SEP}{event_type}{_SEP}{created}{_SEP}{customer_id}{_SEP}{entity_id}"
    return xxh3_128_hexdigest(text.encode("utf-8", "surrogatepass"))


def event_identity(event: dict[str, Any]) -> str:
    """The overlap de-duplication key of one event (see the module docstring for the choice)."""
    event_id = event.get("eventId")
    if type(event_id) is str and event_id:
        get = event.get
        return identity_key(event_id, get("type"), get("eventCreated"), get("customerId"), get("entityId"))
    return "sha1:" + hashlib.sha1(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class CursorState:
    """`cursor_us`: everything created before it (minus late arrivals) has been emitted.

    `seen` maps event identity to eventCreated (epoch us) for the events emitted at or after
    `cursor_us - overlap`; `legacy_seen` maps eventId to eventCreated for those a format-1 cursor
    had emitted (an event matches one when both its eventId and its eventCreated agree).
    `density_per_sec` is the event rate the last fully read windows showed (0: not known yet).
    """

    cursor_us: int
    seen: dict[str, int] = field(default_factory=dict)
    source: str = ""
    origin_us: int = 0  # the first --start: a cycle never reads before it
    legacy_seen: dict[str, int] = field(default_factory=dict)
    density_per_sec: float = 0.0

    def cycle_start_us(self, overlap_us: int) -> int:
        return self.cursor_us - overlap_us

    def is_new(self, key: str, event_id: object = None, created_us: int | None = None) -> bool:
        if key in self.seen:
            return False
        return not (self.legacy_seen and self.legacy_seen.get(event_id) == created_us)  # type: ignore[arg-type]

    def remember(self, key: str, created_us: int) -> None:
        self.seen[key] = created_us

    def advance(self, window_end_us: int, overlap_us: int) -> None:
        """Move the cursor to the end of a fully read window and forget keys it cannot meet again."""
        if window_end_us > self.cursor_us:
            self.cursor_us = window_end_us
        horizon = self.cursor_us - overlap_us - SEEN_MARGIN_US
        if any(created < horizon for created in self.seen.values()):
            self.seen = {key: created for key, created in self.seen.items() if created >= horizon}
        if self.legacy_seen:
            self.legacy_seen = {key: created for key, created in self.legacy_seen.items() if created >= horizon}

    def to_json(self) -> dict[str, Any]:
        """A snapshot (the maps copied): it may be written while the state moves on."""
        data: dict[str, Any] = {
            "cursor_us": self.cursor_us,
            "origin_us": self.origin_us,
            "source": self.source,
            "seen": dict(self.seen),
            "density_per_sec": self.density_per_sec,
        }
        if self.legacy_seen:
            data["legacy_seen"] = dict(self.legacy_seen)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], format_version: int = FORMAT_VERSION) -> CursorState:
        """Format 2 as written; format 1 (eventId → eventCreated) migrated into `legacy_seen`."""
        seen = {str(k): int(v) for k, v in (data.get("seen") or {}).items()}
        legacy = {str(k): int(v) for k, v in (data.get("legacy_seen") or {}).items()}
        if format_version == 1:
            seen, legacy = {}, seen
        return cls(
            cursor_us=int(data["cursor_us"]),
            seen=seen,
            source=str(data.get("source", "")),
            origin_us=int(data.get("origin_us", 0)),
            legacy_seen=legacy,
            density_per_sec=max(0.0, float(data.get("density_per_sec") or 0.0)),
        )


class CursorStore:
    """Loads and saves the `CursorState` in a `StateDir`, or keeps it in memory only."""

    def __init__(self, state_dir: Any | None) -> None:
        self.state_dir = state_dir
        self.saves = 0
        self.migrated_from: int | None = None
        self.version = FORMAT_VERSION
        self.extra: dict[str, Any] = {}  # what the loaded document holds beside the state (position_seq)

    @property
    def persistent(self) -> bool:
        return self.state_dir is not None

    def load(self, source: str) -> CursorState | None:
        if self.state_dir is None:
            return None
        found = self.state_dir.read_json_any(STATE_FILE, READABLE_VERSIONS)
        if found is None:
            return None
        version, data = found
        if isinstance(data, dict) and "position_seq" in data:
            self.extra["position_seq"] = int(data["position_seq"] or 0)
        try:
            state = CursorState.from_json(data, version)
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
        if version != FORMAT_VERSION:
            self.migrated_from = version
        return state

    def save(self, state: CursorState) -> None:
        self.save_json(state.to_json())

    def save_json(self, data: dict[str, Any]) -> None:
        """Write a `CursorState.to_json()` snapshot (atomic, fsync'ed)."""
        if self.state_dir is not None:
            self.state_dir.write_json(STATE_FILE, data, FORMAT_VERSION)
            self.saves += 1
