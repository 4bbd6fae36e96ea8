"""The emulator's tenant: events sorted by eventCreated, query filters, and scroll contexts.

Pure: no I/O, and time comes from injected clocks (`clock` monotonic seconds for scroll expiry).
Every event is serialised once when it is added, so a page is a join of ready-made bytes — the
emulator must never be the bottleneck of a benchmark.

Choices where the API reference is silent or ambiguous (documented in docs/hec-emulator.md):
- `startDate` is inclusive and `endDate` exclusive (half-open windows partition time exactly);
  `endDate` missing or null means "now".
- A query is a snapshot: events added later are not part of an ongoing scroll (like an
  Elasticsearch scroll), a new query sees them.
- `recordsNumber` is the number of records in that page.
"""

from __future__ import annotations

import bisect
import itertools
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from harmony_pipes._core import hec

US_PER_SEC = hec.US_PER_SEC

SCROLL_NULL = "null"
SCROLL_CONSTANT = "constant-empty-page"


class QueryError(ValueError):
    """A request body the gateway would refuse (HTTP 400)."""


def parse_time_us(value: Any) -> int:
    """ISO 8601 with `Z`, an offset, or naive (= UTC), as epoch microseconds."""
    if not isinstance(value, str) or not value.strip():
        raise QueryError(f"invalid date-time: {value!r}")
    try:
        return hec.parse_iso_us(value)
    except ValueError:
        raise QueryError(f"invalid date-time: {value!r}") from None


def normalize_type(value: Any) -> str:
    """`Suspicious malware` / `Shadow IT` / `DLP` → the wire spelling `suspicious_malware` ..."""
    return hec.type_key(str(value))


def normalize_severity(value: Any) -> str:
    """Ints, numeric strings and names (`low`, `Critical`, `very low`) → "1".."5"."""
    number = hec.parse_severity(value)
    if number is None:
        raise QueryError(f"invalid severity: {value!r}")
    return str(number)


def _string_set(request: dict[str, Any], key: str, norm: Callable[[Any], str] = str) -> frozenset[str] | None:
    values = request.get(key)
    if values is None:
        return None
    if isinstance(values, str | int):
        values = [values]
    if not isinstance(values, list):
        raise QueryError(f"{key} must be an array")
    if not values:
        return None  # an empty filter list filters nothing, like omitting it
    return frozenset(norm(v) for v in values)


@dataclass(frozen=True)
class Query:
    """The filters of one `requestData` (unknown keys are ignored, like the gateway)."""

    start_us: int
    end_us: int
    types: frozenset[str] | None = None
    states: frozenset[str] | None = None
    severities: frozenset[str] | None = None
    saas: frozenset[str] | None = None
    event_ids: frozenset[str] | None = None
    confidence: str | None = None
    description: str | None = None

    @classmethod
    def from_request(cls, request: Any, now_us: int) -> Query:
        if not isinstance(request, dict):
            raise QueryError("requestData must be an object")
        if request.get("startDate") in (None, ""):
            raise QueryError("startDate is required")
        start_us = parse_time_us(request["startDate"])
        end = request.get("endDate")
        end_us = now_us if end in (None, "") else parse_time_us(end)
        confidence = request.get("confidenceIndicator")
        description = request.get("description")
        return cls(
            start_us=start_us,
            end_us=end_us,
            types=_string_set(request, "eventTypes", normalize_type),
            states=_string_set(request, "eventStates", lambda v: str(v).strip().lower()),
            severities=_string_set(request, "severities", normalize_severity),
            saas=_string_set(request, "saas", lambda v: str(v).strip().lower()),
            event_ids=_string_set(request, "eventIds"),
            confidence=str(confidence).strip().lower() if confidence else None,
            description=str(description).lower() if description else None,
        )

    @property
    def has_field_filters(self) -> bool:
        return any(
            f is not None
            for f in (self.types, self.states, self.severities, self.saas, self.event_ids, self.confidence)
        ) or bool(self.description)

    def matches(self, event: dict[str, Any]) -> bool:
        if self.types is not None and normalize_type(event.get("type", "")) not in self.types:
            return False
        if self.states is not None and event.get("state") not in self.states:
            return False
        if self.severities is not None and str(event.get("severity")) not in self.severities:
            return False
        if self.saas is not None and event.get("saas") not in self.saas:
            return False
        if self.event_ids is not None and event.get("eventId") not in self.event_ids:
            return False
        if self.confidence is not None and str(event.get("confidenceIndicator", "")).lower() != self.confidence:
            return False
        return not (self.description and self.description not in str(event.get("description", "")).lower())


@dataclass
class Stored:
    created_us: int
    event: dict[str, Any]
    raw: bytes  # the event serialised once


class EventStore:
    """Events kept sorted by (eventCreated, insertion order); thread-safe."""

    def __init__(self) -> None:
        self._keys: list[tuple[int, int]] = []
        self._items: list[Stored] = []
        self._by_id: dict[str, Stored] = {}
        self._seq = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def add_many(self, events: Iterable[dict[str, Any]]) -> int:
        """Add events (each needs a parseable eventCreated); returns how many were added."""
        prepared = []
        for event in events:
            if not isinstance(event, dict):
                raise QueryError("an event must be a JSON object")
            created_us = parse_time_us(event.get("eventCreated"))
            prepared.append(Stored(created_us, event, orjson.dumps(event)))
        with self._lock:
            if (
                prepared
                and (not self._keys or prepared[0].created_us >= self._keys[-1][0])
                and all(a.created_us <= b.created_us for a, b in itertools.pairwise(prepared))
            ):
                for item in prepared:  # the common case: already in order, after what we hold
                    self._seq += 1
                    self._keys.append((item.created_us, self._seq))
                    self._items.append(item)
            else:
                for item in prepared:
                    self._seq += 1
                    key = (item.created_us, self._seq)
                    at = bisect.bisect_right(self._keys, key)
                    self._keys.insert(at, key)
                    self._items.insert(at, item)
            for item in prepared:
                event_id = item.event.get("eventId")
                if isinstance(event_id, str):
                    self._by_id[event_id] = item
        return len(prepared)

    def get(self, event_id: str) -> Stored | None:
        return self._by_id.get(event_id)

    def select(self, query: Query, limit: int | None = None) -> list[bytes]:
        """Serialised events matching `query`, ascending eventCreated, at most `limit` (oldest first)."""
        with self._lock:
            lo = bisect.bisect_left(self._keys, (query.start_us, -1))
            hi = bisect.bisect_left(self._keys, (query.end_us, -1))
            items = self._items[lo:hi]
        matches = query.matches if query.has_field_filters else None
        out = [s.raw for s in items if matches is None or matches(s.event)]
        if limit is not None and len(out) > limit:
            del out[limit:]  # the gateway's silent truncation
        return out


@dataclass
class Scroll:
    records: list[bytes]
    position: int = 0
    last_used: float = 0.0
    doomed: bool = False  # `invalidate_every`: unknown from its first continuation on


@dataclass
class ScrollRegistry:
    """Open scroll contexts by id; they expire `ttl_secs` after their last use (injected clock)."""

    page_size: int
    style: str = SCROLL_NULL
    ttl_secs: float = 300.0
    clock: Callable[[], float] = field(default=lambda: 0.0)
    invalidate_every: int = 0  # every Nth opened scroll loses its id: 400 Invalid scroll on its next page
    opened: int = 0
    _scrolls: dict[str, Scroll] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        return len(self._scrolls)

    def _expire(self, now: float) -> None:
        for scroll_id in [k for k, s in self._scrolls.items() if now - s.last_used > self.ttl_secs]:
            del self._scrolls[scroll_id]

    def first_page(self, records: list[bytes]) -> tuple[list[bytes], str | None]:
        """Open a scroll over `records`; the first page and the scroll id to hand out."""
        scroll = Scroll(records)
        scroll_id = secrets.token_hex(16)
        with self._lock:
            now = self.clock()
            self._expire(now)
            scroll.last_used = now
            page, more = self._take(scroll)
            if more or self.style == SCROLL_CONSTANT:
                self.opened += 1
                scroll.doomed = bool(self.invalidate_every) and self.opened % self.invalidate_every == 0
                self._scrolls[scroll_id] = scroll
                return page, scroll_id
        return page, None

    def next_page(self, scroll_id: str) -> tuple[list[bytes], str | None] | None:
        """The next page of an open scroll, or None when the id is unknown or expired."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            scroll = self._scrolls.get(scroll_id)
            if scroll is None:
                return None
            if scroll.doomed:  # as if the server had expired it early: the id is dead for good
                del self._scrolls[scroll_id]
                return None
            scroll.last_used = now
            page, more = self._take(scroll)
            if self.style == SCROLL_CONSTANT:
                return page, scroll_id  # the same id forever; the end is an empty page
            if not more:
                del self._scrolls[scroll_id]
                return page, None
            return page, scroll_id

    def drop(self, scroll_id: str) -> None:
        with self._lock:
            self._scrolls.pop(scroll_id, None)

    def _take(self, scroll: Scroll) -> tuple[list[bytes], bool]:
        start = scroll.position
        end = min(start + self.page_size, len(scroll.records))
        scroll.position = end
        return scroll.records[start:end], end < len(scroll.records)
