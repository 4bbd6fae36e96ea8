"""Object keys: record time extraction and the key template (pure; no clock, no I/O).

The default key follows the Harness seed, `<t1>_<t2>_<t3>` (earliest record time, latest record
time, write time, epoch ms) under a Hive-style `dt=` partition, plus a content hash so two
different objects never share a key and a retried object always gets the same one.

`{date}`, `{hour}` and `{field:NAME}` are *partition* placeholders: each distinct value opens its
own batch, so an object under `dt=2024-05-01/` only holds records whose own time is on that day
(Fluent Bit keys use the first record's time for the whole file; users complained).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DEFAULT_KEY_TEMPLATE = "{prefix}dt={date}/{t1}_{t2}_{t3}_{hash}{ext}"
DEFAULT_TIME_FIELDS = ("timestamp", "auditEventTime", "eventCreated")
HASH_CHARS = 16
FIELD_VALUE_MAX_CHARS = 128
MISSING_FIELD_VALUE = "unknown"

_PLACEHOLDER_RE = re.compile(r"\{([a-z0-9]+)(?::([^{}]+))?\}")
_SIMPLE = {"prefix", "t1", "t2", "t3", "date", "hour", "hash", "ext"}
_UNSAFE_CHARS_RE = re.compile(r"[^A-Za-z0-9._=@+-]")

# Epoch numbers: below 1e11 they are seconds (until year 5138), below 1e14 ms, else µs / ns.
_SECS_LIMIT = 1e11
_MS_LIMIT = 1e14
_US_LIMIT = 1e17


class KeyTemplateError(ValueError):
    """The template names an unknown placeholder or is malformed."""


def parse_time_ms(value: Any) -> int | None:
    """Epoch ms from an epoch number (s, ms, µs or ns, guessed by magnitude) or an ISO 8601 string."""
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
    if number != number or number < 0:  # NaN or negative
        return None
    if number < _SECS_LIMIT:
        return int(number * 1000)
    if number < _MS_LIMIT:
        return int(number)
    if number < _US_LIMIT:
        return int(number / 1000)
    return int(number / 1_000_000)


def _parse_iso_ms(text: str) -> int | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


class TimeExtractor:
    """Finds a record's time: `--time-field` (dotted path) or the first default field present."""

    def __init__(self, time_field: str | None = None) -> None:
        if time_field:
            self.paths: tuple[tuple[str, ...], ...] = (tuple(time_field.split(".")),)
        else:
            self.paths = tuple((name,) for name in DEFAULT_TIME_FIELDS)
        self._first_key = self.paths[0][0] if len(self.paths[0]) == 1 else None

    def __call__(self, record: Mapping[str, Any], arrival_ms: int) -> int:
        # per record on the sink's hot path: the common case (first field, epoch ms) first
        key = self._first_key
        if key is not None:
            value = record.get(key)
            if type(value) is int and _SECS_LIMIT <= value < _MS_LIMIT:
                return value
        return self._search(record, arrival_ms)

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


def format_iso_ms(epoch_ms: int) -> str:
    """`2024-05-01T12:00:00.123Z` — the wire format for times (DESIGN section 4)."""
    stamp = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


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
        text = datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%d")
        _DAY_CACHE[day] = text
    return text


def date_hour(epoch_ms: int) -> tuple[str, str]:
    return day_of(epoch_ms), _HOURS[(epoch_ms // _HOUR_MS) % 24]


def safe_key_part(value: Any) -> str:
    """A record-controlled value made safe for a key: no `/`, no `..`, bounded length."""
    if value is None:
        return MISSING_FIELD_VALUE
    text = value if isinstance(value, str) else str(value)
    text = _UNSAFE_CHARS_RE.sub("_", text)[:FIELD_VALUE_MAX_CHARS]
    if not text or set(text) <= {"."}:
        return MISSING_FIELD_VALUE
    return text


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
