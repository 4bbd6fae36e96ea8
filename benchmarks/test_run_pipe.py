"""The benchmark runner's own logic (no measuring): argument handling, ratios only between rows of
one input, merging a partial run, and the targets table. `make bench` skips these
(`--benchmark-only`); `pytest benchmarks --benchmark-disable` runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks.harness import BenchContext, Measurement, merge_results, render_report, row, with_rates
from benchmarks.targets import evaluate

RUN_PIPE = Path(__file__).resolve().parent / "run_pipe.py"


def _m(secs: float, rss: float = 10.0) -> Measurement:
    return Measurement(secs, rss, 0, "")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RUN_PIPE), *args], capture_output=True, text=True, timeout=60)


def test_help_runs_nothing_and_writes_nothing(tmp_path) -> None:
    done = _run("--help", "--out-dir", str(tmp_path))
    assert done.returncode == 0
    assert "--scale" in done.stdout and "alerts" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_unknown_case_is_one_line_and_exit_2(tmp_path) -> None:
    done = _run("alerts", "nope", "--out-dir", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "unknown case 'nope'" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_list_names_every_case() -> None:
    done = _run("--list")
    assert done.returncode == 0
    for name in ("alerts", "s3_batch", "full_chain", "discovery"):
        assert name in done.stdout


def test_ratios_pair_only_rows_of_the_same_input() -> None:
    rows = with_rates(
        [
            row("g", "floor small", 100, 10**6, _m(1.0), baseline=True, key="f1", input="small"),
            row("g", "ours small", 100, 10**6, _m(2.0), key="o1", input="small"),
            row("g", "floor big", 400, 4 * 10**6, _m(2.0), baseline=True, key="f4", input="big"),
            row("g", "ours big", 400, 4 * 10**6, _m(4.0), key="o4", input="big"),
            row("h", "pipe", 100, 10**6, _m(4.0), key="p", input="small", compare=["o1", "f1"]),
        ]
    )
    by_key = {r["key"]: r for r in rows}
    assert by_key["o1"]["ratios"] == {"floor small": 0.5}
    assert by_key["o4"]["ratios"] == {"floor big": 0.5}
    assert by_key["p"]["ratios"] == {"ours small": 0.5, "floor small": 0.25}
    assert by_key["o1"]["mb_per_sec"] == 0.5  # MB = 10^6 bytes


def _stored(group: str, case: str, bench_case: str) -> dict:
    r = with_rates([row(group, case, 10, 10, _m(1.0), key=case)])[0]
    r["bench_case"] = bench_case
    return r


def _meta(when: str, case: str) -> dict:
    return {"measured_at": when, "scale": 1.0, "bench_case": case, "cpus": 2, "python": "3.11"}


def test_partial_run_replaces_only_its_groups() -> None:
    previous = {
        "rows": [
            _stored("harmony-alerts", "old alerts", "alerts"),
            _stored("s3-batch", "old s3", "s3_batch"),
            _stored("retired-group", "gone", "alerts"),
        ],
        "groups": {
            "harmony-alerts": _meta("t0", "alerts"),
            "s3-batch": _meta("t0", "s3_batch"),
            "retired-group": _meta("t0", "alerts"),
        },
        "failures": {"s3_batch": "s3_batch: boom"},
    }
    new = [_stored("harmony-alerts", "new alerts", "alerts")]
    merged = merge_results(
        previous, new, {"harmony-alerts": _meta("t1", "alerts")}, {"alerts": None}, {}, ["alerts", "s3_batch"]
    )
    assert [r["case"] for r in merged["rows"]] == ["new alerts", "old s3"]
    assert merged["groups"]["harmony-alerts"]["measured_at"] == "t1"
    assert merged["groups"]["s3-batch"]["measured_at"] == "t0"
    assert "retired-group" not in merged["groups"]
    assert merged["failures"] == {"s3_batch": "s3_batch: boom"}


def test_a_case_that_failed_keeps_its_old_rows_and_says_so() -> None:
    previous = {"rows": [_stored("s3-batch", "old s3", "s3_batch")], "groups": {"s3-batch": _meta("t0", "s3")}}
    merged = merge_results(previous, [], {}, {"s3_batch": "s3_batch: boom"}, {}, ["s3_batch"])
    assert [r["case"] for r in merged["rows"]] == ["old s3"]
    assert merged["failures"] == {"s3_batch": "s3_batch: boom"}
    assert "boom" in render_report({"machine": {}, **merged})


def _alerts_rows(ours_secs: float, floor_secs: float, jq_secs: float | None) -> list[dict]:
    rows = [
        row("harmony-alerts", "floor", 1000, 1000, _m(floor_secs), baseline=True, key="alerts_floor", input="c"),
        row("harmony-alerts", "ours", 1000, 1000, _m(ours_secs), key="alerts", input="c"),
        row("start-up", "start", 0, 0, _m(0.2), key="startup"),
        row("dedupe", "keys", 1_000_000, 10, _m(5.0, rss=60.0), key="dedupe_keys"),
        row("s3-batch", "s3 1g", 10, 2**30, _m(1.0, rss=151.0), key="s3_file_1g", input="big"),
    ]
    if jq_secs is not None:
        rows.append(row("harmony-alerts", "jq", 1000, 1000, _m(jq_secs), baseline=True, key="alerts_jq", input="c"))
    return with_rates(rows)


@pytest.mark.parametrize("scale", [1.0, 0.05])
def test_targets_report_met_missed_and_unmeasured(scale: float) -> None:
    groups = {g: {"measured_at": "t", "scale": scale} for g in ("harmony-alerts", "start-up", "dedupe", "s3-batch")}
    result = {e["target"]: e for e in evaluate(_alerts_rows(1.0, 0.9, None), groups)}
    floor = result["harmony-alerts ≥ 0.8× the orjson floor (records/s)"]
    assert floor["met"] is True and floor["figure"].startswith("0.90×")
    assert result["harmony-alerts ≥ 4× jq (records/s)"]["met"] is None  # jq not installed
    assert result["start-up: `harmony-alerts < /dev/null` < 150 ms (median wall)"]["met"] is False
    dedupe = next(e for t, e in result.items() if t.startswith("1,000,000 dedupe keys"))
    assert dedupe["met"] is True
    assert result["s3-batch peak RSS ≤ 150 MB with 1 GiB of input"]["met"] is False
    assert result["s3-batch → moto S3 ≥ 0.7× the floor (records/s)"]["met"] is None  # no rows


def test_size_defined_targets_wait_for_the_full_size() -> None:
    rows = with_rates([row("dedupe", "keys", 50_000, 10, _m(1.0, rss=30.0), key="dedupe_keys")])
    (dedupe,) = [e for e in evaluate(rows, {"dedupe": {"scale": 0.05}}) if e["target"].startswith("1,000,000")]
    assert dedupe["met"] is None and "not evaluated" in dedupe["note"]


def test_borderline_ratio_is_not_rounded_up_to_the_target() -> None:
    rows = _alerts_rows(1.0, 0.797, None)  # 0.797x the floor: misses 0.8
    (entry,) = [e for e in evaluate(rows, {}) if e["target"] == "harmony-alerts ≥ 0.8× the orjson floor (records/s)"]
    assert entry["met"] is False and entry["figure"].startswith("0.797×")


def test_alerts_corpus_is_emulator_events_mostly_alerts(tmp_path) -> None:
    """95% alerts by harmony-alerts' own default keep rule, real `data` sentences, ~2% repeated
    events; same seed, same bytes; as many lines as the HEC corpus at the same scale."""
    from gen_corpus import is_alert, write_alerts_corpus

    from harmony_pipes._core.hec import parse_severity
    from harmony_pipes.harmony_alerts.normalize import KeepPolicy
    from harmony_pipes.hec_emulator.generate import TYPES

    path, again = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    size = write_alerts_corpus(path, 4000, seed=7)
    assert write_alerts_corpus(again, 4000, seed=7) == size and path.read_bytes() == again.read_bytes()
    events = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert len(events) == 4000 and size == path.stat().st_size
    policy = KeepPolicy()
    kept = [e for e in events if policy.reasons(e.get("type"), parse_severity(e.get("severity"))) is not None]
    assert 0.93 <= len(kept) / len(events) <= 0.97
    assert [is_alert(e) for e in events] == [e in kept for e in events]  # the restated rule is the real one
    assert {e["type"] for e in events} <= {t[0] for t in TYPES}
    assert len({e["type"] for e in kept}) >= 6  # every kind of sentence, not one template
    with_sentence = [e for e in events if "#{" in (e.get("data") or "")]
    assert len(with_sentence) / len(events) > 0.9
    unique = {(e["customerId"], e["eventId"]) for e in events}
    assert 0.01 <= 1 - len(unique) / len(events) <= 0.03
    assert 1000 < size / len(events) < 2000  # ~1.5 KB per event


def test_alerts_corpus_scales_like_the_hec_corpus(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HARMONY_BENCH_SCALE", "0.01")
    ctx = BenchContext(tmp_path)
    assert ctx.alerts_corpus()[1] == ctx.corpus()[1] == 2000
    assert ctx.alerts_corpus()[0] != ctx.corpus()[0]


def test_issue_14_alerts_targets_pair_rows_of_their_own_corpus() -> None:
    hec, emu = "HEC corpus", "alerts corpus"
    rows = with_rates(
        [
            row("harmony-alerts", "floor", 1000, 1000, _m(1.0), baseline=True, key="alerts_floor", input=hec),
            row("harmony-alerts", "ours", 1000, 1000, _m(0.9), key="alerts", input=hec),
            row("harmony-alerts", "all", 1000, 1000, _m(1.25), key="alerts_all", input=hec),
            row("harmony-alerts", "floor", 1000, 1000, _m(2.0), baseline=True, key="alerts_hec_floor", input=emu),
            row("harmony-alerts", "ours", 1000, 1000, _m(4.0), key="alerts_hec", input=emu),
            row("harmony-alerts", "all", 1000, 1000, _m(2.2), key="alerts_hec_all", input=emu),
        ]
    )
    found = {e["target"]: e for e in evaluate(rows, {}) if e["issue"] == "#14" and "harmony-alerts" in e["target"]}
    assert len(found) == 4
    by_corpus = {(("alerts" in t.split(", ")[-1]), "--all" in t): e for t, e in found.items()}
    assert by_corpus[(False, False)]["met"] is True and by_corpus[(False, False)]["figure"].startswith("1.11×")
    assert by_corpus[(False, True)]["met"] is False and by_corpus[(False, True)]["figure"].startswith("0.80×")
    assert by_corpus[(True, False)]["met"] is False and by_corpus[(True, False)]["figure"].startswith("0.50×")
    assert by_corpus[(True, True)]["met"] is True and by_corpus[(True, True)]["figure"].startswith("0.91×")
    assert all(emu in e["figure"] for (alerts, _), e in by_corpus.items() if alerts)
    # the #3 floor target still reads the HEC corpus's rows
    (floor3,) = [e for e in evaluate(rows, {}) if e["issue"] == "#3" and "orjson floor" in e["target"]]
    assert floor3["figure"].startswith("1.11×") and hec in floor3["figure"]
