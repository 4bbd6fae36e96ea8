"""The benchmark's Lua baseline is like-for-like: Fluent Bit running benchmarks/lua/harmony_alerts.lua
(with the exact config the benchmark case builds) writes the same alerts as harmony-alerts on the
same seeded corpus — same count, same eventIds, each record equal as JSON — so the ratio in
RESULTS.md compares the same work."""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import REPO_ROOT, run_cli

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("fb-traps")]

RECORDS = 3000


def bench_case():
    """benchmarks/cases/fluentbit.py, loaded by path as run_pipe.py does."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("_bench_fluentbit_case", REPO_ROOT / "benchmarks/cases/fluentbit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lua_filter_writes_the_same_alerts_as_harmony_alerts(fluent_bit_path, tmp_path) -> None:
    case = bench_case()
    from gen_corpus import write_corpus

    corpus = tmp_path / "corpus.ndjson"
    write_corpus(corpus, RECORDS, seed=5)  # ~2% duplicates, nulls, every event type
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text(case.FILE_CONF.format(parsers="", filter=case.LUA_FILTER.format(script=case.LUA), out_dir=out_dir))
    fluent = subprocess.run(
        f"cat {shlex.quote(str(corpus))} | {shlex.quote(fluent_bit_path)} -q -c {shlex.quote(str(conf))}",
        shell=True,
        capture_output=True,
        timeout=60,
    )
    assert fluent.returncode == 0, fluent.stderr.decode()[-2000:]
    lua = [orjson.loads(line) for line in (out_dir / "out.ndjson").read_bytes().splitlines()]

    alone = run_cli(["harmony-alerts"], corpus.read_bytes(), env={})
    assert alone.returncode == 0, alone.stderr
    expected = [orjson.loads(line) for line in alone.stdout_lines]

    assert 0 < len(expected) < RECORDS
    assert alone.stats["duplicates"] > 0, "the corpus must exercise dedupe"
    assert len(lua) == len(expected)
    by_id = {a["event_id"]: a for a in expected}
    assert len(by_id) == len(expected)
    assert sorted(a["event_id"] for a in lua) == sorted(by_id)
    for alert in lua:
        assert alert == by_id[alert["event_id"]], alert["event_id"]
    assert any(a["sender"] is None for a in expected), "the corpus must carry nulls (Lua drops nil keys)"


def test_bench_case_uses_the_shipped_lua_file() -> None:
    case = bench_case()
    assert Path(case.LUA) == REPO_ROOT / "benchmarks" / "lua" / "harmony_alerts.lua"
    assert "enable_flb_null true" in case.LUA_FILTER
