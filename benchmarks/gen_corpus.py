"""Seeded corpora of HEC events for the pipe benchmarks (same seed, same bytes: every tool in one
benchmark run reads the identical file).

    python benchmarks/gen_corpus.py --records 200000 --seed 42 --out /tmp/corpus.ndjson
    python benchmarks/gen_corpus.py --alerts --records 200000 --seed 42 --out /tmp/alerts.ndjson

The default corpus (`write_corpus`): ~650 bytes per event, ~2% duplicates, about half of them
alerts, and `data` either "" or a one-placeholder stub that no sentence shape matches.

The alerts corpus (`write_alerts_corpus`, issue #14): hec-emulator's events (`EventGenerator`,
real-shaped `data` sentences of every kind, realistic actions lists, missing optional keys),
~1.5 KB each, 95% of them alerts under harmony-alerts' default keep rule, ~2% duplicates.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from harmony_pipes.hec_emulator.generate import EventGenerator

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

    def new_line(index: int) -> bytes:
        when = start + timedelta(milliseconds=index * 250 + rng.randrange(250))
        return orjson.dumps(make_event(rng, when, rng.choice(["exampletest", "prod-3-con-lab44"])))

    return _write_lines(path, records, rng, duplicate_ratio, new_line)


def _write_lines(
    path: Path, records: int, rng: random.Random, duplicate_ratio: float, new_line: Callable[[int], bytes]
) -> int:
    """`records` lines from `new_line(index)`, or (~`duplicate_ratio` of them) a repeat of one of
    the last 1000 new lines; returns bytes written."""
    recent: list[bytes] = []
    written = 0
    with path.open("wb") as out:
        chunk: list[bytes] = []
        for index in range(records):
            if recent and rng.random() < duplicate_ratio:
                line = rng.choice(recent)
            else:
                line = new_line(index)
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


# harmony-alerts' default keep rule (normalize.DEFAULT_TYPES / DEFAULT_MIN_SEVERITY), restated so
# the corpus says what it holds without importing the code it measures: an event is an alert when
# its type is phishing, malware, alert or dlp, or its severity is 4 or more.
ALERT_TYPES = frozenset({"phishing", "malware", "alert", "dlp"})
ALERT_MIN_SEVERITY = 4


def is_alert(event: dict) -> bool:
    """The default keep rule (see ALERT_TYPES)."""
    severity = event.get("severity")
    return event.get("type") in ALERT_TYPES or (
        isinstance(severity, str) and severity.isdigit() and int(severity) >= ALERT_MIN_SEVERITY
    )


def write_alerts_corpus(
    path: Path, records: int, seed: int = 42, alert_ratio: float = 0.95, duplicate_ratio: float = 0.02
) -> int:
    """Write `records` lines of hec-emulator events, `alert_ratio` of them alerts under the default
    keep rule (plus ~`duplicate_ratio` repeated lines: same tenant and eventId); returns bytes written.

    Each line's kind (alert or not) is drawn first, then the generator's next event of that kind
    is taken (events of the other kind are skipped), so the kinds' mix is the one asked for and
    each kind keeps the generator's own mix of types, sentences and missing keys.
    """
    rng = random.Random(seed)
    generators = {
        tenant: EventGenerator(seed + i, customer_id=tenant) for i, tenant in enumerate(("exampletest", "prod-3"))
    }
    tenants = list(generators)
    start_us = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)

    def new_line(index: int) -> bytes:
        want_alert = rng.random() < alert_ratio
        generator = generators[rng.choice(tenants)]
        created_us = start_us + index * 250_000 + rng.randrange(250_000)
        event = generator.make(created_us)
        while is_alert(event) != want_alert:
            event = generator.make(created_us)
        return orjson.dumps(event)

    return _write_lines(path, records, rng, duplicate_ratio, new_line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--alerts", action="store_true", help="the alerts corpus: hec-emulator events, 95%% alerts (issue #14)"
    )
    args = parser.parse_args(argv)
    write = write_alerts_corpus if args.alerts else write_corpus
    size = write(args.out, args.records, args.seed)
    print(f"{args.records} records, {size} bytes -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
