"""Micro benchmarks of `s3-batch --validate harness-audit`: what schema validation costs per record.

10,000 records per round, the seed's sample (valid) and a broken variant (rejected with a
reason), so the cost of the dead-letter path is visible too.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from harmony_pipes._core.processor import SkipRecord
from harmony_pipes.s3_batch.validate import build_validator

N = 10_000
SAMPLE = json.loads(
    (Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "harness" / "audit-event-sample.json").read_text()
)


def _records(broken: bool) -> list[dict]:
    out = []
    for i in range(N):
        record = copy.deepcopy(SAMPLE)
        record["auditEventId"] = f"evt-{i}"
        if broken:
            del record["auditEventAuthor"]["principal"]["identifier"]
        out.append(record)
    return out


def test_validate_harness_audit_valid(benchmark):
    check = build_validator("harness-audit")
    records = _records(broken=False)

    def run() -> None:
        for record in records:
            check(record)

    benchmark(run)


def test_validate_harness_audit_rejected(benchmark):
    check = build_validator("harness-audit")
    records = _records(broken=True)

    def run() -> int:
        rejected = 0
        for record in records:
            try:
                check(record)
            except SkipRecord:
                rejected += 1
        return rejected

    assert benchmark(run) == N
