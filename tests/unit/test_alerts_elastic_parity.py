"""`--format ecs` against Elastic's `checkpoint_email` ingest pipeline, on events of our own.

tests/fixtures/elastic_parity/input.ndjson holds 12 events we wrote in the real shapes (every
sentence form Elastic's grok knows, the ones it does not, an unknown mailbox, a domain-only sender,
an escaped emoji, a missing sender, attachmentMd5). elastic_expected.ndjson holds, per event, every
ECS field the pipeline (packages/checkpoint_email/data_stream/event/elasticsearch/ingest_pipeline/
default.yml in elastic/integrations) sets and the value it sets, worked out by hand from its
processors: the fingerprint aside, `set`/`append`/`rename` of the event's fields, the five grok
patterns over `data` with `json` on each captured placeholder, the `<Unknown>` guards, the
`%{name}@%{domain}` dissects, the ISO8601 date at millisecond precision, and the final removal of
null and empty values. `test_the_hand_worked_values_follow_the_grok_patterns` re-derives the
data-based ones with a plain translation of the grok patterns, independent of our parser.

Deliberate differences (docs/harmony-alerts.md): `event.category` gets `malware` for
`suspicious_malware` too (Elastic's condition tests the spelling "suspicious malware"), and
`related.user` lists Elastic's users first, in its order, then the accounts its grok does not
reach.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest

from tests.conftest import FIXTURES, run_cli
from tests.helpers.schemas import assert_valid

CASE = FIXTURES / "elastic_parity"
INPUT = (CASE / "input.ndjson").read_bytes()
EVENTS = [orjson.loads(line) for line in INPUT.splitlines() if line.strip()]
ELASTIC = [json.loads(line) for line in (CASE / "elastic_expected.ndjson").read_text().splitlines() if line.strip()]


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def run(output_format: str) -> list[dict]:
    result = run_cli(["harmony-alerts", "--all", "--format", output_format], INPUT)
    assert result.returncode == 0, result.stderr
    records = [orjson.loads(line) for line in result.stdout_lines]
    assert len(records) == len(EVENTS)
    return records


@pytest.fixture(scope="module")
def ecs() -> list[dict]:
    records = run("ecs")
    for record in records:
        assert_valid("alert-ecs", record)
    return [flatten({k: v for k, v in r.items() if k != "checkpoint_harmony"}) for r in records]


@pytest.mark.parametrize("index", range(len(EVENTS)), ids=[e["type"] + "-" + str(i) for i, e in enumerate(EVENTS)])
def test_every_field_elastic_sets_has_its_value(ecs, index) -> None:
    ours, theirs = ecs[index], ELASTIC[index]
    for field, value in theirs.items():
        if field == "related.user":
            assert ours[field][: len(value)] == value  # Elastic's users first, in its order
            extra = ours[field][len(value) :]
            assert all(user in (ours.get("user.email"),) for user in extra), extra
        elif field == "event.category" and EVENTS[index]["type"] == "suspicious_malware":
            assert ours[field] == [*value, "malware"]  # the deliberate difference
        else:
            assert ours.get(field) == value, field


def test_how_often_each_field_is_set(ecs) -> None:
    """How often Elastic sets each field on this set (the issue's question, on its own fixture:
    ours 0 each), and that we set each at least as often."""
    fields = ("email.subject", "email.to.address", "destination.user.email", "source.user.email", "user.email",
              "related.user", "organization.name")  # fmt: skip

    def count(rows: list[dict]) -> dict[str, int]:
        return {f: sum(1 for row in rows if row.get(f)) for f in fields}

    assert count(ELASTIC) == {"email.subject": 7, "email.to.address": 6, "destination.user.email": 6,
                              "source.user.email": 10, "user.email": 1, "related.user": 12,
                              "organization.name": 12}  # fmt: skip
    assert count(ecs) == {"email.subject": 8, "email.to.address": 6, "destination.user.email": 6,
                          "source.user.email": 10, "user.email": 4, "related.user": 12,
                          "organization.name": 12}  # fmt: skip


def test_what_elastic_misses(ecs) -> None:
    by_id = {row["event.id"]: row for row in ecs}
    attachment = by_id["d00dd00dd00dd00dd00dd00dd00dd00d"]
    assert attachment["email.attachments"] == [{"file": {"hash": {"md5": "9e107d9d372bb6826bd81d3542a419d6"}}}]
    geo = by_id["6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a"]
    assert (geo["source.ip"], geo["source.geo.country_name"]) == ("198.51.100.23", "Viet Nam")
    assert geo["related.ip"] == ["203.0.113.7", "198.51.100.23"]
    assert (geo["user.email"], geo["user.name"], geo["user.domain"]) == ("jon.dubois@example.net", "jon.dubois",
                                                                         "example.net")  # fmt: skip
    assert geo["related.user"] == ["security-alerts@example.net", "jon.dubois@example.net"]
    first_login = by_id["5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f"]
    assert first_login["source.geo.country_name"] == "Peru" and first_login["labels.user_action"] == "logged in"
    phishing = by_id["9a1c0e77b2d44f0c8c1e5d3a7b6f4e21"]
    assert (phishing["rule.name"], phishing["rule.ruleset"], phishing["rule.category"]) == (
        "Phishing", "avanan_ap_scan", "phishing",
    )  # fmt: skip
    assert phishing["email.local_id"] == "5d0f3c2a9e8b4a7c9f1e2d3c4b5a6978"
    assert by_id["b1b2b3b4b5b6b7b8b9b0b1b2b3b4b5b6"]["rule.name"] == "suspicious_phishing"  # Microsoft's verdict
    shadow = by_id["f00df00df00df00df00df00df00df00d"]
    assert shadow["user.email"] == "ana.garcia@example.com" and shadow["user.id"] == "102938475610293847561"
    dlp = by_id["7373737373737373737373737373737373"]
    assert dlp["email.subject"] == "please see my credit data" and dlp["user.email"] == "alex.smith@example.org"
    assert dlp["related.user"] == ["alex.smith@example.org"]  # the owner is the sender: listed once
    assert by_id["8484848484848484848484848484848484"]["email.attachments"] == [
        {"file": {"hash": {"md5": "e4a217bc9ef0a88a8cd553a34684e5bd"}}}
    ]


# Elastic's grok patterns, translated: %{DATA} is `.*?`, %{GREEDYDATA} `.*`, the rest literal.
GROK = [
    r"^#(?P<scan>.*?) attempt detected in an email from #(?P<source>.*?) - '#(?P<subject>.*?)' "
    r"\(#(?P<destination>.*?)'s mailbox\)$",
    r"^.*?(A user|has detected) #(?P<scan>.*?) in an email from #(?P<source>.*?) - '#(?P<subject>.*?)' "
    r"\(#(?P<destination>.*?)'s mailbox\)$",
    r"^.*? has detected malicious attachment\(s\) in '#(?P<subject>.*?)' \(#(?P<destination>.*?)'s mailbox\)$",
    r"^User #(?P<destination>.*?) reported a phishing email #(?P<subject>.*?)$",
    r"^Unusual geo activity for #(?P<user>.*?): #(?P<action>.*?) for the first time from (?P<country>.*?)$",
]


def elastic_from_data(data: str) -> dict[str, Any]:
    for pattern in GROK:
        match = re.match(pattern, data, re.S)
        if match is None:
            continue
        found = {k: v for k, v in match.groupdict().items() if v is not None}
        out: dict[str, Any] = {}
        if "subject" in found:
            out["email.subject"] = json.loads(found["subject"])["label"]
        if "destination" in found and json.loads(found["destination"])["label"] != "<Unknown>":
            out["email.to.address"] = [json.loads(found["destination"])["label"]]
        if "user" in found and json.loads(found["user"])["label"] != "<Unknown>":
            out["user.email"] = json.loads(found["user"])["label"]
        return out
    return {}


def test_the_hand_worked_values_follow_the_grok_patterns() -> None:
    for event, expected in zip(EVENTS, ELASTIC, strict=True):
        derived = elastic_from_data(event["data"])
        hand = {k: expected[k] for k in ("email.subject", "email.to.address", "user.email") if k in expected}
        assert derived == hand, event["eventId"]


def test_native_and_ocsf_carry_the_same_facts() -> None:
    native = run("native")
    ocsf = run("ocsf")
    for record in native:
        assert_valid("alert", record)
    for record in ocsf:
        assert_valid("alert-ocsf", record)
    assert native[0]["details"] == {
        "shape": "email_threat",
        "scan": {"engine": "avanan_ap_scan", "verdict": "Phishing", "id": "9a1c0e77b2d44f0c8c1e5d3a7b6f4e21"},
        "sender": "billing@paypa1-secure.example",
        "subject": "Your invoice is ready",
        "email_id": "5d0f3c2a9e8b4a7c9f1e2d3c4b5a6978",
        "recipient": "nora.kim@example.org",
        "recipient_id": "108812345678901234567",
    }
    (evidence,) = ocsf[0]["evidences"]
    assert evidence["email"] == {
        "from": "billing@paypa1-secure.example",
        "to": ["nora.kim@example.org"],
        "subject": "Your invoice is ready",
        "uid": "5d0f3c2a9e8b4a7c9f1e2d3c4b5a6978",
    }
    assert evidence["actor"]["user"]["email_addr"] == "billing@paypa1-secure.example"
    assert evidence["user"] == {"name": "nora.kim@example.org", "email_addr": "nora.kim@example.org",
                                "uid": "108812345678901234567"}  # fmt: skip
    assert ocsf[0]["finding_info"]["analytic"] == {"name": "Phishing", "uid": "9a1c0e77b2d44f0c8c1e5d3a7b6f4e21",
                                                   "type_id": 99, "type": "avanan_ap_scan"}  # fmt: skip
    geo = ocsf[8]
    (geo_evidence,) = geo["evidences"]
    assert geo_evidence["actor"]["user"]["email_addr"] == "jon.dubois@example.net"  # the account acted
    assert geo_evidence["src_endpoint"] == {"ip": "198.51.100.23"}
    assert geo_evidence["data"]["country"] == "Viet Nam"
    ips = [o["value"] for o in geo["observables"] if o["type_id"] == 2]
    assert ips == ["203.0.113.7", "198.51.100.23"]
    assert native[5]["details"]["attachment_md5"] == "9e107d9d372bb6826bd81d3542a419d6"
    hashes = [o for o in ocsf[5]["observables"] if o["type_id"] == 8]
    assert hashes == [{"name": "unmapped.checkpoint_harmony.attachmentMd5", "type_id": 8, "type": "Hash",
                       "value": "9e107d9d372bb6826bd81d3542a419d6"}]  # fmt: skip
    statuses = [(r["status_detail"], r["status_id"], r["status"]) for r in ocsf]
    assert ("pending", 2, "In Progress") in statuses and ("dismissed", 3, "Suppressed") in statuses
    assert [r["confidence"] for r in ocsf[:3]] == ["High", "High", "Medium"]
