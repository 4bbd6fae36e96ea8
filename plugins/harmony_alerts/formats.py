"""Alternative shapes of one alert: ECS (Elastic Common Schema) and OCSF Detection Finding.

Each builder takes the native alert (without the original event) and returns the record plus the
key path under which the CLI splices the original event's raw bytes:
native → `checkpoint_harmony`, ECS → `checkpoint_harmony` (like Elastic's `checkpoint_email.*`
namespace), OCSF → `unmapped.checkpoint_harmony`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from harmony_pipes._core.hec import EPOCH, type_key

FORMATS = ("native", "ecs", "ocsf")

# Elastic's checkpoint_email pipeline: category email always, + malware / threat by type.
_ECS_EXTRA_CATEGORY = {
    "malware": "malware",
    "suspicious_malware": "malware",
    "anomaly": "threat",
    "shadow_it": "threat",
}
_ECS_INDICATOR_TYPES = {"anomaly", "shadow_it"}

# OCSF severity_id: 1 Informational, 2 Low, 3 Medium, 4 High, 5 Critical.
_OCSF_STATUS = {
    "new": (1, "New"),
    "detected": (1, "New"),
    "pending": (2, "In Progress"),
    "remediated": (4, "Resolved"),
    "dismissed": (3, "Suppressed"),
    "exception": (3, "Suppressed"),
}
OCSF_VERSION = "1.3.0"


def iso_ms(epoch_ms: int | None) -> str | None:
    """Epoch ms → `YYYY-MM-DDTHH:MM:SS.mmmZ`, None outside years 1..9999 (integer math)."""
    if epoch_ms is None:
        return None
    try:
        moment = EPOCH + timedelta(milliseconds=epoch_ms)
    except OverflowError:  # outside years 1..9999: event_time_ms already maps those to None
        return None
    # not strftime: glibc's %Y does not pad years before 1000 to four digits
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{epoch_ms % 1000:03d}Z"
    )


def to_ecs(alert: dict[str, Any]) -> dict[str, Any]:
    event_type = type_key(alert["event_type"] or "")
    categories = ["email"]
    if event_type in _ECS_EXTRA_CATEGORY:
        categories.append(_ECS_EXTRA_CATEGORY[event_type])
    types = ["info", "indicator"] if event_type in _ECS_INDICATOR_TYPES else ["info"]
    when = iso_ms(alert["timestamp"])
    record: dict[str, Any] = {
        "@timestamp": when,
        "ecs": {"version": "8.17.0"},
        "message": alert["description"],
        "event": {
            "kind": "alert",
            "id": alert["event_id"],
            "created": when,
            "severity": alert["severity"],
            "category": categories,
            "type": types,
            "action": alert["event_state"],
            "reason": ", ".join(alert["alert_reasons"]),
            "url": alert["entity_link"],
            "dataset": "checkpoint_harmony.event",
            "module": "checkpoint_harmony",
            "provider": alert["saas"],
        },
        "rule": {"name": alert["event_type"], "category": alert["confidence"]},
        "email": {"sender": {"address": alert["sender"]}} if alert["sender"] else {},
        "organization": {"id": alert["tenantid"]},
        "observer": {"vendor": "Check Point", "product": "Harmony Email & Collaboration", "type": "email"},
        "labels": {
            "msg_class": alert["msg_class"],
            "severity_label": alert["severity_label"],
            "entity_id": alert["entity_id"],
            "dedupe_key": alert["dedupe_key"],
        },
    }
    return record


def to_ocsf(alert: dict[str, Any]) -> dict[str, Any]:
    """OCSF 1.x Detection Finding (class_uid 2004, activity Create)."""
    severity = alert["severity"]
    status_id, status = _OCSF_STATUS.get(alert["event_state"] or "", (99, "Other"))
    return {
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "time": alert["timestamp"],
        "severity_id": severity if severity is not None else 0,
        "severity": alert["severity_label"] or "Unknown",
        "status_id": status_id,
        "status": status,
        "status_detail": alert["event_state"],
        "confidence": alert["confidence"],
        "message": alert["description"],
        "metadata": {
            "version": OCSF_VERSION,
            "uid": alert["event_id"],
            "tenant_uid": alert["tenantid"],
            "product": {"name": "Harmony Email & Collaboration", "vendor_name": "Check Point"},
            "labels": alert["alert_reasons"],
        },
        "finding_info": {
            "uid": alert["dedupe_key"],
            "title": alert["description"] or alert["event_type"] or "Harmony security event",
            "types": [alert["event_type"]] if alert["event_type"] else [],
            "created_time": alert["timestamp"],
            "src_url": alert["entity_link"],
        },
        "resources": [{"uid": alert["entity_id"], "type": alert["saas"]}] if alert["entity_id"] else [],
        "observables": (
            [{"name": "sender", "type_id": 5, "type": "Email Address", "value": alert["sender"]}]
            if alert["sender"]
            else []
        ),
    }
