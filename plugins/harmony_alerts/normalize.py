"""Pure event → alert mapping: severity scale, timestamps, the keep policy, alert reasons.

No I/O and no clock: the CLI feeds parsed events in and gets dicts (or None) back, so every rule
here is tested with plain data and golden fixtures. The original event is *not* copied into the
alert dict; the CLI splices its raw bytes in, which is both faster and byte-exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from harmony_pipes.harmony_events.timeparse import event_created_us

MSG_CLASS = "checkpoint_harmony_security_event"
MSG_ORIGIN = {
    "source": "checkpoint_harmony",
    "vendor": "Check Point",
    "product": "Harmony Email & Collaboration",
}
DEFAULT_TYPES = ("phishing", "malware", "alert", "dlp")
DEFAULT_MIN_SEVERITY = 4

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
# the instants an ISO 8601 UTC string can name (years 1..9999): outside them a "timestamp" is
# malformed input, and would crash ISO formatting (ECS) or the 64-bit JSON encoder
MIN_MS = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // _ONE_MS
MAX_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - EPOCH) // _ONE_MS
SEVERITY_LABELS = {1: "Very Low", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
# Names seen on the wire: XSOAR labels, Elastic's severity_enum and the severityChange action.
_SEVERITY_NAMES = {
    "very low": 1,
    "very_low": 1,
    "lowest": 1,
    "low": 2,
    "medium": 3,
    "high": 4,
    "critical": 5,
    "highest": 5,
}
_SEVERITY_STRINGS = {str(n): n for n in SEVERITY_LABELS}
_LABEL_OF: dict[int | None, str] = dict(SEVERITY_LABELS)


def parse_severity(value: Any) -> int | None:
    """ "1".."5", 1..5, or a name (Very Low/Low/Medium/High/Critical/Highest) → 1..5, else None."""
    found = _SEVERITY_STRINGS.get(value) if type(value) is str else None
    if found is not None:
        return found
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = int(value)
        return number if number == value and 1 <= number <= 5 else None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _SEVERITY_NAMES:
            return _SEVERITY_NAMES[text]
        if text.isascii() and text.isdigit() and 1 <= int(text) <= 5:  # "²".isdigit() is True
            return int(text)
    return None


def event_time_ms(value: Any) -> int | None:
    """eventCreated (ISO 8601 with or without fraction/offset, naive = UTC) → epoch ms.

    None when missing, unparseable, or outside years 1..9999 UTC.
    """
    if type(value) is str:
        try:  # the C parser, then exact integer math (float timestamps drift past 2255)
            moment = datetime.fromisoformat(value)
        except ValueError:
            micros = event_created_us(value)
            found = None if micros is None else micros // 1000
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            found = (moment - EPOCH) // _ONE_MS
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not MIN_MS <= value <= MAX_MS:  # also NaN, ±inf, -1e306 (whose * 1000 is -inf)
            return None
        # epoch seconds or milliseconds; anything after 1973 in ms is > 1e11
        found = int(value) if value > 1e11 else int(value * 1000)
    else:
        return None
    return found if found is not None and MIN_MS <= found <= MAX_MS else None


def type_key(event_type: str) -> str:
    """`Suspicious malware` (Elastic's spelling) and `suspicious_malware` (the API's) are one type."""
    return "_".join(event_type.lower().split())


class KeepPolicy:
    """Which events are alerts: type in `types`, or severity >= `min_severity`, or everything.

    The reason strings are built once here, not per event.
    """

    __slots__ = ("_cache", "_severity_reason", "_type_reasons", "keep_all", "min_severity", "types")

    def __init__(
        self, types: Iterable[str] = DEFAULT_TYPES, min_severity: int = DEFAULT_MIN_SEVERITY, keep_all: bool = False
    ) -> None:
        self.types = frozenset(type_key(t) for t in types if t.strip())
        self.min_severity = min_severity
        self.keep_all = keep_all
        self._type_reasons = {t: f"type:{t}" for t in self.types}
        self._severity_reason = f"severity>={min_severity}"
        self._cache: dict[tuple[Any, int | None], tuple[str, ...] | None] = {}

    def cached_reasons(self, event_type: Any, severity: int | None) -> tuple[str, ...] | None:
        """`reasons` memoised per (type, severity): there are only a few dozen combinations."""
        key = (event_type, severity) if type(event_type) is str or event_type is None else None
        if key is None:
            found = self.reasons(event_type, severity)
            return None if found is None else tuple(found)
        try:
            return self._cache[key]
        except KeyError:
            found = self.reasons(event_type, severity)
            if len(self._cache) < 4096:  # a flood of distinct junk types must not grow it forever
                self._cache[key] = None if found is None else tuple(found)
            return None if found is None else tuple(found)

    @classmethod
    def from_options(cls, types: Iterable[str], min_severity: int, keep_all: bool) -> KeepPolicy:
        return cls(types, min_severity, keep_all)

    def reasons(self, event_type: Any, severity: int | None) -> list[str] | None:
        """Why this event is kept (`["type:phishing", "severity>=4"]`), or None to drop it."""
        reasons = []
        if type(event_type) is str:
            type_reason = self._type_reasons.get(event_type) or self._type_reasons.get(type_key(event_type))
            if type_reason is not None:
                reasons.append(type_reason)
        if severity is not None and severity >= self.min_severity:
            reasons.append(self._severity_reason)
        if not reasons:
            if not self.keep_all:
                return None
            reasons.append("all")
        return reasons


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def build_alert(event: dict[str, Any], tenant: str | None, policy: KeepPolicy) -> dict[str, Any] | None:
    """The native alert (DESIGN section 4) without `checkpoint_harmony`, or None when dropped.

    This is the hot path (one call per event): fields are read with plain `get`, the keep
    decision is cached per (type, severity), and only values that are neither str nor None
    (malformed events) take the slow conversion in `_stringify`.
    """
    get = event.get
    raw_severity = get("severity")
    severity = _SEVERITY_STRINGS.get(raw_severity) if type(raw_severity) is str else None
    if severity is None and raw_severity is not None:
        severity = parse_severity(raw_severity)
    event_type = get("type")
    reasons = policy.cached_reasons(event_type, severity)
    if reasons is None:
        return None
    tenant_id = tenant or get("customerId")
    event_id = get("eventId")
    event_state = get("state")
    saas = get("saas")
    confidence = get("confidenceIndicator")
    description = get("description")
    sender = get("senderAddress")
    entity_id = get("entityId")
    entity_link = get("entityLink")
    alert = {
        "timestamp": event_time_ms(get("eventCreated")),
        "msg_class": MSG_CLASS,
        "msg_origin": MSG_ORIGIN,
        "tenantid": tenant_id,
        "event_id": event_id,
        "event_type": event_type,
        "event_state": event_state,
        "saas": saas,
        "confidence": confidence,
        "severity": severity,
        "severity_label": _LABEL_OF.get(severity),
        "description": description,
        "sender": sender,
        "entity_id": entity_id,
        "entity_link": entity_link,
        "alert_reasons": list(reasons),
        "dedupe_key": None,
    }
    if not (
        (type(tenant_id) is str or tenant_id is None)
        and (type(event_id) is str or event_id is None)
        and (type(event_type) is str or event_type is None)
        and (type(event_state) is str or event_state is None)
        and (type(saas) is str or saas is None)
        and (type(confidence) is str or confidence is None)
        and (type(description) is str or description is None)
        and (type(sender) is str or sender is None)
        and (type(entity_id) is str or entity_id is None)
        and (type(entity_link) is str or entity_link is None)
    ):
        _stringify(alert)
        tenant_id, event_id = alert["tenantid"], alert["event_id"]
    if event_id is not None:
        alert["dedupe_key"] = f"{tenant_id or ''}:{event_id}"
    return alert


_TEXT_FIELDS = (
    "tenantid",
    "event_id",
    "event_type",
    "event_state",
    "saas",
    "confidence",
    "description",
    "sender",
    "entity_id",
    "entity_link",
)


def _stringify(alert: dict[str, Any]) -> None:
    """Malformed events (numbers, lists where text belongs): the text fields become strings."""
    for name in _TEXT_FIELDS:
        value = alert[name]
        if value is not None and type(value) is not str:
            alert[name] = _text(value)
