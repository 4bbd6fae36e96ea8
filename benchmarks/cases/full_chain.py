"""harmony-events against hec-emulator on 127.0.0.1, next to the emulator's own serving rate, and
the product as users run it: `harmony-events --once | harmony-alerts [| s3-batch file://]`.

Group "harmony-events":
  - `emulator serving rate` (baseline): a minimal Python client (requests, one keep-alive session)
    that authenticates and scrolls the same windows as harmony-events (3600 s from `--start 2h`
    to now), reading only each page's envelope head for the scrollId and discarding the bodies —
    what the emulator can serve to one client, so harmony-events' ratio shows the collector's own
    cost, not the server's;
  - `harmony-events --once` with `--max-records-per-window` above the tenant's size: one scroll
    per window, every event read once, like the client (the like-for-like ratio);
  - `harmony-events --once` with defaults: a window returning >= 10,000 events is split in half
    and re-read (how a truncating gateway loses nothing), so at full scale the emulator serves
    more events than are collected; the notes give the emulator's own count (/_emulator/stats).
Group "full-chain" (the shell pipes, each compared with the source alone and the serving rate):
  - `harmony-events → harmony-alerts`, and `... → s3-batch file://` (objects written);
  - `harmony-pipes chain` with the same three stages (compared with the shell pipe: throughput
    and CPU).
(`→` in the case names: a `|` would split the Markdown table cell.)

records = events in the tenant; bytes = their NDJSON size. Each run starts from empty state
dirs, so every run collects and processes every event. The emulator is started once, is not part
of any measured process tree, and serves the same generated tenant to every row; a first
unmeasured client pass warms it up.

Runs inside `benchmarks/run_pipe.py full_chain` (`run(ctx)`) or alone:
`python benchmarks/cases/full_chain.py` (prints its rows, writes nothing).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from pipes_common import run_standalone, scale  # noqa: E402

from benchmarks.harness import row  # noqa: E402

GROUP_EVENTS = "harmony-events"
GROUP_CHAIN = "full-chain"
EVENTS = 100_000
SEED = 42
SPAN_SECS = 3600  # the tenant's events spread over the last hour, collected with --start 2h
LOOKBACK_SECS = 7200
WINDOW_SECS = 3600  # harmony-events' default --window-secs
DEFAULT_CAP = 10_000  # harmony-events' default --max-records-per-window
CLIENT_ID = "bench-client"
ACCESS_KEY = "bench-access-key-not-secret"

# The emulator's serving rate, seen by the least a client can do: auth, then per window one query
# and its scroll, the scrollId read from the envelope head (it precedes responseData), bodies dropped.
CLIENT = r"""
import os, re, sys, time
import requests
base, window, lookback = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
query = base + "/app/hec-api/v1.0/event/query"
session = requests.Session()
auth = session.post(base + "/auth/external", json={
    "clientId": os.environ["HARMONY_CLIENT_ID"], "accessKey": os.environ["HARMONY_ACCESS_KEY"]})
auth.raise_for_status()
headers = {"Authorization": "Bearer " + auth.json()["data"]["token"], "Content-Type": "application/json"}
head = re.compile(rb'"recordsNumber":(\d+),"scrollId":(null|"[^"]*")')

def stamp(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int(t % 1 * 1e6)

end = time.time()
start = end - lookback
events = pages = 0
while start < end:
    stop = min(end, start + window)
    request = '{"requestData":{"startDate":"%s","endDate":"%s"' % (stamp(start), stamp(stop))
    body = request + "}}"
    while True:
        resp = session.post(query, data=body, headers=headers)
        resp.raise_for_status()
        found = head.search(resp.content, 0, 1024)
        count, scroll = int(found[1]), found[2]
        events += count
        pages += 1
        if count == 0 or scroll in (b"null", b'""'):
            break
        body = request + ',"scrollId":' + scroll.decode() + "}}"
    start = stop
print(events, pages)
"""


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
    return proc, json.loads(line[0])["url"]


def emulator_stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/_emulator/stats", timeout=30) as resp:
        return json.loads(resp.read())


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


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
    label = f"emulator tenant, {events:,} events"
    measured: dict[str, tuple[Any, str]] = {}
    try:

        def fresh(name: str) -> Path:
            path = work / name
            if path.exists():
                shutil.rmtree(path)
            path.mkdir(parents=True)
            return path

        def timed(
            key: str, command: list[str] | str, stdout: Path | None = None, fresh_dirs: tuple[str, ...] = ()
        ) -> Any:
            """The best of ctx.repeats runs, each from fresh state dirs (`fresh_dirs`, under work/);
            note what the emulator served during a run (its own counters)."""

            def once() -> Any:
                for name in fresh_dirs:
                    fresh(name)
                before = emulator_stats(url)
                m = ctx.measure(command, stdout_path=stdout, env=env)
                after = emulator_stats(url)
                served = after["events_served"] - before["events_served"]
                requests = after["requests"] - before["requests"]
                measured[key] = (m, f"emulator served {served:,} events in {requests:,} requests")
                return m

            m = ctx.measure_best(once)
            measured[key] = (m, measured[key][1])
            return m

        client = [ctx.python, "-c", CLIENT, url, str(WINDOW_SECS), str(LOOKBACK_SECS)]
        ctx.measure(client, env=env)  # warm-up, not reported
        client_out = work / "client.txt"
        work.mkdir(parents=True, exist_ok=True)
        timed("emulator_serving", client, client_out)
        client_events, client_pages = map(int, client_out.read_text().split())
        if client_events != events:
            raise RuntimeError(f"the minimal client read {client_events} events of {events}")

        source = f"{q(ctx.bin('harmony-events'))} --once --start 2h --state-dir {{state}}/events"
        alerts = f"{q(ctx.bin('harmony-alerts'))} --state-dir {{state}}/alerts"

        state = fresh("source-once")
        once_file = state / "events.ndjson"
        uncapped = f" --max-records-per-window {events * 2}"
        once_cmd = source.format(state=q(str(state))) + uncapped + f" > {q(str(once_file))}"
        timed("events_once", once_cmd, fresh_dirs=("source-once",))
        if _count_lines(once_file) != events:
            raise RuntimeError(f"harmony-events wrote {_count_lines(once_file)} events of {events}")

        state = fresh("source")
        events_file = state / "events.ndjson"
        timed(
            "events_default", source.format(state=q(str(state))) + f" > {q(str(events_file))}", fresh_dirs=("source",)
        )
        if _count_lines(events_file) != events:
            raise RuntimeError(f"harmony-events wrote {_count_lines(events_file)} events of {events}")
        size = events_file.stat().st_size

        state = fresh("events-alerts")
        timed(
            "events_alerts",
            f"{source} | {alerts} > /dev/null".format(state=q(str(state))),
            fresh_dirs=("events-alerts",),
        )

        state = fresh("chain")
        out = fresh("chain-out")
        sink = f"{q(ctx.bin('s3-batch'))} --dest file://{out}/ --state-dir {{state}}/s3-batch"
        receipts = state / "receipts.ndjson"
        chain_cmd = f"{source} | {alerts} | {sink} > {q(str(receipts))}".format(state=q(str(state)))
        timed("chain", chain_cmd, fresh_dirs=("chain", "chain-out"))
        written = [json.loads(line) for line in receipts.read_text().splitlines() if line.strip()]
        alerts_written = sum(r["records"] for r in written)

        # the same three stages as one `harmony-pipes chain` (records handed over in memory)
        state = fresh("hp-chain")
        out = fresh("hp-chain-out")
        sink = f"{q(ctx.bin('s3-batch'))} --dest file://{out}/ --state-dir {{state}}/s3-batch"
        hp_receipts = state / "receipts.ndjson"
        text = f"{source} | {alerts} | {sink}".format(state=q(str(state)))
        hp_cmd = f"{q(ctx.bin('harmony-pipes'))} chain {q(text)} > {q(str(hp_receipts))}"
        timed("hp_chain", hp_cmd, fresh_dirs=("hp-chain", "hp-chain-out"))
        hp_written = [json.loads(line) for line in hp_receipts.read_text().splitlines() if line.strip()]
        if sum(r["records"] for r in hp_written) != alerts_written:
            raise RuntimeError(
                f"harmony-pipes chain wrote {sum(r['records'] for r in hp_written)} alerts, the pipe {alerts_written}"
            )
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            emulator.kill()

    split_note = (
        f"the tenant's hour holds {events:,} events, so its window is split and re-read"
        if events >= DEFAULT_CAP
        else f"{events:,} events < the 10,000 cap: no window split at this scale"
    )

    def make(key: str, group: str, case: str, notes: str, **extra: Any) -> dict[str, Any]:
        m, served = measured[key]
        return row(group, case, events, size, m, key=key, input=label, notes=f"{notes}; {served}", **extra)

    chain_compare = ["events_default", "emulator_serving"]
    return [
        make(
            "emulator_serving",
            GROUP_EVENTS,
            "emulator serving rate: minimal client (auth + scroll, bodies discarded)",
            f"python requests, one session, the same {WINDOW_SECS} s windows; {client_pages:,} pages",
            baseline=True,
        ),
        make(
            "events_once",
            GROUP_EVENTS,
            "harmony-events --once (one scroll per window)",
            f"--max-records-per-window {events * 2:,}: every event read once, like the client",
        ),
        make(
            "events_default",
            GROUP_EVENTS,
            "harmony-events --once (defaults)",
            f"--max-records-per-window {DEFAULT_CAP:,} (default): {split_note}; the chain's source",
        ),
        make(
            "events_alerts",
            GROUP_CHAIN,
            "harmony-events → harmony-alerts",
            "a shell pipe, defaults; output discarded",
            compare=chain_compare,
        ),
        make(
            "chain",
            GROUP_CHAIN,
            "harmony-events → harmony-alerts → s3-batch file://",
            f"a shell pipe, defaults; {len(written)} objects, {alerts_written:,} alerts written to file://; "
            f"CPU {measured['chain'][0].cpu_secs:.2f} s",
            compare=chain_compare,
        ),
        make(
            "hp_chain",
            GROUP_CHAIN,
            "harmony-pipes chain 'harmony-events → harmony-alerts → s3-batch file://'",
            f"one process, same stages and options; {len(hp_written)} objects, {alerts_written:,} alerts; "
            f"CPU {measured['hp_chain'][0].cpu_secs:.2f} s vs the pipe's {measured['chain'][0].cpu_secs:.2f} s",
            compare=["chain", *chain_compare],
        ),
    ]


if __name__ == "__main__":
    run_standalone(run)
