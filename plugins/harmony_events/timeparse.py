"""Time values: `--start`/`--end` parsing and the API's wire format, all as epoch microseconds.

Integers compare and subtract cheaply and never mix naive and aware datetimes. `now` is always
injected so the functions stay pure.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from harmony_pipes._core import hec

US_PER_SEC = hec.US_PER_SEC
_EPOCH = hec.EPOCH
_ONE_US = timedelta(microseconds=1)
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class TimeParseError(ValueError):
    """A time option that is neither ISO 8601 nor a relative duration."""


def parse_iso_us(text: str) -> int:
    """ISO 8601 (with `Z`, an offset, or naive = UTC) as epoch microseconds."""
    try:
        return hec.parse_iso_us(text)
    except ValueError as exc:
        raise TimeParseError(f"not an ISO 8601 time: {text!r}") from exc


def to_us(moment: datetime) -> int:
    return (moment - _EPOCH) // _ONE_US


def parse_duration_secs(text: str) -> float | None:
    """`24h`, `30m`, `7d`, `90s`, `2w` as seconds, or None when `text` is not a duration."""
    match = _RELATIVE.match(text)
    if match is None:
        return None
    return float(match.group(1)) * _UNIT_SECS[match.group(2).lower()]


def parse_time_option(text: str, now_us: int) -> int:
    """`--start`/`--end`: a relative duration means that long before `now`; else ISO 8601."""
    secs = parse_duration_secs(text)
    if secs is not None:
        return now_us - int(secs * US_PER_SEC)
    if text.strip().lower() == "now":
        return now_us
    return parse_iso_us(text)


def format_api_time(epoch_us: int) -> str:
    """The wire format sent as startDate/endDate: `2024-10-18T08:00:00.123456Z`."""
    secs, micros = divmod(epoch_us, US_PER_SEC)
    moment = datetime.fromtimestamp(secs, tz=UTC).replace(microsecond=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
