"""Micro benchmarks of harmony-alerts' hot path: line parse, normalize, dedupe lookup, full record."""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_corpus import is_alert, make_event

from harmony_pipes.harmony_alerts.dedupe import DigestSet, key_digest
from harmony_pipes.harmony_alerts.normalize import KeepPolicy, build_alert
from harmony_pipes.hec_emulator.generate import EventGenerator

RNG = random.Random(5)
EVENTS = [make_event(RNG, datetime(2026, 1, 1, tzinfo=UTC), "bench") for _ in range(1000)]
LINES = [orjson.dumps(e) for e in EVENTS]
POLICY = KeepPolicy(keep_all=True)
# the alerts corpus's kind of event (gen_corpus.py --alerts): hec-emulator's, real `data` sentences
_GENERATOR = EventGenerator(5)
ALERT_EVENTS = [e for e in (_GENERATOR.make(1_767_225_600_000_000 + i) for i in range(2000)) if is_alert(e)][:1000]


@pytest.mark.benchmark(group="alerts")
def test_line_parse(benchmark) -> None:
    loads = orjson.loads
    benchmark(lambda: [loads(line) for line in LINES])


@pytest.mark.benchmark(group="alerts")
def test_normalize(benchmark) -> None:
    benchmark(lambda: [build_alert(e, None, POLICY) for e in EVENTS])


@pytest.mark.benchmark(group="alerts")
def test_normalize_emulator_alerts(benchmark) -> None:
    """build_alert on alerts with real `data` sentences: the details parser's plan cache at work."""
    benchmark(lambda: [build_alert(e, None, POLICY) for e in ALERT_EVENTS])


@pytest.mark.benchmark(group="alerts")
def test_dedupe_lookup_hit(benchmark) -> None:
    store = DigestSet(1_000_000)
    digests = [key_digest(f"bench:{i}") for i in range(100_000)]
    for digest in digests:
        store.add(digest, 0)
    probe = digests[:1000]
    benchmark(lambda: [d in store for d in probe])


@pytest.mark.benchmark(group="alerts")
def test_dedupe_key_digest(benchmark) -> None:
    keys = [f"bench:{e['eventId']}" for e in EVENTS]
    benchmark(lambda: [key_digest(k) for k in keys])


@pytest.mark.benchmark(group="alerts")
def test_full_record_path(benchmark) -> None:
    """loads + normalize + dumps + splice: what one record costs, minus I/O."""
    loads, dumps = orjson.loads, orjson.dumps

    def run() -> None:
        for line in LINES:
            alert = build_alert(loads(line), None, POLICY)
            dumps(alert)[:-1] + b',"checkpoint_harmony":' + line + b"}"

    benchmark(run)
