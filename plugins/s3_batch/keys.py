"""Object keys: record time extraction and the key template (pure; no clock, no I/O).

The default key follows the Harness seed, `<t1>_<t2>_<t3>` (earliest record time, latest record
time, write time, epoch ms) under a Hive-style `dt=` partition, plus a content hash so two
different objects never share a key and a retried object always gets the same one.

`{date}`, `{hour}` and `{field:NAME}` are *partition* placeholders: each distinct value opens its
own batch, so an object under `dt=2024-05-01/` only holds records whose own time is on that day
(Fluent Bit keys use the first record's time for the whole file; users complained).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import methodcaller
from typing import Any

import orjson

DEFAULT_KEY_TEMPLATE = "{prefix}dt={date}/{t1}_{t2}_{t3}_{hash}{ext}"
DEFAULT_TIME_FIELDS = ("timestamp", "auditEventTime", "eventCreated")
HASH_CHARS = 16
FIELD_VALUE_MAX_CHARS = 128
MISSING_FIELD_VALUE = "unknown"
MAX_KEY_BYTES = 1024  # S3's limit
MAX_SEGMENT_BYTES = 255  # a file name (NAME_MAX) in a file:// store
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

_PLACEHOLDER_RE = re.compile(r"\{([a-z0-9]+)(?::([^{}]+))?\}")
_SIMPLE = {"prefix", "t1", "t2", "t3", "date", "hour", "hash", "ext"}
_UNSAFE_CHARS_RE = re.compile(r"[^A-Za-z0-9._=@+-]")

# Epoch numbers: below 1e11 they are seconds (until year 5138), below 1e14 ms, else µs / ns.
_SECS_LIMIT = 1e11
_MS_LIMIT = 1e14
_US_LIMIT = 1e17

_INT_ONLY = {int}
# of_lines tries its shortcut again after this many chunks without it (once it failed this often)
SHORTCUT_TRIES = 2
SHORTCUT_RETRY = 64

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
# The instants a key and a receipt can name: years 1..9999 UTC. A record time outside them
# (1e308, "Infinity", 9999-12-31T23:59:59-14:00 ...) is not a time: the record gets its arrival
# time, like a record without one (a value from the record must never stop the sink).
MIN_TIME_MS = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _ONE_MS
MAX_TIME_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - _EPOCH) // _ONE_MS


class KeyTemplateError(ValueError):
    """The template names an unknown placeholder or is malformed."""


def parse_time_ms(value: Any) -> int | None:
    """Epoch ms from an epoch number (s, ms, µs or ns, guessed by magnitude) or an ISO 8601 string.

    None for anything else, and for every value outside years 1..9999 UTC (infinities, NaN,
    1e308): the caller falls back to arrival time.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            return _parse_iso_ms(text)
    else:
        return None
    if not math.isfinite(number) or number < 0:  # NaN, infinities, negative
        return None
    if number < _SECS_LIMIT:
        found = int(number * 1000)
    elif number < _MS_LIMIT:
        found = int(number)
    elif number < _US_LIMIT:
        found = int(number / 1000)
    else:
        found = int(number / 1_000_000)
    return found if found <= MAX_TIME_MS else None


def _parse_iso_ms(text: str) -> int | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:  # exact integer math; an offset can push year 1 / 9999 out of range
        found = (parsed - _EPOCH) // _ONE_MS
    except OverflowError:
        return None
    return found if MIN_TIME_MS <= found <= MAX_TIME_MS else None


class TimeExtractor:
    """Finds a record's time: `--time-field` (dotted path) or the first default field present."""

    def __init__(self, time_field: str | None = None) -> None:
        if time_field:
            self.paths: tuple[tuple[str, ...], ...] = (tuple(time_field.split(".")),)
        else:
            self.paths = tuple((name,) for name in DEFAULT_TIME_FIELDS)
        self._first_key = self.paths[0][0] if len(self.paths[0]) == 1 else None
        self._shortcut_misses = 0  # of_lines: chunks in a row whose times were not all epoch ms

    def __call__(self, record: Mapping[str, Any], arrival_ms: int) -> int:
        # per record on the sink's hot path: the common case (first field, epoch ms) first
        key = self._first_key
        if key is not None:
            value = record.get(key)
            if type(value) is int and _SECS_LIMIT <= value < _MS_LIMIT:
                return value
        return self._search(record, arrival_ms)

    def of_lines(self, lines: Sequence[bytes], arrival_ms: int) -> list[int] | None:
        """The time of each line's record, or None unless every line is a JSON object (what the
        sink's per-record path would take; a chunk with anything else goes through that path,
        bad lines included).

        C calls over the chunk, no Python code per record, in the common case (every time epoch
        ms in the first field); the records are not kept (freed one by one, they cost less)."""
        loads = orjson.loads
        key = self._first_key
        try:
            if key is not None and self._shortcut_misses < SHORTCUT_TRIES:
                times = list(map(methodcaller("get", key), map(loads, lines)))  # AttributeError: not an object
                if set(map(type, times)) == _INT_ONLY and min(times) >= _SECS_LIMIT and max(times) < _MS_LIMIT:
                    self._shortcut_misses = 0
                    return times
                self._shortcut_misses += 1  # other times: parsing twice would cost more than it saves
            elif key is not None:
                self._shortcut_misses += 1
                if self._shortcut_misses >= SHORTCUT_RETRY:
                    self._shortcut_misses = 0
            if key is not None:  # `self` calls record.get(key): AttributeError for anything but an object
                return list(map(self, map(loads, lines), repeat(arrival_ms)))
            times = []
            for record in map(loads, lines):
                if type(record) is not dict:
                    return None
                times.append(self(record, arrival_ms))
            return times
        except (orjson.JSONDecodeError, AttributeError, TypeError):  # TypeError: an oversized line
            return None

    def of_object_lines(self, lines: Sequence[bytes], arrival_ms: int) -> list[int] | None:
        """`of_lines` for lines known to be JSON objects (a stage of this process serialized them,
        `Processor.emit_lines`): a line that starts with the time field, holding epoch ms, and
        names that field nowhere else gives its time without being parsed (a key's quotes cannot
        occur unescaped inside a string, so one occurrence is the top-level key, and the value
        read is the one a parser keeps). Any other line is parsed."""
        key = self._first_key
        if key is None or not key.isascii() or not key.isprintable() or '"' in key or "\\" in key:
            return self.of_lines(lines, arrival_ms)
        needle = f'"{key}":'.encode()
        prefix = b"{" + needle
        start = len(prefix)
        loads = orjson.loads
        times: list[int] = []
        append = times.append
        for line in lines:
            if line.startswith(prefix) and line.count(needle) == 1:
                value = line[start : line.find(b",", start)]
                if value.isdigit():
                    found_ms = int(value)
                    if _SECS_LIMIT <= found_ms < _MS_LIMIT:
                        append(found_ms)
                        continue
            append(self(loads(line), arrival_ms))
        return times

    def _search(self, record: Mapping[str, Any], arrival_ms: int) -> int:
        for path in self.paths:
            if len(path) == 1:
                value: Any = record.get(path[0])
            else:
                value = record
                for part in path:
                    if not isinstance(value, Mapping):
                        value = None
                        break
                    value = value.get(part)
            if value is not None:
                if type(value) is int and _SECS_LIMIT <= value < _MS_LIMIT:
                    return value  # epoch ms, the common case: no conversion needed
                parsed = parse_time_ms(value)
                if parsed is not None:
                    return parsed
        return arrival_ms


def _moment(epoch_ms: int) -> datetime:
    """The UTC datetime of an epoch-ms time, clamped to years 1..9999 (never raises)."""
    return _EPOCH + timedelta(milliseconds=min(max(epoch_ms, MIN_TIME_MS), MAX_TIME_MS))


def format_iso_ms(epoch_ms: int) -> str:
    """`2024-05-01T12:00:00.123Z` — the wire format for times (DESIGN section 4)."""
    m = _moment(epoch_ms)
    # not strftime: glibc's %Y does not pad years before 1000 to four digits
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}."
        f"{m.microsecond // 1000:03d}Z"
    )


_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
_DAY_CACHE: dict[int, str] = {}
_HOURS = tuple(f"{h:02d}" for h in range(24))
_DAY_PARTITIONS: dict[int, tuple[str]] = {}


def day_of(epoch_ms: int) -> str:
    """`YYYY-MM-DD` (UTC) of an epoch-ms time; cached per day (strftime per record is slow)."""
    day = epoch_ms // _DAY_MS
    text = _DAY_CACHE.get(day)
    if text is None:
        if len(_DAY_CACHE) > 4096:
            _DAY_CACHE.clear()
        m = _moment(day * _DAY_MS)
        text = f"{m.year:04d}-{m.month:02d}-{m.day:02d}"
        _DAY_CACHE[day] = text
    return text


def date_hour(epoch_ms: int) -> tuple[str, str]:
    return day_of(epoch_ms), _HOURS[(epoch_ms // _HOUR_MS) % 24]


def safe_key_part(value: Any) -> str:
    """A record-controlled value made safe for a key: no `/`, never empty, bounded length, and
    never starting with `.` (so never `..` nor a hidden name like the file store's scratch
    folder `.s3-batch-tmp`, which the next start empties)."""
    if value is None:
        return MISSING_FIELD_VALUE
    text = value if isinstance(value, str) else str(value)
    text = _UNSAFE_CHARS_RE.sub("_", text)[:FIELD_VALUE_MAX_CHARS]
    if not text or set(text) <= {"."}:
        return MISSING_FIELD_VALUE
    if text[0] == ".":
        text = "_" + text[1:]
    return text


def key_problem(key: str, *, max_segment_bytes: int | None = None) -> str | None:
    """Why `key` cannot be an object key in both S3 and a file:// store; None when it can.

    Refused: empty keys, absolute paths, `.` / `..` / empty segments (a file store would leave
    its folder or merge two keys), segments starting with `.` (hidden names are the stores'
    scratch space), a trailing `/` (a folder, not an object), control characters, more than
    1024 bytes (S3), and with `max_segment_bytes` longer file names.
    """
    if not key:
        return "the key is empty"
    if key.startswith("/"):
        return "the key starts with '/' (an absolute path)"
    if key.endswith("/"):
        return "the key ends with '/' (a folder, not an object)"
    if _CONTROL_RE.search(key):
        return "the key contains a control character"
    size = len(key.encode())
    if size > MAX_KEY_BYTES:
        return f"the key can be {size} bytes, longer than S3's {MAX_KEY_BYTES}"
    for segment in key.split("/"):
        if not segment:
            return "the key has an empty path segment ('//')"
        if segment in (".", ".."):
            return f"the key has a {segment!r} path segment (it would leave the store's folder)"
        if segment[0] == ".":
            return (
                f"a path segment starts with '.' ({segment[:40]!r}): hidden names are the stores' scratch "
                "space (.s3-batch-tmp)"
            )
        if max_segment_bytes is not None and len(segment.encode()) > max_segment_bytes:
            size = len(segment.encode())
            return f"a path segment can be {size} bytes, longer than a file name may be ({max_segment_bytes})"
    return None


@dataclass(frozen=True)
class KeyTemplate:
    """A parsed `--key-template`; `partition_of` gives the batch partition of a record."""

    template: str
    field_paths: tuple[tuple[str, ...], ...]
    uses_date: bool
    uses_hour: bool
    uses_hash: bool
    _date_only: bool = field(init=False, repr=False, compare=False, default=False)  # the default template

    @classmethod
    def parse(cls, template: str) -> KeyTemplate:
        fields: list[tuple[str, ...]] = []
        names: set[str] = set()
        for match in _PLACEHOLDER_RE.finditer(template):
            name, arg = match.group(1), match.group(2)
            if name == "field":
                if not arg:
                    raise KeyTemplateError("{field:NAME} needs a field name")
                path = tuple(arg.split("."))
                if path not in fields:
                    fields.append(path)
            elif name in _SIMPLE and arg is None:
                names.add(name)
            else:
                raise KeyTemplateError(f"unknown placeholder {match.group(0)}")
        stripped = _PLACEHOLDER_RE.sub("", template)
        if "{" in stripped or "}" in stripped:
            raise KeyTemplateError(f"unbalanced braces in {template!r}")
        if template.startswith("/"):
            raise KeyTemplateError("a key must not start with '/'")
        return cls(template, tuple(fields), "date" in names, "hour" in names, "hash" in names)

    def check(self, *, prefixes: Sequence[str], ext: str, file_store: bool) -> None:
        """Refuse (KeyTemplateError) a template whose keys can be invalid in some destination.

        Keys are rendered with the longest values each placeholder can take (field values are
        `safe_key_part`s: never `/`, never a leading `.`), so a key that passes here passes for
        every record. `{hash}` is required: without it two objects can get the same key and the
        second overwrites the first.
        """
        if not self.uses_hash:
            raise KeyTemplateError("no {hash}: two objects could get the same key and overwrite each other")
        widest = "9" * 15  # the longest epoch-ms text (year 1 is -62135596800000)
        for prefix in prefixes:
            key = self.render(
                prefix=prefix,
                first_ms=MAX_TIME_MS,
                last_ms=MAX_TIME_MS,
                written_ms=MAX_TIME_MS,
                sha256_hex="f" * 64,
                ext=ext,
                field_values=["x" * FIELD_VALUE_MAX_CHARS] * len(self.field_paths),
            ).replace(str(MAX_TIME_MS), widest)
            problem = key_problem(key, max_segment_bytes=MAX_SEGMENT_BYTES if file_store else None)
            if problem is not None:
                shown = key if len(key) <= 80 else key[:77] + "..."
                raise KeyTemplateError(f"{problem}, e.g. {shown!r}")

    def __post_init__(self) -> None:
        object.__setattr__(self, "_date_only", self.uses_date and not self.field_paths and not self.uses_hour)

    def partition_of(self, record: Mapping[str, Any], record_ms: int) -> tuple[str, ...]:
        """The values that must be equal for two records to share an object."""
        if self._date_only:  # the default template: per record on the sink's hot path
            day = record_ms // _DAY_MS
            part = _DAY_PARTITIONS.get(day)
            if part is None:
                if len(_DAY_PARTITIONS) > 4096:
                    _DAY_PARTITIONS.clear()
                part = _DAY_PARTITIONS[day] = (day_of(record_ms),)
            return part
        if not self.field_paths and not self.uses_hour:
            return (day_of(record_ms),) if self.uses_date else ()
        parts: list[str] = []
        for path in self.field_paths:
            value: Any = record
            for part in path:
                value = value.get(part) if isinstance(value, Mapping) else None
            parts.append(safe_key_part(value))
        if self.uses_date:
            parts.append(day_of(record_ms))
        if self.uses_hour:
            parts.append(_HOURS[(record_ms // _HOUR_MS) % 24])
        return tuple(parts)

    def render(
        self,
        *,
        prefix: str,
        first_ms: int,
        last_ms: int,
        written_ms: int,
        sha256_hex: str,
        ext: str,
        field_values: Sequence[str] = (),
    ) -> str:
        """The key of one object; `field_values` are the first len(field_paths) partition parts."""
        day, hour = date_hour(first_ms)
        values = {
            "prefix": prefix,
            "t1": str(first_ms),
            "t2": str(last_ms),
            "t3": str(written_ms),
            "date": day,
            "hour": hour,
            "hash": sha256_hex[:HASH_CHARS],
            "ext": ext,
        }
        fields = {".".join(path): value for path, value in zip(self.field_paths, field_values, strict=False)}

        def substitute(match: re.Match[str]) -> str:
            name, arg = match.group(1), match.group(2)
            if name == "field":
                return fields.get(arg, MISSING_FIELD_VALUE)
            return values[name]

        return _PLACEHOLDER_RE.sub(substitute, self.template)
