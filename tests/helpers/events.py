"""Helpers for the harmony-events tests: known event fixtures, running the collector, reading ids."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

CLIENT_ID = "harmony-test-client"
ACCESS_KEY = "s3cr3t-Acc3ss-K3y-do-not-leak-7f1c"

TYPES = ["phishing", "malware", "dlp", "anomaly", "spam", "alert", "malicious_url", "suspicious_phishing"]
STATES = ["new", "detected", "pending", "remediated", "dismissed", "exception"]
SAAS = ["office365_emails", "google_mail", "ms_teams", "slack"]


def make_events(count: int, span_secs: float, seed: int = 7, end: datetime | None = None) -> list[dict]:
    """`count` realistic events with eventCreated spread over the `span_secs` before `end`."""
    rng = random.Random(seed)
    end = end or datetime.now(UTC) - timedelta(seconds=2)
    events = []
    for i in range(count):
        created = end - timedelta(seconds=span_secs * (count - i) / count)
        event = {
            "eventId": uuid.UUID(int=rng.getrandbits(128)).hex,
            "customerId": "exampletest",
            "saas": rng.choice(SAAS),
            "entityId": uuid.UUID(int=rng.getrandbits(128)).hex,
            "state": rng.choice(STATES),
            "type": rng.choice(TYPES),
            "confidenceIndicator": "malicious",
            "eventCreated": created.isoformat(),
            "severity": str(rng.randint(1, 5)),
            "description": f"Phishing attempt detected in an email from info@example.in #{i}",
            "data": "",
            "additionalData": None,
            "availableEventActions": None,
            "actions": [],
            "senderAddress": "info@example.in",
            "entityLink": "https://portal.checkpoint.com/dashboard/email&collaboration/CGS1?route=x",
        }
        if i % 11 == 0:
            del event["actions"], event["senderAddress"]  # not every key is present
        if i % 13 == 0:
            event["attachmentMd5"] = "4437981ad343f816a65030504bed0e7d"  # the odd extra field
        events.append(event)
    return events


def write_events(path: Path, events: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def collector_env(url: str, **extra: str) -> dict[str, str]:
    env = {
        "HARMONY_BASE_URL": url,
        "HARMONY_CLIENT_ID": CLIENT_ID,
        "HARMONY_ACCESS_KEY": ACCESS_KEY,
        "HARMONY_RETRY_BASE_DELAY_SECS": "0.02",
        "HARMONY_MAX_RETRIES": "12",
    }
    env.update(extra)
    return env


def ids_of(stdout: bytes) -> list[str]:
    return [orjson.loads(line)["eventId"] for line in stdout.split(b"\n") if line.strip()]
