"""harmony-alerts vs its same-run baselines: the orjson floor and jq; start-up; 1M dedupe keys RSS."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.harness import BenchContext, Measurement, row

GROUP = "harmony-alerts"

# The floor: the least any Python NDJSON transform can do — parse each line, serialize it back,
# write in batches. harmony-alerts does that plus normalize, filter, dedupe.
FLOOR = r"""
import sys, orjson
loads, dumps = orjson.loads, orjson.dumps
out = sys.stdout.buffer
batch = []
for line in sys.stdin.buffer:
    batch.append(dumps(loads(line)))
    if len(batch) >= 1000:
        out.write(b"\n".join(batch) + b"\n")
        batch = []
if batch:
    out.write(b"\n".join(batch) + b"\n")
"""

# jq doing the same select + reshape (no dedupe: jq cannot keep a bounded key set).
JQ_FILTER = r"""
select((.type | IN("phishing","malware","alert","dlp")) or ((.severity | tonumber? // 0) >= 4))
| {timestamp: (.eventCreated | sub("\\.[0-9]+"; "") | sub("\\+00:00$"; "Z") | fromdateiso8601 * 1000),
   msg_class: "checkpoint_harmony_security_event",
   msg_origin: {source: "checkpoint_harmony", vendor: "Check Point", product: "Harmony Email & Collaboration"},
   tenantid: .customerId, event_id: .eventId, event_type: .type, event_state: .state, saas: .saas,
   confidence: .confidenceIndicator, severity: (.severity | tonumber),
   severity_label: (["", "Very Low", "Low", "Medium", "High", "Critical"][.severity | tonumber]),
   description: .description, sender: .senderAddress, entity_id: .entityId, entity_link: .entityLink,
   dedupe_key: "\(.customerId):\(.eventId)", checkpoint_harmony: .}
"""

DEDUPE_RSS = r"""
import sys, psutil
from harmony_pipes.harmony_alerts.dedupe import DigestSet, key_digest
keys = int(sys.argv[1])
store = DigestSet(keys)
for i in range(keys):
    store.add(key_digest(f"tenant-{i % 7}:{i:032x}"), i)
print(psutil.Process().memory_info().rss)
"""


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    corpus, records, size = ctx.corpus()
    rows = []
    floor = ctx.measure([ctx.python, "-c", FLOOR], stdin_path=corpus)
    rows.append(row(GROUP, "orjson floor (loads+dumps)", records, size, floor, baseline=True))
    if ctx.jq:
        jq = ctx.measure([ctx.jq, "-c", JQ_FILTER], stdin_path=corpus)
        rows.append(row(GROUP, "jq -c select+reshape", records, size, jq, baseline=True))
    ours = ctx.measure([ctx.bin("harmony-alerts")], stdin_path=corpus)
    rows.append(row(GROUP, "harmony-alerts", records, size, ours, notes="normalize + filter + dedupe"))
    state = ctx.workdir / "alerts-state"
    with_state = ctx.measure([ctx.bin("harmony-alerts"), "--state-dir", str(state)], stdin_path=corpus)
    rows.append(row(GROUP, "harmony-alerts --state-dir", records, size, with_state, notes="keys persisted"))
    rows.append(startup_row(ctx))
    rows.append(dedupe_rss_row(ctx))
    return rows


def startup_row(ctx: BenchContext) -> dict[str, Any]:
    """Median wall time of `harmony-alerts < /dev/null` over 10 runs (target < 150 ms)."""
    walls = []
    for _ in range(10):
        m = ctx.measure([ctx.bin("harmony-alerts")], stdin_path="/dev/null")
        walls.append(m.wall_secs)
    walls.sort()
    median = walls[len(walls) // 2]
    m = Measurement(median, 0.0, 0, "")
    return row("start-up", "harmony-alerts < /dev/null", 0, 0, m, notes=f"median of 10: {median * 1000:.0f} ms")


def dedupe_rss_row(ctx: BenchContext) -> dict[str, Any]:
    keys = 1_000_000
    started = time.perf_counter()
    out = ctx.workdir / "dedupe-rss.txt"
    m = ctx.measure([ctx.python, "-c", DEDUPE_RSS, str(keys)], stdout_path=out)
    rss_mb = int(Path(out).read_text().strip()) / 2**20
    m = Measurement(time.perf_counter() - started, rss_mb, 0, "")
    return row("dedupe", "1,000,000 dedupe keys", keys, 0, m, notes=f"whole-process RSS {rss_mb:.0f} MB (target ≤ 100)")
