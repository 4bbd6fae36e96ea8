"""s3-batch whole-process benchmark: into file:// and into moto, against a same-run floor.

Floor (baseline): a plain Python process that reads the lines and writes gzip batches of
100,000 records to local files at the same gzip level s3-batch uses by default (6) — no parsing,
no spool, no fsync, no receipts. s3-batch does all of those (parse every record, record-time
partitions, fsync every 200 ms, sha256, atomic store writes).

Input: ~600-byte alert records (the shape harmony-alerts emits), 1 GiB by default for the file://
run (which also gives the peak RSS with 1 GiB of input; target <= 150 MB) and 256 MiB for moto
(moto keeps every object in its own memory). `HARMONY_BENCH_SCALE` scales both.
Runs inside `benchmarks/run_pipe.py` (`run(ctx)`) or alone: `python benchmarks/cases/s3_batch.py`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

GROUP = "s3-batch"
GIB = 1024**3
FILE_INPUT_BYTES = GIB
MOTO_INPUT_BYTES = 256 * 1024**2
BLOCK_RECORDS = 50_000
GZIP_LEVEL = 6
RECORDS_PER_OBJECT = 100_000

FLOOR = r"""
import gzip, os, sys
out_dir, level, per_batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out_dir, exist_ok=True)
n = batch = 0
f = None
for line in sys.stdin.buffer:
    if f is None:
        f = gzip.open(os.path.join(out_dir, f"{batch:06d}.ndjson.gz"), "wb", compresslevel=level)
    f.write(line)
    n += 1
    if n % per_batch == 0:
        f.close()
        f = None
        batch += 1
if f is not None:
    f.close()
"""

GENERATE = r"""
import random, sys
import orjson
target, path, block_records = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rng = random.Random(7)
base = 1_714_521_600_000
lines = []
for i in range(block_records):
    lines.append(orjson.dumps({
        "timestamp": base + i * 10, "msg_class": "checkpoint_harmony_security_event",
        "tenantid": f"tenant-{i % 7}", "event_id": f"{rng.getrandbits(128):032x}",
        "event_type": rng.choice(["phishing", "malware", "dlp", "alert"]), "event_state": "new",
        "saas": rng.choice(["office365_emails", "google_mail", "slack"]), "severity": rng.randint(1, 5),
        "confidence": "high",
        "description": f"Suspicious message from user{rng.randint(1, 5000)}@example.com flagged by "
                       f"policy {rng.randint(1, 99)}",
        "sender": f"user{rng.randint(1, 5000)}@example.com", "entity_id": f"{rng.getrandbits(96):024x}",
        "entity_link": f"https://portal.checkpointcloudsec.com/dashboard/x/{rng.getrandbits(64):016x}",
        "alert_reasons": ["type:phishing", "severity>=4"],
        "dedupe_key": f"tenant-{i % 7}:{rng.getrandbits(64):016x}",
    }))
block = b"\n".join(lines) + b"\n"
written = 0
with open(path, "wb") as out:
    while written < target:
        out.write(block)
        written += len(block)
"""


def _scale() -> float:
    try:
        return float(os.environ.get("HARMONY_BENCH_SCALE", "1") or 1)
    except ValueError:
        return 1.0


def make_input(ctx: Any, target_bytes: int) -> tuple[Path, int, int]:
    """An NDJSON file of about `target_bytes` (cached in the workdir); (path, records, bytes)."""
    path = Path(ctx.workdir) / f"s3_batch_input_{target_bytes}.ndjson"
    if not path.exists():
        subprocess.run([ctx.python, "-c", GENERATE, str(target_bytes), str(path), str(BLOCK_RECORDS)], check=True)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        records = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b""))
    return path, records, size


def _create_bucket(endpoint: str) -> str:
    import boto3

    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    ).create_bucket(Bucket=bucket)
    return bucket


def run(ctx: Any) -> list[dict[str, Any]]:
    scale = _scale()
    workdir = Path(ctx.workdir)
    rows: list[dict[str, Any]] = []
    big, records, size = make_input(ctx, int(FILE_INPUT_BYTES * scale))

    floor_out = workdir / "s3_floor_out"
    shutil.rmtree(floor_out, ignore_errors=True)
    m = ctx.measure([ctx.python, "-c", FLOOR, str(floor_out), str(GZIP_LEVEL), str(RECORDS_PER_OBJECT)], stdin_path=big)
    rows.append(
        _row(
            "floor: python gzip batches to local files",
            records,
            size,
            m,
            True,
            f"gzip level {GZIP_LEVEL}, {RECORDS_PER_OBJECT} records per file, no parse/fsync",
        )
    )
    shutil.rmtree(floor_out, ignore_errors=True)

    store, spool = workdir / "s3_file_store", workdir / "s3_file_spool"
    for path in (store, spool):
        shutil.rmtree(path, ignore_errors=True)
    m = ctx.measure(
        [ctx.bin("s3-batch"), "--dest", f"file://{store}/", "--spool-dir", str(spool)],
        stdin_path=big,
        stdout_path=workdir / "s3_file_receipts.ndjson",
    )
    rows.append(
        _row(
            "s3-batch -> file://",
            records,
            size,
            m,
            False,
            f"{_gib(size)} input, peak RSS target <= 150 MB; defaults (gzip 6, 100k records/object)",
        )
    )
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(spool, ignore_errors=True)

    endpoint = ctx.moto_endpoint()
    small, small_records, small_size = make_input(ctx, int(MOTO_INPUT_BYTES * scale))
    bucket = _create_bucket(endpoint)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    spool = workdir / "s3_moto_spool"
    shutil.rmtree(spool, ignore_errors=True)
    m = ctx.measure(
        [
            ctx.bin("s3-batch"),
            "--dest",
            f"s3://{bucket}/bench/",
            "--endpoint-url",
            endpoint,
            "--spool-dir",
            str(spool),
        ],
        stdin_path=small,
        stdout_path=workdir / "s3_moto_receipts.ndjson",
        env=env,
    )
    rows.append(
        _row(
            "s3-batch -> moto S3 (HTTP)",
            small_records,
            small_size,
            m,
            False,
            f"{_gib(small_size)} input into moto on 127.0.0.1; same floor applies",
        )
    )
    shutil.rmtree(spool, ignore_errors=True)
    return rows


def _gib(size: int) -> str:
    return f"{size / GIB:.2f} GiB"


def _row(case: str, records: int, size: int, m: Any, baseline: bool, notes: str) -> dict[str, Any]:
    return {
        "case": case,
        "group": GROUP,
        "records": records,
        "bytes": size,
        "wall_secs": round(m.wall_secs, 3),
        "peak_rss_mb": round(m.peak_rss_mb, 1),
        "baseline": baseline,
        "notes": notes,
    }


class _Measurement:
    def __init__(self, wall_secs: float, peak_rss_mb: float) -> None:
        self.wall_secs = wall_secs
        self.peak_rss_mb = peak_rss_mb


class StandaloneContext:
    """Enough of `benchmarks.harness.BenchContext` to run this file on its own."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.python = sys.executable
        self._moto: Any = None

    def bin(self, name: str) -> str:
        return str(Path(sys.executable).parent / name)

    def moto_endpoint(self) -> str:
        if self._moto is None:
            import socket

            from moto.server import ThreadedMotoServer

            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            self._moto.start()
            self._endpoint = f"http://127.0.0.1:{port}"
        return self._endpoint

    def measure(
        self,
        argv: list[str],
        stdin_path: Path | None = None,
        stdout_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> _Measurement:
        import contextlib

        import psutil

        with contextlib.ExitStack() as stack:
            stdin = stack.enter_context(open(stdin_path, "rb")) if stdin_path else subprocess.DEVNULL
            stdout = stack.enter_context(open(stdout_path, "wb")) if stdout_path else subprocess.DEVNULL
            started = time.monotonic()
            proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL, env=env)
            peak = 0
            ps = psutil.Process(proc.pid)
            while proc.poll() is None:
                try:
                    rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
                    peak = max(peak, rss)
                except psutil.Error:
                    pass
                time.sleep(0.05)
            wall = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} exited {proc.returncode}")
        return _Measurement(wall, peak / 1024**2)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp:
        ctx = StandaloneContext(Path(tmp))
        results = run(ctx)
        floor = next(r for r in results if r["baseline"])
        for row in results:
            rps = row["records"] / row["wall_secs"]
            mbps = row["bytes"] / row["wall_secs"] / 1e6
            ratio = (row["records"] / row["wall_secs"]) / (floor["records"] / floor["wall_secs"])
            print(
                f"{row['case']:45s} {rps:10.0f} rec/s {mbps:7.1f} MB/s  x{ratio:.2f} of floor "
                f"{row['peak_rss_mb']:6.1f} MB RSS  {row['wall_secs']:.2f}s"
            )
