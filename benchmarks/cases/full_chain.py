"""The whole product as users run it: `harmony-events --once | harmony-alerts | s3-batch file://`
against hec-emulator on 127.0.0.1, with the source alone measured in the same run as the
chain's ceiling (a pipe is never faster than its first process).

Rows (group "full-chain"):
  - `harmony-events --once (source alone)` (baseline): collection alone from the same emulator;
  - `harmony-events → harmony-alerts`: the shell pipe, collection + normalize/filter/dedupe;
  - `harmony-events → harmony-alerts → s3-batch file://`: the full chain, objects written.
(`→` in the case names: a `|` would split the Markdown table cell.)
records = events served by the emulator; bytes = their NDJSON size. Each run starts from empty
state dirs, so every run collects and processes every event. The emulator is started once, is
not part of the measured process tree, and answers the same generated tenant for every row.

Runs inside `benchmarks/run_pipe.py` (`run(ctx)`) or alone: `python benchmarks/cases/full_chain.py`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from pipes_common import StandaloneContext, row, scale  # noqa: E402

GROUP = "full-chain"
EVENTS = 100_000
SEED = 42
SPAN_SECS = 3600  # the tenant's events spread over the last hour, collected with --start 2h
CLIENT_ID = "bench-client"
ACCESS_KEY = "bench-access-key-not-secret"


def start_emulator(ctx: Any, events: int, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    argv = [ctx.bin("hec-emulator"), "--port", "0", "--generate", str(events), "--seed", str(SEED)]
    argv += ["--span-secs", str(SPAN_SECS)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(60)
    if not line or not line[0].strip():
        proc.kill()
        raise RuntimeError("hec-emulator printed no URL")
    import json

    return proc, json.loads(line[0])["url"]


def run(ctx: Any) -> list[dict[str, Any]]:
    events = max(1000, int(EVENTS * scale()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARMONY_", "S3_BATCH_"))}
    env.update(
        {
            "HARMONY_CLIENT_ID": CLIENT_ID,
            "HARMONY_ACCESS_KEY": ACCESS_KEY,
            "HEC_EMULATOR_CLIENT_ID": CLIENT_ID,
            "HEC_EMULATOR_ACCESS_KEY": ACCESS_KEY,
        }
    )
    emulator, url = start_emulator(ctx, events, env)
    env["HARMONY_BASE_URL"] = url
    q = shlex.quote
    work = ctx.workdir / "full-chain"
    rows: list[dict[str, Any]] = []
    try:

        def fresh(name: str) -> Path:
            path = work / name
            if path.exists():
                shutil.rmtree(path)
            path.mkdir(parents=True)
            return path

        source = f"{q(ctx.bin('harmony-events'))} --once --start 2h --state-dir {{state}}/events"
        alerts = f"{q(ctx.bin('harmony-alerts'))} --state-dir {{state}}/alerts"

        state = fresh("source")
        events_file = state / "events.ndjson"
        m = ctx.measure(source.format(state=q(str(state))) + f" > {q(str(events_file))}", env=env)
        served = sum(1 for line in events_file.open("rb") if line.strip())
        size = events_file.stat().st_size
        rows.append(row(GROUP, "harmony-events --once (source alone)", served, size, m, True, "the chain's ceiling"))

        state = fresh("events-alerts")
        m = ctx.measure(f"{source} | {alerts} > /dev/null".format(state=q(str(state))), env=env)
        rows.append(
            row(GROUP, "harmony-events → harmony-alerts", served, size, m, False, "a shell pipe; output discarded")
        )

        state = fresh("chain")
        out = fresh("chain-out")
        sink = f"{q(ctx.bin('s3-batch'))} --dest file://{out}/ --state-dir {{state}}/s3-batch"
        receipts = state / "receipts.ndjson"
        m = ctx.measure(
            f"{source} | {alerts} | {sink} > {q(str(receipts))}".format(state=q(str(state))),
            env=env,
        )
        import json

        written = [json.loads(line) for line in receipts.read_text().splitlines() if line.strip()]
        alerts_written = sum(r["records"] for r in written)
        notes = f"a shell pipe; {len(written)} objects, {alerts_written:,} alerts written to file://"
        rows.append(row(GROUP, "harmony-events → harmony-alerts → s3-batch file://", served, size, m, False, notes))
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            emulator.kill()
    return rows


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-chain-") as tmp:
        for item in run(StandaloneContext(Path(tmp))):
            rps = item["records"] / item["wall_secs"]
            print(f"{item['case']:55s} {rps:10.0f} rec/s {item['peak_rss_mb']:6.1f} MB  {item['notes']}")
