"""s3-batch whole-process benchmark: into moto and into file://, against a same-run floor.

Floors (baselines): a plain Python process that reads the lines and writes gzip batches of
100,000 records to local files — no parsing, no spool, no fsync, no receipts — three times on the
same input: with Python's gzip (zlib) at level 6 (the floor the targets use), with zlib-ng's
`gzip_ng` at level 6 (the library s3-batch's default level 5 runs) and with ISA-L's `igzip` at its default
level 2. s3-batch does all of those and more (parse every record, record-time partitions, a
commit after every input chunk, fsync every 200 ms, sha256, atomic store writes).

Inputs: ~600-byte alert records (the shape harmony-alerts emits), in two sizes, and every ratio
pairs rows of the same input:
  - 256 MiB (moto keeps every object in its own memory): the floor, s3-batch -> moto,
    s3-batch -> file://, and Fluent Bit's out_s3 / stdin->file baselines (cases/s3_fluentbit.py);
  - 1 GiB: the floor again and s3-batch -> file://, for the peak RSS with 1 GiB of input
    (target <= 150 MB) and the throughput at that size.
`HARMONY_BENCH_SCALE` scales both. Runs inside `benchmarks/run_pipe.py s3_batch` (`run(ctx)`) or
alone: `python benchmarks/cases/s3_batch.py` (prints its rows, writes nothing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.harness import Measurement, row, run_standalone, size_label

GROUP = "s3-batch"
GIB = 1024**3
FILE_INPUT_BYTES = GIB
MOTO_INPUT_BYTES = 256 * 1024**2
BLOCK_RECORDS = 50_000
GZIP_LEVEL = 6
RECORDS_PER_OBJECT = 100_000

# (key suffix, module with a gzip-compatible `open`, level, label)
FLOORS = (
    ("", "gzip", GZIP_LEVEL, f"python gzip (zlib) level {GZIP_LEVEL}"),
    ("_zlibng", "zlib_ng.gzip_ng", GZIP_LEVEL, f"zlib-ng gzip_ng level {GZIP_LEVEL}"),
    ("_isal", "isal.igzip", 2, "ISA-L igzip level 2 (its default)"),
)

FLOOR = r"""
import importlib, os, sys
out_dir, level, per_batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gzip = importlib.import_module(sys.argv[4])
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


def input_label(size: int) -> str:
    """The `input` of every row reading the generated alert records of this size."""
    return f"alert records {size_label(size)}"


def make_input(ctx: Any, target_bytes: int) -> tuple[Path, int, int]:
    """An NDJSON file of about `target_bytes` (cached in the workdir); (path, records, bytes)."""
    path = Path(ctx.workdir) / f"s3_batch_input_{target_bytes}.ndjson"
    if not path.exists():
        subprocess.run([ctx.python, "-c", GENERATE, str(target_bytes), str(path), str(BLOCK_RECORDS)], check=True)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        records = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b""))
    return path, records, size


def compare_input(ctx: Any) -> tuple[Path, int, int]:
    """The 256 MiB (x scale) input every throughput ratio of this group is measured on."""
    return make_input(ctx, int(MOTO_INPUT_BYTES * _scale()))


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


def _floor_run(ctx: Any, source: Path, out_dir: Path, module: str, level: int) -> Callable[[], Measurement]:
    def once() -> Measurement:
        shutil.rmtree(out_dir, ignore_errors=True)
        argv = [ctx.python, "-c", FLOOR, str(out_dir), str(level), str(RECORDS_PER_OBJECT), module]
        return ctx.measure(argv, stdin_path=source)

    return once


def _floor_row(
    key: str, m: Measurement, out_dir: Path, records: int, size: int, module: str = "gzip",
    label: str = f"python gzip (zlib) level {GZIP_LEVEL}",
) -> dict[str, Any]:  # fmt: skip
    stored = sum(p.stat().st_size for p in out_dir.iterdir())
    shutil.rmtree(out_dir, ignore_errors=True)
    notes = f"{label}, {RECORDS_PER_OBJECT:,} records per file, no parse/fsync; {stored / 1e6:.1f} MB gzip"
    name = "floor: python gzip batches to local files" if module == "gzip" else f"floor: {label} batches"
    return row(
        GROUP,
        f"{name} ({size_label(size)})",
        records,
        size,
        m,
        baseline=True,
        key=key,
        input=input_label(size),
        notes=notes,
    )


def _file_dirs(workdir: Path) -> tuple[Path, Path]:
    """The file:// rows' store and spool (made by a run, removed once its row is read)."""
    return workdir / "s3_file_store", workdir / "s3_file_spool"


def _file_run(ctx: Any, source: Path) -> Callable[[], Measurement]:
    workdir = Path(ctx.workdir)
    store, spool = _file_dirs(workdir)

    def once() -> Measurement:
        for path in (store, spool):
            shutil.rmtree(path, ignore_errors=True)
        return ctx.measure(
            [ctx.bin("s3-batch"), "--dest", f"file://{store}/", "--spool-dir", str(spool)],
            stdin_path=source,
            stdout_path=workdir / "s3_file_receipts.ndjson",
        )

    return once


def _file_row(ctx: Any, key: str, m: Measurement, records: int, size: int, notes: str) -> dict[str, Any]:
    workdir = Path(ctx.workdir)
    objects, stored = _receipts(workdir / "s3_file_receipts.ndjson", records)
    for path in _file_dirs(workdir):
        shutil.rmtree(path, ignore_errors=True)
    return row(
        GROUP,
        f"s3-batch -> file:// ({size_label(size)})",
        records,
        size,
        m,
        key=key,
        input=input_label(size),
        notes=f"{notes}; {objects} objects, {stored / 1e6:.1f} MB gzip; defaults (gzip level 5 via zlib-ng, "
        "100k records/object)",
    )


def _receipts(path: Path, records: int) -> tuple[int, int]:
    """(objects, stored bytes) from s3-batch's receipts; raises when records went missing."""
    import orjson

    receipts = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    written = sum(r["records"] for r in receipts)
    if written != records:
        raise RuntimeError(f"s3-batch receipts cover {written} records of {records}")
    return len(receipts), sum(r["bytes"] for r in receipts)


def run(ctx: Any) -> list[dict[str, Any]]:
    workdir = Path(ctx.workdir)
    rows: list[dict[str, Any]] = []

    # 1. the 256 MiB input: floors, moto, file:// in rounds (and Fluent Bit in s3_fluentbit.py)
    small, small_records, small_size = compare_input(ctx)
    floor_dirs = {suffix: workdir / f"s3_floor_out{suffix}" for suffix, *_ in FLOORS}
    runs = {f"s3_floor{suffix}": _floor_run(ctx, small, floor_dirs[suffix], module, level)
            for suffix, module, level, _ in FLOORS}  # fmt: skip
    endpoint = ctx.moto_endpoint()
    bucket = _create_bucket(endpoint)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    spool = workdir / "s3_moto_spool"

    def to_moto() -> Measurement:
        shutil.rmtree(spool, ignore_errors=True)
        return ctx.measure(
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

    runs["s3_moto"] = to_moto
    runs["s3_file"] = _file_run(ctx, small)
    measured = ctx.measure_rounds(runs)
    for suffix, module, _, label in FLOORS:
        key = f"s3_floor{suffix}"
        rows.append(_floor_row(key, measured[key], floor_dirs[suffix], small_records, small_size, module, label))
    objects, stored = _receipts(workdir / "s3_moto_receipts.ndjson", small_records)
    rows.append(
        row(
            GROUP,
            f"s3-batch -> moto S3 (HTTP, {size_label(small_size)})",
            small_records,
            small_size,
            measured["s3_moto"],
            key="s3_moto",
            input=input_label(small_size),
            notes=f"into moto on 127.0.0.1 (the server shares the 2 CPUs); {objects} objects, "
            f"{stored / 1e6:.1f} MB gzip",
        )
    )
    shutil.rmtree(spool, ignore_errors=True)
    rows.append(_file_row(ctx, "s3_file", measured["s3_file"], small_records, small_size, "same input as the moto row"))

    # 2. the 1 GiB input: peak RSS with 1 GiB (target <= 150 MB), with its own floor
    big, records, size = make_input(ctx, int(FILE_INPUT_BYTES * _scale()))
    big_floor = workdir / "s3_floor_out_1g"
    m = ctx.measure_best(_floor_run(ctx, big, big_floor, "gzip", GZIP_LEVEL))
    rows.append(_floor_row("s3_floor_1g", m, big_floor, records, size))
    m = ctx.measure_best(_file_run(ctx, big))
    rows.append(_file_row(ctx, "s3_file_1g", m, records, size, "the peak-RSS run (target <= 150 MB with 1 GiB)"))
    big.unlink()
    return rows


if __name__ == "__main__":
    run_standalone(run)
