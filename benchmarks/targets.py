"""The issues' benchmark targets, checked against the stored figures.

Each target reads rows of ONE group (a group is always replaced as a whole, so its rows come from
one run): a ratio target compares two rows of that group on the same input, a limit target reads
one row. A target whose row is missing says so; a target defined by a size (1,000,000 keys, 1 GiB
of input) is not evaluated when the run measured less (a reduced `--scale`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 2**30


@dataclass(frozen=True)
class Target:
    issue: str
    text: str
    group: str
    key: str
    kind: str  # "ratio" (key vs versus, >= limit), "max_ms" (wall < limit), "max_rss" (RSS <= limit)
    limit: float
    versus: str = ""
    min_records: int = 0  # size-defined targets: evaluated only when the row measured this much
    min_bytes: int = 0


TARGETS = [
    Target("#3", "harmony-alerts ≥ 0.8× the orjson floor (records/s)", "harmony-alerts", "alerts", "ratio", 0.8,
           "alerts_floor"),
    Target("#3", "harmony-alerts ≥ 4× jq (records/s)", "harmony-alerts", "alerts", "ratio", 4.0, "alerts_jq"),
    Target("#3", "start-up: `harmony-alerts < /dev/null` < 150 ms (median wall)", "start-up", "startup", "max_ms",
           150.0),
    Target("#3", "1,000,000 dedupe keys ≤ 100 MB RSS (peak VmHWM of harmony-alerts and its helper, summed, fed 1M "
           "unique alerts)", "dedupe", "dedupe_keys", "max_rss", 100.0, min_records=1_000_000),
    Target("#5", "s3-batch → moto S3 ≥ 0.7× the floor (records/s)", "s3-batch", "s3_moto", "ratio", 0.7, "s3_floor"),
    Target("#5", "s3-batch → moto S3 ≥ 1× Fluent Bit out_s3 into the same moto (records/s)", "s3-batch", "s3_moto",
           "ratio", 1.0, "fb_out_s3"),
    Target("#5", "s3-batch → file:// ≥ 0.7× the floor (records/s)", "s3-batch", "s3_file", "ratio", 0.7, "s3_floor"),
    Target("#5", "s3-batch → file:// ≥ 0.7× the floor on 1 GiB (records/s)", "s3-batch", "s3_file_1g", "ratio", 0.7,
           "s3_floor_1g", min_bytes=GIB),
    Target("#5", "s3-batch peak RSS ≤ 150 MB with 1 GiB of input", "s3-batch", "s3_file_1g", "max_rss", 150.0,
           min_bytes=GIB),
    Target("#10", "harmony-pipes chain ≥ 0.9× the shell pipe of the same stages (records/s)", "full-chain",
           "hp_chain", "ratio", 0.9, "chain"),
    Target("#12", "harmony-events (defaults) ≥ 0.8× the minimal client's rate (records/s)", "harmony-events",
           "events_default", "ratio", 0.8, "emulator_serving"),
    Target("#13", "harmony-alerts with --metrics-addr ≥ 0.97× without (records/s, scraped every second)",
           "metrics-cost", "alerts_metrics", "ratio", 0.97, "alerts_plain"),
    Target("#13", "s3-batch → file:// with --metrics-addr ≥ 0.97× without (records/s, scraped every second)",
           "metrics-cost", "s3_metrics", "ratio", 0.97, "s3_plain"),
    Target("#14", "harmony-alerts (defaults) ≥ 1.0× the orjson floor, HEC corpus (records/s)", "harmony-alerts",
           "alerts", "ratio", 1.0, "alerts_floor"),
    Target("#14", "harmony-alerts --all --no-dedupe ≥ 0.85× the orjson floor, HEC corpus (records/s)",
           "harmony-alerts", "alerts_all", "ratio", 0.85, "alerts_floor"),
    Target("#14", "harmony-alerts (defaults) ≥ 1.0× the orjson floor, alerts corpus (records/s)", "harmony-alerts",
           "alerts_hec", "ratio", 1.0, "alerts_hec_floor"),
    Target("#14", "harmony-alerts --all --no-dedupe ≥ 0.85× the orjson floor, alerts corpus (records/s)",
           "harmony-alerts", "alerts_hec_all", "ratio", 0.85, "alerts_hec_floor"),
    Target("#14", "s3-batch → file:// ≥ 1.5× the zlib-6 floor (records/s)", "s3-batch", "s3_file", "ratio", 1.5,
           "s3_floor"),
    Target("#14", "s3-batch → moto S3 ≥ 1.2× the zlib-6 floor (records/s)", "s3-batch", "s3_moto", "ratio", 1.2,
           "s3_floor"),
    Target("#14", "s3-batch → moto S3 ≥ 2× Fluent Bit out_s3 into the same moto (records/s)", "s3-batch", "s3_moto",
           "ratio", 2.0, "fb_out_s3"),
]  # fmt: skip


def _find(rows: list[dict[str, Any]], group: str, key: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["group"] == group and r.get("key", r["case"]) == key), None)


def evaluate(rows: list[dict[str, Any]], groups: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per target: {issue, target, figure, met (True/False/None), note}."""
    out = []
    for t in TARGETS:
        meta = groups.get(t.group, {})
        scale = meta.get("scale")
        entry: dict[str, Any] = {"issue": t.issue, "target": t.text, "figure": "–", "met": None, "note": ""}
        when = f"measured {meta.get('measured_at') or '?'}" + (
            f", scale {scale}" if scale not in (None, 1, 1.0) else ""
        )
        ours = _find(rows, t.group, t.key)
        if ours is None:
            entry["note"] = f"not measured (no `{t.key}` row in group {t.group})"
            out.append(entry)
            continue
        if t.kind == "ratio":
            base = _find(rows, t.group, t.versus)
            if base is None:
                entry["note"] = f"baseline `{t.versus}` not measured in this group's run (e.g. tool not installed)"
            elif base.get("input", "") != ours.get("input", ""):
                entry["note"] = f"not comparable: {ours.get('input')} vs {base.get('input')}"
            elif ours.get("records_per_sec") and base.get("records_per_sec"):
                ratio = ours["records_per_sec"] / base["records_per_sec"]
                shown = f"{ratio:.3f}" if abs(ratio - t.limit) < 0.01 else f"{ratio:.2f}"  # 0.697 is no 0.70
                entry["figure"] = (
                    f"{shown}× ({ours['records_per_sec']:,.0f} vs {base['records_per_sec']:,.0f} rec/s, "
                    f"{ours.get('input') or 'same input'})"
                )
                entry["met"] = ratio >= t.limit
        elif t.kind == "max_ms":
            ms = (ours.get("wall_secs") or 0) * 1000
            entry["figure"] = f"{ms:.0f} ms"
            entry["met"] = ms < t.limit
        elif t.kind == "max_rss":
            rss = ours.get("peak_rss_mb") or 0
            entry["figure"] = f"{rss:.1f} MB ({ours.get('records', 0):,} records, {ours.get('input') or '?'})"
            entry["met"] = rss <= t.limit
        if entry["met"] is not None and (
            (ours.get("records") or 0) < t.min_records or (ours.get("bytes") or 0) < t.min_bytes
        ):
            entry["met"] = None
            entry["note"] = "not evaluated: the run measured less than the target's size (reduced scale)"
        entry["note"] = "; ".join(filter(None, [entry["note"], when]))
        out.append(entry)
    return out


def render_targets(entries: list[dict[str, Any]]) -> str:
    lines = ["| issue | target | figure (one run of the group) | met? | notes |", "|---|---|---|---|---|"]
    for e in entries:
        met = {True: "met", False: "**MISSED**", None: "not evaluated"}[e["met"]]
        cells = [e["issue"], e["target"], e["figure"], met, e["note"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
