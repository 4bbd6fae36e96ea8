"""`make demo`: the whole product on one machine in a few seconds, with real processes.

Starts hec-emulator with a generated tenant, runs

    harmony-pipes chain 'harmony-events --once | harmony-alerts | s3-batch --dest file://<cwd>/demo-out/'

(the three stages in one process, checkpoints ordered: the form to use wherever the chain ends
in s3-batch), replays the same collection once more to show that nothing is emitted twice, and
prints a short summary: events collected, alerts kept by reason, duplicates dropped, objects
written with their keys, and one alert. Nothing leaves 127.0.0.1; the only thing written
outside a temp dir is ./demo-out/.
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

DEMO_EVENTS = int(os.environ.get("HARMONY_DEMO_EVENTS", "2000"))
DEMO_SEED = int(os.environ.get("HARMONY_DEMO_SEED", "7"))
DEMO_SPAN_SECS = 3600  # events spread over the last hour; collected with --start 24h
DEMO_CLIENT_ID = "demo-client"
SAMPLE_EVENTS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "hec-events-sample.ndjson"
STARTUP_TIMEOUT_SECS = 15.0


def command(name: str) -> str:
    """Our console script next to this interpreter (the venv), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"Error: {name} is not installed — run `make demo` (it installs the project)")
    return found


@dataclass
class ChainResult:
    """One `harmony-pipes chain` run: its stderr, the stats of each stage, receipts, exit code."""

    text: str
    code: int
    receipts: list[dict[str, Any]]
    stderr_lines: list[str] = field(default_factory=list)

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        for line in reversed(self.stderr_lines):
            if line.startswith('{"stats"'):
                return {stage["command"]: stage for stage in json.loads(line)["stats"].get("stages", [])}
        return {}

    def stats(self, command: str) -> dict[str, Any]:
        return self.stages.get(command, {})

    def problem(self) -> str:
        errors = [line for line in self.stderr_lines if not line.startswith(("{", " "))]
        return errors[-1] if errors else "(no message)"


def run_chain(text: str, env: dict[str, str], stdin: IO[bytes] | None) -> ChainResult:
    """`harmony-pipes chain TEXT` as a real process; stdout holds one receipt per object."""
    proc = subprocess.run(
        [command("harmony-pipes"), "chain", text],
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=600,
    )
    receipts = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    lines = proc.stderr.decode("utf-8", "replace").splitlines()
    return ChainResult(text, proc.returncode, receipts, lines)


def start_emulator(env: dict[str, str]) -> tuple[subprocess.Popen[bytes] | None, str | None, str]:
    """`hec-emulator --port 0 --generate N --seed S`; returns (process, url, why-not)."""
    argv = [command("hec-emulator"), "--port", "0", "--generate", str(DEMO_EVENTS), "--seed", str(DEMO_SEED)]
    argv += ["--span-secs", str(DEMO_SPAN_SECS)]
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    except OSError as exc:
        return None, None, str(exc)
    assert proc.stdout is not None
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(proc.stdout.readline().decode()), daemon=True)
    reader.start()
    reader.join(STARTUP_TIMEOUT_SECS)
    try:
        url = json.loads(found[0])["url"] if found and found[0].strip() else None
    except (ValueError, KeyError, TypeError):
        url = None
    if url is None:
        proc.kill()
        _, err = proc.communicate(timeout=5)
        lines = err.decode("utf-8", "replace").strip().splitlines()
        return None, None, lines[-1] if lines else "it printed no URL"
    return proc, url, ""


def read_object(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    elif path.name.endswith(".zst"):
        import zstandard

        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    text = data.decode()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def object_path(receipt: dict[str, Any]) -> Path:
    return Path(receipt["bucket"]) / receipt["key"]


def fmt_int(n: int | float) -> str:
    return f"{int(n):,}"


def summarize(
    source: str,
    first: ChainResult,
    replay: ChainResult | None,
    out_dir: Path,
    elapsed_secs: float,
) -> str:
    alerts_stats = first.stats("harmony-alerts")
    events = first.stats("harmony-events").get("records_out", alerts_stats.get("records_in", 0))
    kept = alerts_stats.get("records_out", 0)
    alerts: list[dict[str, Any]] = []
    for receipt in first.receipts:
        alerts.extend(read_object(object_path(receipt)))
    reasons: Counter[str] = Counter(r for alert in alerts for r in alert.get("alert_reasons") or [])
    lines = [
        "",
        "harmony-pipes demo",
        f"  source      {source}",
        f'  chain       harmony-pipes chain "{first.text}"',
        "              (one process: s3-batch commits first, then harmony-alerts saves its keys, then",
        "               harmony-events its cursor — a kill at any moment loses and repeats nothing)",
        "",
        f"  events collected    {fmt_int(events):>7}",
        f"  alerts kept         {fmt_int(kept):>7}   (type in phishing,malware,alert,dlp or severity >= 4)",
    ]
    for reason, count in reasons.most_common():
        lines.append(f"      {reason:<22}{fmt_int(count):>7}")
    lines.append(f"  duplicates dropped  {fmt_int(alerts_stats.get('duplicates', 0)):>7}   in this run")
    if replay is not None:
        replay_stats = replay.stats("harmony-alerts")
        lines.append(
            f"  replay of the same events: {fmt_int(replay_stats.get('records_in', 0))} in, "
            f"{fmt_int(replay_stats.get('records_out', 0))} new alerts, "
            f"{fmt_int(replay_stats.get('duplicates', 0))} duplicates dropped, "
            f"{len(replay.receipts)} objects"
        )
    lines.append(f"  objects written     {len(first.receipts):>7}")
    for receipt in first.receipts:
        path = object_path(receipt)
        shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        lines.append(f"      {shown}   {fmt_int(receipt['records'])} alerts, {fmt_int(receipt['bytes'])} bytes")
    if alerts:
        sample = dict(alerts[0])
        original = sample.pop("checkpoint_harmony", None)
        if original is not None:
            sample["checkpoint_harmony"] = f"{{...the original event, {len(original)} keys...}}"
        lines += ["", "  one alert:", _indent(json.dumps(sample, indent=2, ensure_ascii=False), 4)]
    lines += [
        "",
        f"  done in {elapsed_secs:.1f} s — objects are in {out_dir}/",
        "",
        "  next (the commands are in .venv/bin; README: Getting started):",
        "    .venv/bin/harmony-events test --region eu        check your own API key (HARMONY_CLIENT_ID,",
        "                                                     HARMONY_ACCESS_KEY)",
        "    .venv/bin/s3-batch test --dest s3://bucket/pfx/  check S3 access; `s3-batch policy` prints the IAM",
        "    .venv/bin/harmony-pipes chain --help             the chain with your gateway and bucket",
        "    pipelines/  deploy/                              Fluent Bit, Vector, systemd, Kubernetes",
        "",
    ]
    return "\n".join(lines)


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line for line in text.splitlines())


def fail(message: str, result: ChainResult | None = None) -> int:
    detail = f": {result.problem()}" if result is not None else ""
    print(f"Error: demo failed — {message}{detail}", file=sys.stderr)
    return 1


def main() -> int:
    started = time.monotonic()
    out_dir = Path.cwd() / "demo-out"
    if out_dir.exists():
        shutil.rmtree(out_dir)  # the demo's own output from an earlier run
    out_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARMONY_", "S3_BATCH_", "AWS_"))}
    env.update({"PYTHONUNBUFFERED": "1", "HARMONY_PIPES_LOG_FORMAT": "text"})
    access_key = secrets.token_urlsafe(24)  # the emulator's tenant key, only ever in env
    env_with_key = {
        **env,
        "HARMONY_CLIENT_ID": DEMO_CLIENT_ID,
        "HARMONY_ACCESS_KEY": access_key,
        "HEC_EMULATOR_CLIENT_ID": DEMO_CLIENT_ID,
        "HEC_EMULATOR_ACCESS_KEY": access_key,
    }
    with tempfile.TemporaryDirectory(prefix="harmony-demo-") as tmp:
        state = Path(tmp)
        emulator, url, why = start_emulator(env_with_key)
        sink = f"s3-batch --dest 'file://{out_dir}/' --state-dir '{state / 's3-batch'}'"
        alerts = f"harmony-alerts --state-dir '{state / 'alerts'}'"
        try:
            if url is not None:
                source = f"hec-emulator at {url} ({fmt_int(DEMO_EVENTS)} generated events, seed {DEMO_SEED})"
                chain_env = {**env_with_key, "HARMONY_BASE_URL": url}

                def collect(state_name: str) -> str:
                    return f"harmony-events --once --start 24h --state-dir '{state / state_name}'"

                first = run_chain(f"{collect('events')} | {alerts} | {sink}", chain_env, None)
                # Replay: collect everything again from scratch (fresh cursor) into the same
                # harmony-alerts dedupe store — every alert is recognised as already emitted.
                replay = run_chain(f"{collect('events-replay')} | {alerts} | {sink}", chain_env, None)
            else:
                if not SAMPLE_EVENTS.exists():
                    return fail(f"hec-emulator did not start ({why}) and {SAMPLE_EVENTS} is missing")
                source = f"{SAMPLE_EVENTS.name} (hec-emulator unavailable: {why})"
                with SAMPLE_EVENTS.open("rb") as events:
                    first = run_chain(f"{alerts} | {sink}", env, events)
                with SAMPLE_EVENTS.open("rb") as events:
                    replay = run_chain(f"{alerts} | {sink}", env, events)
        finally:
            if emulator is not None:
                emulator.terminate()
                try:
                    emulator.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    emulator.kill()
        for result in (first, replay):
            if result.code != 0:
                return fail(f"harmony-pipes chain exited {result.code}", result)
    print(summarize(source, first, replay, out_dir, time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
