"""Pure event → alert mapping: severity scale, timestamps, the keep policy, alert reasons, and
the facts of the event's `data` sentence (`details`, see entities.py; only for events whose
`data` holds a `#{` placeholder or that carry an `attachmentMd5`).

No I/O and no clock: the CLI feeds parsed events in and gets dicts (or None) back, so every rule
here is tested with plain data and golden fixtures. The original event is *not* copied into the
alert dict; the CLI splices its raw bytes in, which is both faster and byte-exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harmony_pipes._core.hec import SEVERITY_LABELS, SEVERITY_STRINGS, event_time_ms, parse_severity, type_key

from .entities import data_details

MSG_CLASS = "checkpoint_harmony_security_event"
MSG_ORIGIN = {
    "source": "checkpoint_harmony",
    "vendor": "Check Point",
    "product": "Harmony Email & Collaboration",
}
DEFAULT_TYPES = ("phishing", "malware", "alert", "dlp")
DEFAULT_MIN_SEVERITY = 4

_LABEL_OF: dict[int | None, str] = dict(SEVERITY_LABELS)


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


# --dedupe-key: `tenant` (the alert's tenantid) plus the event's own fields, by their API names.
DEFAULT_DEDUPE_KEY = "tenant,eventId"
DEDUPE_FIELDS = (
    "eventId", "customerId", "saas", "entityId", "state", "type", "confidenceIndicator", "eventCreated", "severity",
    "description", "data", "senderAddress", "entityLink", "attachmentMd5",
)  # fmt: skip


class DedupeKey:
    """What makes two alerts the same for `--dedupe-key`: `tenant` plus event fields.

    The key text is `<tenantid>:<value>` with several event fields' values joined by U+001F, so
    the default `tenant,eventId` gives the seed's `<tenantid>:<eventId>` (and the keys a state dir
    already holds stay valid). An event that has none of the event fields is never deduplicated.
    """

    __slots__ = ("default", "event_fields", "with_tenant")

    def __init__(self, fields: Iterable[str]) -> None:
        names = [f.strip() for f in fields if f.strip()]
        unknown = [n for n in names if n != "tenant" and n not in DEDUPE_FIELDS]
        if unknown or not names:
            raise ValueError(f"unknown --dedupe-key field {unknown[0]!r}" if unknown else "--dedupe-key names no field")
        self.with_tenant = "tenant" in names
        self.event_fields = tuple(dict.fromkeys(n for n in names if n != "tenant"))
        self.default = self.with_tenant and self.event_fields == ("eventId",)
        if not self.event_fields:
            raise ValueError("--dedupe-key needs at least one event field (tenant alone would merge every alert)")

    @classmethod
    def parse(cls, text: str) -> DedupeKey:
        return cls(text.split(","))

    @property
    def text(self) -> str:
        """The `--dedupe-key` text `parse` makes this key from again (same fields, same order)."""
        return ",".join((("tenant",) if self.with_tenant else ()) + self.event_fields)

    def key(self, event: dict[str, Any], tenant_id: str | None) -> str | None:
        values = [event.get(name) for name in self.event_fields]
        if all(v is None for v in values):
            return None
        text = "\x1f".join(v if type(v) is str else "" if v is None else _text(v) for v in values)
        return f"{(tenant_id or '') if self.with_tenant else ''}:{text}"


def build_alert(
    event: dict[str, Any], tenant: str | None, policy: KeepPolicy, dedupe_key: DedupeKey | None = None
) -> dict[str, Any] | None:
    """The native alert (DESIGN section 4) without `checkpoint_harmony`, or None when dropped.

    This is the hot path (one call per event): fields are read with plain `get`, the keep
    decision is cached per (type, severity), and only values that are neither str nor None
    (malformed events) take the slow conversion in `_stringify`.
    """
    get = event.get
    raw_severity = get("severity")
    severity = SEVERITY_STRINGS.get(raw_severity) if type(raw_severity) is str else None
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
    if dedupe_key is not None and not dedupe_key.default:
        alert["dedupe_key"] = dedupe_key.key(event, tenant_id)
    elif event_id is not None:
        alert["dedupe_key"] = f"{tenant_id or ''}:{event_id}"
    data = get("data")
    md5 = get("attachmentMd5")
    details = data_details(data) if type(data) is str and "#{" in data else None  # most events: no parse
    has_md5 = type(md5) is str and md5
    if details is not None or has_md5:
        if details is None:
            details = {}
        if has_md5:
            details["attachment_md5"] = md5
        alert["details"] = details
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
