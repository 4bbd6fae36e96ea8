"""Seeded corpus of realistic HEC events (~650 bytes each, ~2% duplicates) for the pipe benchmarks.

    python benchmarks/gen_corpus.py --records 200000 --seed 42 --out /tmp/corpus.ndjson

Same seed, same bytes: every tool in one benchmark run reads the identical file.
"""

from __future__ import annotations

import argparse
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

TYPES = [
    ("phishing", "malicious", 0.22),
    ("malware", "malicious", 0.08),
    ("dlp", "malicious", 0.10),
    ("alert", "alert", 0.06),
    ("anomaly", "detected", 0.10),
    ("spam", "detected", 0.18),
    ("suspicious_phishing", "suspicious_phishing", 0.12),
    ("malicious_url", "malicious_url", 0.08),
    ("shadow_it", "detected", 0.06),
]
STATES = ["new", "detected", "pending", "remediated", "dismissed", "exception"]
SAAS = ["office365_emails", "google_mail", "office365_onedrive", "ms_teams", "slack"]
SEVERITY_BY_TYPE = {
    "phishing": "45",
    "malware": "45",
    "dlp": "23",
    "alert": "3",
    "anomaly": "3",
    "spam": "24",
    "suspicious_phishing": "3",
    "malicious_url": "4",
    "shadow_it": "23",
}


def make_event(rng: random.Random, when: datetime, customer: str) -> dict:
    roll = rng.random()
    event_type, confidence = TYPES[-1][:2]
    for event_type, confidence, weight in TYPES:  # noqa: B007 - the loop picks them
        roll -= weight
        if roll <= 0:
            break
    event_id = f"{rng.getrandbits(128):032x}"
    entity_id = f"{rng.getrandbits(128):032x}"
    user = f"user{rng.randrange(5000)}@example.com"
    sender = f"info{rng.randrange(900)}@sender{rng.randrange(90)}.example"
    subject = rng.choice(["Invoice overdue", "Support: Link", "Your parcel", "Password expiry", "Q3 report"])
    label = event_type.replace("_", " ").title()
    event = {
        "eventId": event_id,
        "customerId": customer,
        "saas": rng.choice(SAAS),
        "entityId": entity_id,
        "state": rng.choice(STATES),
        "type": event_type,
        "confidenceIndicator": confidence,
        "eventCreated": when.isoformat(timespec="microseconds")
        if rng.random() > 0.1
        else when.isoformat(timespec="seconds"),
        "severity": rng.choice(SEVERITY_BY_TYPE[event_type]),
        "description": f"{label} detected in an email from {sender} - '{subject}' ({user})",
        "data": f'#{{"entity_id": "{entity_id}", "entity_type": "avanan_ap_scan", "label": "{label}"}} detected',
        "additionalData": None,
        "availableEventActions": None,
        "actions": [],
        "senderAddress": sender,
        "entityLink": f"https://portal.checkpoint.com/dashboard/email&collaboration/CGS1?route={entity_id[:16]}",
    }
    if rng.random() < 0.6:
        event["data"] = ""  # the API sends "" when an event has no placeholders
    if rng.random() < 0.3:
        event["actions"] = [
            {"actionType": "quarantine_email", "createTime": when.isoformat(), "relatedEntityId": event_id}
        ]
    if event_type == "malware" and rng.random() < 0.5:
        event["attachmentMd5"] = f"{rng.getrandbits(128):032x}"
    if event_type == "alert":
        event["senderAddress"] = None
    return event


def write_corpus(path: Path, records: int, seed: int = 42, duplicate_ratio: float = 0.02) -> int:
    """Write `records` lines; returns bytes written."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    recent: list[bytes] = []
    written = 0
    with path.open("wb") as out:
        chunk: list[bytes] = []
        for index in range(records):
            if recent and rng.random() < duplicate_ratio:
                line = rng.choice(recent)
            else:
                when = start + timedelta(milliseconds=index * 250 + rng.randrange(250))
                line = orjson.dumps(make_event(rng, when, rng.choice(["exampletest", "prod-3-con-lab44"])))
                recent.append(line)
                if len(recent) > 1000:
                    recent.pop(0)
            chunk.append(line)
            if len(chunk) >= 10_000:
                data = b"\n".join(chunk) + b"\n"
                out.write(data)
                written += len(data)
                chunk = []
        if chunk:
            data = b"\n".join(chunk) + b"\n"
            out.write(data)
            written += len(data)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    size = write_corpus(args.out, args.records, args.seed)
    print(f"{args.records} records, {size} bytes -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
