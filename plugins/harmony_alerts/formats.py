"""Alternative shapes of one alert: ECS (Elastic Common Schema) and OCSF 1.3 Detection Finding.

Each builder takes the native alert (without the original event, with its parsed `details`) and
the event, and returns the record; the CLI splices the original event's raw bytes in under
`checkpoint_harmony` (ECS, like Elastic's `checkpoint_email.*` namespace) or
`unmapped.checkpoint_harmony` (OCSF).

ECS follows Elastic's `checkpoint_email` ingest pipeline: every field it sets from an event gets
the same value here (docs/harmony-alerts.md has the side-by-side table and the few deliberate
differences), plus what it leaves out where the event has it (the attachment's MD5, a login's
address and country, the scan verdict, the account of shadow-IT, DLP and geo-suspicious events).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from harmony_pipes._core.hec import ACCOUNT_TYPES, EPOCH, EVENT_TYPE_LABELS, MALWARE_TYPES, type_key

FORMATS = ("native", "ecs", "ocsf")
ECS_VERSION = "8.17.0"
OCSF_VERSION = "1.3.0"
PRODUCT = "Harmony Email & Collaboration"
VENDOR = "Check Point"

# The sentence shapes whose recipient Elastic's grok reaches (patterns 1-4), and whose account
# (pattern 5): related.user lists those first, in Elastic's order, then the ones it misses.
_ELASTIC_ACCOUNT_SHAPES = frozenset({"geo_first_login"})


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


def _str(value: Any) -> str | None:
    return value if type(value) is str and value else None


def _address(email: str) -> dict[str, str]:
    """ECS user fields of an address, split as Elastic's dissect `%{name}@%{domain}` does (at the
    first `@`; no `@`: the address alone; empty parts dropped, as its null-dropping script does)."""
    out = {"email": email}
    name, at, domain = email.partition("@")
    if at:
        if name:
            out["name"] = name
        if domain:
            out["domain"] = domain
    return out


def _prune(value: Any) -> Any:
    """Drop None, "" and empty containers recursively (Elastic's pipeline does the same)."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v is not None and v != "" and v != {} and v != []}
    if isinstance(value, list):
        return [v for v in (_prune(v) for v in value) if v is not None and v != "" and v != {} and v != []]
    return value


def _append_unique(items: list[str], value: str | None) -> None:
    if value and value not in items:
        items.append(value)


# -- ECS -----------------------------------------------------------------------------------------


def to_ecs(alert: dict[str, Any], event: dict[str, Any], now_ms: int = 0) -> dict[str, Any]:
    """The ECS record. `@timestamp` is the event's creation time; for an event whose eventCreated
    is unreadable, `now_ms` (an Elasticsearch data stream refuses a document without one)."""
    event_type = type_key(alert["event_type"] or "")
    categories = ["email"]
    if event_type in MALWARE_TYPES:  # Elastic tests 'suspicious malware' (a space); the API sends _
        categories.append("malware")
    elif event_type in ACCOUNT_TYPES:
        categories.append("threat")
    types = ["info", "indicator"] if event_type in ACCOUNT_TYPES else ["info"]
    when = iso_ms(alert["timestamp"])
    details = alert.get("details") or {}
    shape = details.get("shape")
    sender = alert["sender"]
    recipient = details.get("recipient")
    user = details.get("user")
    scan = details.get("scan") or {}
    related: list[str] = []
    _append_unique(related, recipient)
    if shape in _ELASTIC_ACCOUNT_SHAPES:
        _append_unique(related, user)
    _append_unique(related, sender)
    _append_unique(related, user)  # the accounts Elastic's grok does not reach
    ips = [login["ip"] for login in details.get("logins", ()) if "ip" in login] or (
        [details["ip"]] if "ip" in details else []
    )
    md5 = details.get("attachment_md5")
    record: dict[str, Any] = {
        "@timestamp": when or iso_ms(now_ms),
        "ecs": {"version": ECS_VERSION},
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
        "rule": {
            "name": scan.get("verdict") or EVENT_TYPE_LABELS.get(event_type) or alert["event_type"],
            "category": alert["event_type"],
            "ruleset": scan.get("engine"),
        },
        "email": {
            "sender": {"address": sender},
            "subject": details.get("subject"),
            "to": {"address": [recipient] if recipient else None},
            "local_id": details.get("email_id"),
            "attachments": [{"file": {"hash": {"md5": md5}}}] if md5 else None,
        },
        "source": {
            "user": _address(sender) if sender else None,
            "ip": details.get("ip"),
            "geo": {"country_name": details.get("country")},
        },
        "destination": {"user": _address(recipient) if recipient else None},
        "user": {**_address(user), "id": details.get("user_id")} if user else None,
        "related": {"user": related, "ip": ips},
        "organization": {"name": _str(event.get("customerId")), "id": alert["tenantid"]},
        "observer": {"vendor": VENDOR, "product": PRODUCT, "type": "email"},
        "labels": {
            "msg_class": alert["msg_class"],
            "severity_label": alert["severity_label"],
            "entity_id": alert["entity_id"],
            "dedupe_key": alert["dedupe_key"],
            "confidence_indicator": alert["confidence"],
            "user_action": details.get("action"),
        },
    }
    return _prune(record)


# -- OCSF ----------------------------------------------------------------------------------------

# OCSF 1.3 base event severity_id (its captions) from the HEC severity 1..5.
OCSF_SEVERITY = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
# Finding status_id from the HEC state: being worked on → In Progress; dismissed or excepted →
# Suppressed (reviewed, not acted on); remediated → Resolved.
OCSF_STATUS = {
    "new": (1, "New"),
    "detected": (1, "New"),
    "in_progress": (2, "In Progress"),
    "pending": (2, "In Progress"),
    "remediated": (4, "Resolved"),
    "dismissed": (3, "Suppressed"),
    "exception": (3, "Suppressed"),
}
# confidence_id from confidenceIndicator: a verdict (malicious) is High, a suspicion or a detection
# by a heuristic engine Medium, a user's report Low.
OCSF_CONFIDENCE = {
    "malicious": (3, "High"),
    "malicious_url": (3, "High"),
    "suspicious": (2, "Medium"),
    "suspicious_phishing": (2, "Medium"),
    "detected": (2, "Medium"),
    "alert": (1, "Low"),
}
# Observable type_id (OCSF 1.x dictionary types) and their captions.
_EMAIL_ADDRESS, _IP_ADDRESS, _URL_STRING, _HASH, _RESOURCE_UID = 5, 2, 6, 8, 10
OBSERVABLE_TYPES = {2: "IP Address", 5: "Email Address", 6: "URL String", 8: "Hash", 10: "Resource UID"}


def _observable(name: str, type_id: int, value: str) -> dict[str, Any]:
    return {"name": name, "type_id": type_id, "type": OBSERVABLE_TYPES[type_id], "value": value}


def _ocsf_user(email: str, uid: str | None) -> dict[str, Any]:
    user = {"name": email, "email_addr": email} if "@" in email else {"name": email}
    if uid:
        user["uid"] = uid
    return user


def to_ocsf(alert: dict[str, Any], event: dict[str, Any], now_ms: int = 0) -> dict[str, Any]:
    """OCSF 1.3 Detection Finding (class_uid 2004, activity Create). `time` is the event's
    creation time; for an event whose eventCreated is unreadable, `now_ms` (OCSF requires it)."""
    severity = alert["severity"] or 0
    state = alert["event_state"]
    if state is None:
        status_id, status = 0, "Unknown"
    else:
        status_id, status = OCSF_STATUS.get(state, (99, state))
    confidence_value = alert["confidence"]
    if confidence_value is None:
        confidence_id, confidence = 0, "Unknown"
    else:
        confidence_id, confidence = OCSF_CONFIDENCE.get(type_key(confidence_value), (99, confidence_value))
    details = alert.get("details") or {}
    sender, recipient, user = alert["sender"], details.get("recipient"), details.get("user")
    account_event = type_key(alert["event_type"] or "") in ACCOUNT_TYPES
    evidence: dict[str, Any] = {}
    if sender and recipient and "@" in sender:  # OCSF 1.3 email: `from` and `to` are required
        evidence["email"] = _prune(
            {"from": sender, "to": [recipient], "subject": details.get("subject"), "uid": details.get("email_id")}
        )
    actor = user if account_event and user else sender
    if actor:
        evidence["actor"] = {"user": _ocsf_user(actor, details.get("user_id") if actor == user else None)}
    target = recipient or (user if not account_event else None)
    if target:
        evidence["user"] = _ocsf_user(target, details.get("recipient_id") if target == recipient else None)
    if "ip" in details:
        evidence["src_endpoint"] = {"ip": details["ip"]}
    extra = {k: details[k] for k in ("action", "country", "app", "leak", "logins") if k in details}
    if extra:  # facts OCSF has no attribute for (a country without its ISO code, the app, ...)
        evidence["data"] = extra
    observables: list[dict[str, Any]] = []
    for name, value in (
        ("evidences.actor.user.email_addr", evidence.get("actor", {}).get("user", {}).get("email_addr")),
        ("evidences.user.email_addr", evidence.get("user", {}).get("email_addr")),
    ):
        if value:
            observables.append(_observable(name, _EMAIL_ADDRESS, value))
    for login in details.get("logins") or ([{"ip": details["ip"]}] if "ip" in details else []):
        if "ip" in login:
            observables.append(_observable("evidences.src_endpoint.ip", _IP_ADDRESS, login["ip"]))
    if details.get("attachment_md5"):
        observables.append(_observable("unmapped.checkpoint_harmony.attachmentMd5", _HASH, details["attachment_md5"]))
    if alert["entity_link"]:
        observables.append(_observable("finding_info.src_url", _URL_STRING, alert["entity_link"]))
    if alert["entity_id"]:
        observables.append(_observable("resources.uid", _RESOURCE_UID, alert["entity_id"]))
    scan = details.get("scan") or {}
    finding_info: dict[str, Any] = {
        "uid": alert["dedupe_key"] or alert["event_id"] or "",
        "title": alert["description"] or alert["event_type"] or "Harmony security event",
        "types": [alert["event_type"]] if alert["event_type"] else [],
        "created_time": alert["timestamp"],
        "src_url": alert["entity_link"],
    }
    if scan.get("verdict"):
        # the verdict and the engine that gave it; type_id 99 (Other): its `type` is HEC's engine
        finding_info["analytic"] = _prune(
            {"name": scan["verdict"], "uid": scan.get("id"), "type_id": 99, "type": scan.get("engine") or "Other"}
        )
    record: dict[str, Any] = {
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "time": alert["timestamp"] if alert["timestamp"] is not None else now_ms,
        "severity_id": severity,
        "severity": OCSF_SEVERITY[severity],
        "status_id": status_id,
        "status": status,
        "status_detail": state,
        "confidence_id": confidence_id,
        "confidence": confidence,
        "message": alert["description"],
        "metadata": _prune(
            {
                "version": OCSF_VERSION,
                "uid": alert["event_id"],
                "tenant_uid": alert["tenantid"],
                "product": {"name": PRODUCT, "vendor_name": VENDOR},
                "labels": alert["alert_reasons"],
            }
        ),
        "finding_info": {k: v for k, v in finding_info.items() if v is not None},
        "resources": [_prune({"uid": alert["entity_id"], "type": alert["saas"]})] if alert["entity_id"] else [],
        "observables": observables,
    }
    for optional in ("message", "status_detail"):
        if record[optional] is None:
            del record[optional]
    if evidence:
        record["evidences"] = [evidence]
    return record
