"""harmony-alerts vs its same-run baselines: the orjson floor and jq; start-up; peak RSS of the real
harmony-alerts process holding 1,000,000 dedupe keys (target <= 100 MB).

Two inputs, each with its own floor: today's HEC corpus (about half alerts, `data` mostly empty)
and the alerts corpus (hec-emulator events, 95% alerts, real `data` sentences; issue #14), each
run with the defaults (on 2+ CPUs: one helper process, see docs/harmony-alerts.md), with
`--all --no-dedupe` (every event becomes an alert), and with `--workers 0` (one process)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.harness import BenchContext, Measurement, row, run_standalone, size_label, stats_line

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

# 1,000,000 unique small events that are all alerts (type phishing): every one adds a dedupe key.
# ~130 bytes each, distinct eventIds, one tenant, a fixed eventCreated.
DEDUPE_EVENTS = r"""
import sys
n, path = int(sys.argv[1]), sys.argv[2]
head = b'{"eventId":"'
tail = b'","customerId":"bench-tenant","type":"phishing","severity":"4","eventCreated":"2026-01-01T00:00:00.000000Z"}\n'
with open(path, "wb") as out:
    for start in range(0, n, 100_000):
        out.write(b"".join(head + b"%032x" % i + tail for i in range(start, min(n, start + 100_000))))
"""

DEDUPE_KEYS = 1_000_000
# the rows above run with the defaults: on 2+ CPUs that is one helper process beside harmony-alerts
ONE_PROCESS = "defaults in one process (no helper): what a 1-CPU machine or --workers 0 gets"


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    corpus, records, size = ctx.corpus()
    label = f"HEC corpus {size_label(size)}"
    rows = []
    floor, ours, every, alone = compared_runs(ctx, corpus)
    rows.append(
        row(GROUP, "orjson floor (loads+dumps)", records, size, floor, baseline=True, key="alerts_floor", input=label)
    )
    if ctx.jq:
        jq = ctx.measure([ctx.jq, "-c", JQ_FILTER], stdin_path=corpus)
        rows.append(row(GROUP, "jq -c select+reshape", records, size, jq, baseline=True, key="alerts_jq", input=label))
    rows.append(
        row(
            GROUP, "harmony-alerts", records, size, ours, notes="normalize + filter + dedupe", key="alerts", input=label
        )
    )
    rows.append(
        row(
            GROUP,
            "harmony-alerts --all --no-dedupe",
            records,
            size,
            every,
            notes="every event an alert",
            key="alerts_all",
            input=label,
        )
    )
    rows.append(
        row(GROUP, "harmony-alerts --workers 0", records, size, alone, notes=ONE_PROCESS, key="alerts_one",
            input=label)
    )  # fmt: skip
    state = ctx.workdir / "alerts-state"
    with_state = ctx.measure([ctx.bin("harmony-alerts"), "--state-dir", str(state)], stdin_path=corpus)
    rows.append(
        row(
            GROUP,
            "harmony-alerts --state-dir",
            records,
            size,
            with_state,
            notes="keys persisted",
            key="alerts_state",
            input=label,
        )
    )
    rows.extend(alerts_corpus_rows(ctx))
    rows.append(startup_row(ctx))
    rows.append(dedupe_rss_row(ctx))
    return rows


def compared_runs(ctx: BenchContext, corpus: Path) -> list[Measurement]:
    """The floor, harmony-alerts (defaults), `--all --no-dedupe` and `--workers 0` on one input,
    measured in rounds (`measure_rounds`), so a ratio never pairs a quiet minute with a busy one."""

    def command(argv: list[str]) -> Callable[[], Measurement]:
        return lambda: ctx.measure(argv, stdin_path=corpus)

    alerts = ctx.bin("harmony-alerts")
    runs = {
        "floor": command([ctx.python, "-c", FLOOR]),
        "ours": command([alerts]),
        "every": command([alerts, "--all", "--no-dedupe"]),
        "alone": command([alerts, "--workers", "0"]),
    }
    return list(ctx.measure_rounds(runs).values())


def alerts_corpus_rows(ctx: BenchContext) -> list[dict[str, Any]]:
    """The same floor and harmony-alerts (defaults, `--all --no-dedupe`) on the alerts corpus."""
    corpus, records, size = ctx.alerts_corpus()
    label = f"alerts corpus {size_label(size)} (hec-emulator events, 95% alerts)"
    floor, ours, every, alone = compared_runs(ctx, corpus)
    return [
        row(GROUP, "orjson floor (loads+dumps)", records, size, floor, baseline=True, key="alerts_hec_floor",
            input=label),
        row(GROUP, "harmony-alerts", records, size, ours, notes="normalize + filter + dedupe", key="alerts_hec",
            input=label),
        row(GROUP, "harmony-alerts --all --no-dedupe", records, size, every, notes="every event an alert",
            key="alerts_hec_all", input=label),
        row(GROUP, "harmony-alerts --workers 0", records, size, alone, notes=ONE_PROCESS, key="alerts_hec_one",
            input=label),
    ]  # fmt: skip


def startup_row(ctx: BenchContext) -> dict[str, Any]:
    """Median wall time of `harmony-alerts < /dev/null` over 10 runs (target < 150 ms)."""
    runs = [ctx.measure([ctx.bin("harmony-alerts")], stdin_path="/dev/null") for _ in range(10)]
    walls = sorted(m.wall_secs for m in runs)
    median = walls[len(walls) // 2]
    rss = max(m.peak_rss_mb for m in runs)
    m = Measurement(median, rss, 0, "")
    notes = f"median of 10: {median * 1000:.0f} ms (min {walls[0] * 1000:.0f}, max {walls[-1] * 1000:.0f})"
    return row("start-up", "harmony-alerts < /dev/null", 0, 0, m, notes=notes, key="startup", input="empty")


def dedupe_rss_row(ctx: BenchContext) -> dict[str, Any]:
    """Peak RSS (VmHWM) of the real harmony-alerts process holding `DEDUPE_KEYS` x scale keys."""
    keys = max(10_000, int(DEDUPE_KEYS * ctx.scale))
    events = ctx.workdir / f"dedupe-{keys}.ndjson"
    subprocess.run([ctx.python, "-c", DEDUPE_EVENTS, str(keys), str(events)], check=True)
    size = events.stat().st_size
    m = ctx.measure([ctx.bin("harmony-alerts")], stdin_path=events)
    stats = stats_line(m.stderr_tail)
    if stats.get("dedupe_keys") != keys or stats.get("records_out") != keys:
        raise RuntimeError(f"harmony-alerts held {stats.get('dedupe_keys')} keys for {keys} unique alerts: {stats}")
    events.unlink()
    return row(
        "dedupe",
        f"harmony-alerts holding {keys:,} dedupe keys",
        keys,
        size,
        m,
        key="dedupe_keys",
        input=f"{keys:,} unique small alerts, {size_label(size)}",
        notes=f"peak RSS (VmHWM) of harmony-alerts plus its helper process (the sum; defaults, "
        f"--dedupe-max-keys 1,000,000), output to /dev/null; stats: dedupe_keys {stats['dedupe_keys']:,}, "
        f"helper_processes {stats.get('helper_processes', 0)}",
    )


if __name__ == "__main__":
    run_standalone(run)
