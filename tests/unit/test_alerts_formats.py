"""--format ecs / ocsf on events that are not complete: missing optional keys, nulls, odd severities
and timestamps, non-string values. Each case runs the real `harmony-alerts` process once per
format; every output line must validate against its schema and carry the values worked out by
hand below (not computed with the code under test).
"""

from __future__ import annotations

import re

import orjson
import pytest

from tests.conftest import run_cli
from tests.helpers.schemas import assert_valid

ECS_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

# (event, epoch ms, ISO time, severity, label)
CASES = [
    # the DLP fixture line of the reference lacks additionalData, actions, senderAddress, entityLink
    (
        {"eventId": "7ded0371a3e1475c9a877e452f23a049", "customerId": "us:customername", "saas": "office365_emails",
         "entityId": "639c16e1aaa3affd5d3fa4fda5e75765", "state": "dismissed", "type": "dlp",
         "confidenceIndicator": "malicious", "eventCreated": "2024-10-14T20:58:27.073355+00:00", "severity": "2",
         "data": "",
         "description": "DLP Engine has detected a leak in ‘please see my credit data’ from user@customer.com"},
        1728939507073, "2024-10-14T20:58:27.073Z", 2, "Low",
    ),
    # only an id and a type
    ({"eventId": "00000000000000000000000000000001", "type": "dlp"}, None, None, None, None),
    # every key present and null
    (
        {"eventId": "00000000000000000000000000000002", "customerId": None, "saas": None, "entityId": None,
         "state": None, "type": None, "confidenceIndicator": None, "eventCreated": None, "severity": None,
         "description": None, "data": None, "additionalData": None, "availableEventActions": None, "actions": None,
         "senderAddress": None, "entityLink": None},
        None, None, None, None,
    ),
    # no eventId at all (never deduplicated), empty-string sender
    ({"customerId": "exampletest", "type": "phishing", "severity": "5", "senderAddress": "",
      "eventCreated": "2025-06-29T21:37:45+00:00"}, 1751233065000, "2025-06-29T21:37:45.000Z", 5, "Critical"),
    ({"customerId": "exampletest", "type": "phishing", "severity": "5", "senderAddress": "",
      "eventCreated": "2025-06-29T21:37:45+00:00"}, 1751233065000, "2025-06-29T21:37:45.000Z", 5, "Critical"),
    # odd severities
    ({"eventId": "s-highest", "type": "malware", "severity": "Highest", "eventCreated": "2025-06-29T21:37:45Z"},
     1751233065000, "2025-06-29T21:37:45.000Z", 5, "Critical"),
    ({"eventId": "s-int", "type": "malware", "severity": 4, "eventCreated": "2025-06-29T21:37:45"},
     1751233065000, "2025-06-29T21:37:45.000Z", 4, "High"),
    ({"eventId": "s-float", "type": "malware", "severity": 2.0, "eventCreated": "2025-06-29T23:37:45.5+02:00"},
     1751233065500, "2025-06-29T21:37:45.500Z", 2, "Low"),
    ({"eventId": "s-padded", "type": "spam", "severity": " 3 "}, None, None, 3, "Medium"),
    ({"eventId": "s-upper", "type": "spam", "severity": "HIGH"}, None, None, 4, "High"),
    ({"eventId": "s-very-low", "type": "spam", "severity": "Very Low"}, None, None, 1, "Very Low"),
    ({"eventId": "s-zero", "type": "spam", "severity": "0"}, None, None, None, None),
    ({"eventId": "s-six", "type": "spam", "severity": "6"}, None, None, None, None),
    ({"eventId": "s-bool", "type": "spam", "severity": True}, None, None, None, None),
    ({"eventId": "s-word", "type": "spam", "severity": "urgent"}, None, None, None, None),
    ({"eventId": "s-list", "type": "spam", "severity": ["4"]}, None, None, None, None),
    # odd timestamps: unparseable, out of ISO 8601's range (used to crash the command), epoch numbers
    ({"eventId": "t-word", "type": "alert", "severity": "3", "eventCreated": "yesterday"}, None, None, 3, "Medium"),
    ({"eventId": "t-huge", "type": "alert", "severity": "3", "eventCreated": 1e300}, None, None, 3, "Medium"),
    ({"eventId": "t-far", "type": "alert", "severity": "3", "eventCreated": 99999999999999999},
     None, None, 3, "Medium"),
    ({"eventId": "t-epoch-s", "type": "alert", "severity": "3", "eventCreated": 1751233065},
     1751233065000, "2025-06-29T21:37:45.000Z", 3, "Medium"),
    ({"eventId": "t-year-1", "type": "alert", "severity": "3", "eventCreated": "0001-01-01T00:00:00Z"},
     -62135596800000, "0001-01-01T00:00:00.000Z", 3, "Medium"),
    # values of the wrong JSON type where text belongs
    ({"eventId": 12345, "customerId": 7, "type": "anomaly", "state": ["x"], "severity": "3", "entityId": 99,
      "senderAddress": {"a": 1}, "description": 1.5}, None, None, 3, "Medium"),
    # states OCSF maps (in_progress once fell to 99 Other), and one it does not know
    ({"eventId": "st-pending", "type": "shadow_it", "state": "pending", "severity": "3"}, None, None, 3, "Medium"),
    ({"eventId": "st-in-progress", "type": "shadow_it", "state": "in_progress", "severity": "3"}, None, None, 3,
     "Medium"),
    ({"eventId": "st-unknown", "type": "shadow_it", "state": "escalated", "severity": "3"}, None, None, 3, "Medium"),
    # every other state HEC sends
    ({"eventId": "st-new", "type": "dlp", "state": "new", "severity": "3"}, None, None, 3, "Medium"),
    ({"eventId": "st-detected", "type": "dlp", "state": "detected", "severity": "3"}, None, None, 3, "Medium"),
    ({"eventId": "st-remediated", "type": "dlp", "state": "remediated", "severity": "3"}, None, None, 3, "Medium"),
    ({"eventId": "st-dismissed", "type": "dlp", "state": "dismissed", "severity": "3"}, None, None, 3, "Medium"),
    ({"eventId": "st-exception", "type": "dlp", "state": "exception", "severity": "3"}, None, None, 3, "Medium"),
]  # fmt: skip

OCSF_STATUS = {  # OCSF 1.3 Detection Finding status_id: 1 New, 2 In Progress, 3 Suppressed, 4 Resolved
    "dismissed": (3, "Suppressed"),
    "exception": (3, "Suppressed"),
    "pending": (2, "In Progress"),
    "in_progress": (2, "In Progress"),
    "remediated": (4, "Resolved"),
    "new": (1, "New"),
    "detected": (1, "New"),
}


def text(value):
    return None if value is None else value if isinstance(value, str) else str(value)


def run_format(output_format: str) -> list[dict]:
    data = b"".join(orjson.dumps(case[0]) + b"\n" for case in CASES)
    result = run_cli(["harmony-alerts", "--all", "--format", output_format], data)
    assert result.returncode == 0, result.stderr
    assert "Error" not in result.stderr
    assert len(result.stdout_lines) == len(CASES)  # nothing dropped, nothing deduplicated away
    stats = result.stats
    assert stats["alerts"] == len(CASES) and stats["bad_records"] == 0 and stats["duplicates"] == 0
    return [orjson.loads(line) for line in result.stdout_lines]


@pytest.fixture(scope="module")
def ecs_records() -> list[dict]:
    return run_format("ecs")


@pytest.fixture(scope="module")
def ocsf_records() -> list[dict]:
    return run_format("ocsf")


IDS = [f"{i}-{c[0].get('eventId', 'no-id')}" for i, c in enumerate(CASES)]


TYPE_LABELS = {"dlp": "DLP", "phishing": "Phishing", "malware": "Malware", "spam": "Spam", "alert": "Alert",
               "anomaly": "Anomaly", "shadow_it": "Shadow IT"}  # fmt: skip
OCSF_CONFIDENCE = {"malicious": (3, "High"), None: (0, "Unknown")}


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_ecs_of_incomplete_events(ecs_records, index) -> None:
    """Absent or null values are left out (as Elastic's pipeline drops them)."""
    event, _ms, iso, severity, label = CASES[index]
    record = ecs_records[index]
    assert_valid("alert-ecs", record)
    assert record["checkpoint_harmony"] == event
    event_part = record["event"]
    if iso is None:  # unreadable eventCreated: @timestamp is when harmony-alerts read it
        assert ECS_TIME.match(record["@timestamp"]) and "created" not in event_part
    else:
        assert record["@timestamp"] == iso and event_part["created"] == iso and ECS_TIME.match(iso)
    assert event_part.get("severity") == severity
    assert record["labels"].get("severity_label") == label
    assert event_part.get("id") == text(event.get("eventId"))
    customer = event.get("customerId")
    assert record.get("organization", {}) == {
        k: v for k, v in (("name", customer if isinstance(customer, str) else None), ("id", text(customer))) if v
    }
    assert event_part.get("action") == text(event.get("state"))
    assert event_part.get("provider") == event.get("saas")
    assert event_part.get("url") == event.get("entityLink")
    assert record.get("message") == text(event.get("description"))
    event_type = text(event.get("type"))
    rule = {"name": TYPE_LABELS.get(event_type, event_type), "category": event_type}
    assert record.get("rule", {}) == {k: v for k, v in rule.items() if v}
    assert record["labels"].get("confidence_indicator") == event.get("confidenceIndicator")
    sender = text(event.get("senderAddress"))
    if sender:
        assert record["email"] == {"sender": {"address": sender}}
        assert record["source"]["user"]["email"] == sender and record["related"] == {"user": [sender]}
    else:
        assert "email" not in record and "source" not in record and "related" not in record
    expected_category = {
        "malware": ["email", "malware"],
        "anomaly": ["email", "threat"],
        "shadow_it": ["email", "threat"],
    }
    assert event_part["category"] == expected_category.get(event_type, ["email"])
    assert event_part["type"] == (["info", "indicator"] if event_type in ("anomaly", "shadow_it") else ["info"])
    reasons = []
    if event_type in ("phishing", "malware", "alert", "dlp"):
        reasons.append(f"type:{event_type}")
    if severity is not None and severity >= 4:
        reasons.append("severity>=4")
    assert event_part["reason"] == ", ".join(reasons or ["all"])
    event_id = text(event.get("eventId"))
    customer_text = text(event.get("customerId")) or ""
    assert record["labels"].get("dedupe_key") == (None if event_id is None else f"{customer_text}:{event_id}")


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_ocsf_of_incomplete_events(ocsf_records, index) -> None:
    event, ms, _iso, severity, label = CASES[index]
    record = ocsf_records[index]
    assert_valid("alert-ocsf", record)
    assert record["unmapped"]["checkpoint_harmony"] == event
    assert (record["class_uid"], record["type_uid"], record["category_uid"]) == (2004, 200401, 2)
    if ms is None:  # unreadable eventCreated: `time` (required) is when harmony-alerts read it
        assert record["time"] > 1_700_000_000_000 and "created_time" not in record["finding_info"]
    else:
        assert record["time"] == ms and record["finding_info"]["created_time"] == ms
    assert record["severity_id"] == (0 if severity is None else severity)  # 0 = Unknown in OCSF
    assert record["severity"] == {None: "Unknown", "Very Low": "Informational"}.get(label, label)
    state = text(event.get("state"))
    expected_status = (0, "Unknown") if state is None else OCSF_STATUS.get(state, (99, state))
    assert (record["status_id"], record["status"]) == expected_status
    assert record.get("status_detail") == state
    assert (record["confidence_id"], record["confidence"]) == OCSF_CONFIDENCE[event.get("confidenceIndicator")]
    assert record["metadata"].get("uid") == text(event.get("eventId"))
    assert record["metadata"].get("tenant_uid") == text(event.get("customerId"))
    event_type = text(event.get("type"))
    description = text(event.get("description"))
    assert record["finding_info"]["title"] == (description or event_type or "Harmony security event")
    assert record["finding_info"]["types"] == ([event_type] if event_type else [])
    entity = text(event.get("entityId"))
    resource = {k: v for k, v in (("uid", entity), ("type", event.get("saas"))) if v}
    assert record["resources"] == ([resource] if entity else [])
    sender = text(event.get("senderAddress"))
    observables = record["observables"]
    if sender and "@" in sender:
        assert observables[0] == {
            "name": "evidences.actor.user.email_addr", "type_id": 5, "type": "Email Address", "value": sender
        }  # fmt: skip
        assert record["evidences"] == [{"actor": {"user": {"name": sender, "email_addr": sender}}}]
    elif sender:
        assert record["evidences"] == [{"actor": {"user": {"name": sender}}}]
    else:
        assert "evidences" not in record
    if entity:
        assert observables[-1] == {"name": "resources.uid", "type_id": 10, "type": "Resource UID", "value": entity}
    assert record["metadata"]["labels"]  # why it was kept, never empty


def test_formats_keep_the_default_policy_on_incomplete_events() -> None:
    """Without --all, only the rules keep an event: no type and no severity means no alert."""
    data = b"".join(orjson.dumps(case[0]) + b"\n" for case in CASES)
    for output_format in ("ecs", "ocsf"):
        result = run_cli(["harmony-alerts", "--format", output_format], data)
        assert result.returncode == 0, result.stderr
        kept = [orjson.loads(line) for line in result.stdout_lines]
        ids = [
            (r["event"].get("id") if output_format == "ecs" else r["metadata"].get("uid")) for r in kept
        ]  # the two no-id phishing events both come out (never deduplicated)
        expected = [
            text(e.get("eventId"))
            for e, _ms, _iso, severity, _label in CASES
            if e.get("type") in ("phishing", "malware", "alert", "dlp") or (severity or 0) >= 4
        ]
        assert ids == expected
        assert result.stats["filtered"] == len(CASES) - len(expected)
