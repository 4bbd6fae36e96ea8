"""Fluent Bit baselines for the harmony-alerts group, on the same corpus as harmony-alerts' rows.

Rows (group "harmony-alerts", all `baseline: True`):
  - `fluent-bit stdin->file`: Fluent Bit reading the NDJSON corpus and writing every record to a
    file, no parsing beyond its own JSON decode — the shipper's floor on this data;
  - `fluent-bit lua (normalize+filter+dedupe)`: the same work as harmony-alerts' defaults done
    by Fluent Bit's Lua filter (`benchmarks/lua/harmony_alerts.lua`): keep type in
    phishing/malware/alert/dlp or severity >= 4, build the native alert record, dedupe on
    tenant + eventId — the like-for-like ratio.

Both feed Fluent Bit through a pipe (`cat corpus | fluent-bit -i stdin`: the stdin plugin cannot
epoll a regular file) with no parser (`-p parser=json` on stdin silently drops NDJSON), `Grace 1`
so shutdown waits 1 s instead of 5, and count the records written so a lossy run says so. Fluent
Bit's start-up and shutdown ticks add 1-2 s to each run (the notes give the wall time of the
same command on empty input); the corpus is sized so a run takes several seconds.

Runs inside `benchmarks/run_pipe.py` (`run(ctx)`) or alone: `python benchmarks/cases/fluentbit.py`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from pipes_common import corpus, corpus_label, fluent_bit, row, run_standalone  # noqa: E402

GROUP = "harmony-alerts"
LUA = HERE.parent / "lua" / "harmony_alerts.lua"

FILE_CONF = """\
[SERVICE]
    Flush        1
    Grace        1
    Log_Level    warn
{parsers}
[INPUT]
    Name         stdin
    Tag          bench
    Buffer_Size  1M
{filter}
[OUTPUT]
    Name         file
    Match        *
    Path         {out_dir}
    File         out.ndjson
    Format       plain
"""

LUA_FILTER = """
[FILTER]
    Name         lua
    Match        *
    script       {script}
    call         harmony_alert
    # JSON null stays null (as nil it would delete the key): same records as harmony-alerts
    enable_flb_null true
"""


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def run(ctx: Any) -> list[dict[str, Any]]:
    binary = fluent_bit(ctx)
    if binary is None:
        return []
    path, records, size = corpus(ctx)
    rows = []
    for key, case, filter_block, note in [
        ("alerts_fb_file", "fluent-bit stdin->file", "", "no transform: Fluent Bit's floor on this corpus"),
        (
            "alerts_fb_lua",
            "fluent-bit lua (normalize+filter+dedupe)",
            LUA_FILTER.format(script=LUA),
            "same rules as harmony-alerts defaults, Lua filter (same records: tests/pipelines/test_fluentbit_lua.py)",
        ),
    ]:
        work = ctx.workdir / case.split()[1].replace("->", "-to-").replace("(", "")
        if work.exists():
            shutil.rmtree(work)
        out_dir = work / "out"
        out_dir.mkdir(parents=True)
        conf = work / "fluent-bit.conf"
        conf.write_text(FILE_CONF.format(parsers="", filter=filter_block, out_dir=out_dir))
        fluent = f"{shlex.quote(binary)} -q -c {shlex.quote(str(conf))}"
        # Fluent Bit's start-up + shutdown ticks on empty input, so a reader can see the fixed
        # cost inside the wall time (not subtracted).
        empty = ctx.measure(f": | {fluent}", env=dict(os.environ))

        def once(out_dir: Path = out_dir, fluent: str = fluent) -> Any:
            (out_dir / "out.ndjson").unlink(missing_ok=True)
            return ctx.measure(f"cat {shlex.quote(str(path))} | {fluent}", env=dict(os.environ))

        measurement = ctx.measure_best(once)
        written = _count_lines(out_dir / "out.ndjson")
        notes = f"{note}; {written:,} records written; empty-input run {empty.wall_secs:.1f} s"
        busy_secs = measurement.wall_secs - empty.wall_secs
        if busy_secs > 0.5:  # else the run is all start-up/shutdown ticks: no meaningful net rate
            notes += f" (net of it: {records / busy_secs:,.0f} rec/s)"
        rows.append(row(GROUP, case, records, size, measurement, True, notes, key=key, input=corpus_label(size)))
    return rows


if __name__ == "__main__":
    run_standalone(run)
