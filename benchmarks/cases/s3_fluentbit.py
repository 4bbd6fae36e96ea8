"""Fluent Bit baselines for the s3-batch group: `out_s3` into the same moto server, and stdin -> file.

Same input as `s3_batch.py`'s 256 MiB rows — the floor, s3-batch -> moto and -> file:// (its
`compare_input`, cached in the workdir, so both cases read the identical NDJSON file) — same run
(`run_pipe.py` runs the two files as one case), same moto server (`ctx.moto_endpoint()`).

Fluent Bit settings, chosen to match s3-batch's defaults where out_s3 allows it:
  stdin input without parser (each JSON line becomes a record; fed through a pipe because the
  stdin plugin cannot epoll a regular file), `use_put_object On` (single PUT per object, like
  s3-batch below its multipart threshold), `compression gzip`, `total_file_size 50M` (out_s3's
  maximum with PutObject; s3-batch's default object is 100k records ~ 60 MB raw), `json_date_key
  false` (no extra key per record), `Grace 1` (shutdown waits 1 s instead of 5), `store_dir` in
  the workdir. After the run the bucket is read back and the records counted, so a row whose
  upload lost data says so in its notes.

Runs inside `benchmarks/run_pipe.py s3_batch` (`run(ctx)`) or alone: `python benchmarks/cases/s3_fluentbit.py`.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import shlex
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
from benchmarks.harness import row, run_standalone  # noqa: E402

GROUP = "s3-batch"
TOTAL_FILE_SIZE = "50M"


def _s3_batch_case() -> Any:
    """The sibling case module (for its input generator and standalone context)."""
    spec = importlib.util.spec_from_file_location("_bench_s3_batch_case", HERE / "s3_batch.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fluent_bit(ctx: Any) -> str | None:
    path = getattr(ctx, "fluent_bit", None)
    if path:
        return str(path)
    candidate = HERE.parents[2] / "shared" / "tools" / "fluent-bit" / "fluent-bit"
    if candidate.exists() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("fluent-bit")


S3_CONF = """\
[SERVICE]
    Flush        1
    Grace        1
    Log_Level    warn

[INPUT]
    Name         stdin
    Tag          bench
    Buffer_Size  1M

[OUTPUT]
    Name             s3
    Match            *
    bucket           {bucket}
    region           us-east-1
    endpoint         {endpoint}
    use_put_object   On
    total_file_size  {total_file_size}
    upload_timeout   10m
    compression      gzip
    json_date_key    false
    retry_limit      5
    store_dir        {store_dir}
    s3_key_format    /fluent-bit/%Y/%m/%d/%H%M%S-$UUID.ndjson.gz
"""

FILE_CONF = """\
[SERVICE]
    Flush        1
    Grace        1
    Log_Level    warn

[INPUT]
    Name         stdin
    Tag          bench
    Buffer_Size  1M

[OUTPUT]
    Name    file
    Match   *
    Path    {out_dir}
    File    out.ndjson
    Format  plain
"""


def _aws_env() -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _s3(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


def _count_in_bucket(endpoint: str, bucket: str) -> tuple[int, int, int]:
    """(objects, stored bytes, records) actually in the bucket after the run."""
    s3 = _s3(endpoint)
    objects = stored = records = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            objects += 1
            stored += item["Size"]
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            records += gzip.decompress(body).count(b"\n")
    return objects, stored, records


def _empty_bucket(endpoint: str, bucket: str) -> None:
    s3 = _s3(endpoint)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])


def _piped(fluent_bit: str, conf: Path, input_path: Path) -> list[str]:
    """`cat input | fluent-bit -c conf` (stdin must be a pipe for Fluent Bit's stdin plugin)."""
    command = f"cat {shlex.quote(str(input_path))} | exec {shlex.quote(fluent_bit)} -q -c {shlex.quote(str(conf))}"
    return ["/bin/sh", "-c", command]


def run(ctx: Any) -> list[dict[str, Any]]:
    fluent_bit = _fluent_bit(ctx)
    if fluent_bit is None:
        return []
    case = _s3_batch_case()
    workdir = Path(ctx.workdir)
    input_path, records, size = case.compare_input(ctx)
    label = case.input_label(size)
    rows: list[dict[str, Any]] = []

    # 1. out_s3 into the shared moto server
    endpoint = ctx.moto_endpoint()
    bucket = f"fluent-bit-{uuid.uuid4().hex[:10]}"
    _s3(endpoint).create_bucket(Bucket=bucket)
    store_dir = workdir / "fluent_bit_s3_store"
    conf = workdir / "fluent_bit_s3.conf"
    conf.write_text(
        S3_CONF.format(bucket=bucket, endpoint=endpoint, total_file_size=TOTAL_FILE_SIZE, store_dir=store_dir)
    )

    def once() -> Any:  # a fresh buffer dir and an empty bucket each run (the count must be one run's)
        shutil.rmtree(store_dir, ignore_errors=True)
        _empty_bucket(endpoint, bucket)
        return ctx.measure(_piped(fluent_bit, conf, input_path), env=_aws_env())

    m = ctx.measure_best(once)
    objects, stored, landed = _count_in_bucket(endpoint, bucket)
    complete = "all records" if landed == records else f"ONLY {landed} of {records} records"
    rows.append(
        row(
            GROUP,
            "fluent-bit out_s3 -> moto S3 (HTTP)",
            records,
            size,
            m,
            baseline=True,
            key="fb_out_s3",
            input=label,
            notes=f"{complete} in {objects} objects ({stored / 1e6:.1f} MB gzip); use_put_object, "
            f"total_file_size {TOTAL_FILE_SIZE}, stdin via pipe",
        )
    )
    shutil.rmtree(store_dir, ignore_errors=True)

    # 2. stdin -> file (what Fluent Bit costs without S3, gzip or durability)
    out_dir = workdir / "fluent_bit_file_out"
    conf = workdir / "fluent_bit_file.conf"
    conf.write_text(FILE_CONF.format(out_dir=out_dir))

    def once_to_file() -> Any:
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        return ctx.measure(_piped(fluent_bit, conf, input_path))

    m = ctx.measure_best(once_to_file)
    out_file = out_dir / "out.ndjson"
    written = 0
    if out_file.exists():
        with open(out_file, "rb") as handle:
            written = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b""))
    complete = "all records" if written == records else f"ONLY {written} of {records} records"
    rows.append(
        row(
            GROUP,
            "fluent-bit stdin -> file (no S3, no gzip)",
            records,
            size,
            m,
            baseline=True,
            key="fb_file",
            input=label,
            notes=f"{complete} written; format plain, stdin via pipe",
        )
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    return rows


if __name__ == "__main__":
    run_standalone(run)
