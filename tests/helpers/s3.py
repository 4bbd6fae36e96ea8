"""Helpers for the s3-batch tests: inputs, reading stores back, a dedicated moto, kill trials."""

from __future__ import annotations

import gzip
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import AWS_TEST_ENV, command_path, free_port


def make_records(count: int, *, start: int = 0, pad: int = 60, base_ms: int = 1_714_521_600_000) -> bytes:
    """NDJSON with a sequence number `i`, a record time and some padding."""
    lines = [
        orjson.dumps({"i": i, "timestamp": base_ms + i, "tenantid": f"t{i % 3}", "msg": "x" * (pad + i % 17)})
        for i in range(start, start + count)
    ]
    return b"\n".join(lines) + b"\n"


def decode_body(data: bytes, key: str) -> list[dict[str, Any]]:
    """Records in one object body, chosen by the key's extension."""
    if key.endswith(".gz"):
        data = gzip.decompress(data)
        key = key[:-3]
    elif key.endswith(".zst"):
        import zstandard

        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        key = key[:-4]
    if key.endswith(".json"):
        value = orjson.loads(data)
        assert isinstance(value, list), "a json-array body must parse as one JSON list"
        return value
    return [orjson.loads(line) for line in data.split(b"\n") if line]


def read_file_store(root: Path) -> dict[str, bytes]:
    """key -> bytes of every object under `root` (the store's hidden temp dir excluded)."""
    out: dict[str, bytes] = {}
    if not root.exists():
        return out
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if path.is_file() and not rel.parts[0].startswith("."):
            out[str(rel)] = path.read_bytes()
    return out


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def new_bucket(endpoint: str, prefix: str = "s3b") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name


def read_bucket(endpoint: str, bucket: str) -> dict[str, bytes]:
    client = s3_client(endpoint)
    out: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            out[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return out


def all_records(objects: dict[str, bytes]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for key in sorted(objects):
        records.extend(decode_body(objects[key], key))
    return records


def sequence_numbers(objects: dict[str, bytes]) -> list[int]:
    return sorted(record["i"] for record in all_records(objects))


def aws_env(endpoint: str) -> dict[str, str]:
    return {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": endpoint}


class MotoProcess:
    """A moto server of its own (a subprocess) that a test may stop and restart on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MotoProcess:
        import requests

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **AWS_TEST_ENV},
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{self.endpoint}/moto-api/", timeout=1)
                return self
            except requests.RequestException:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class Feeder(threading.Thread):
    """Writes `data` into a process's stdin in slices (a steady stream, not one burst)."""

    def __init__(self, stdin: Any, data: bytes, slice_bytes: int = 64 * 1024, pause_secs: float = 0.005):
        super().__init__(daemon=True)
        self.stdin = stdin
        self.data = data
        self.slice_bytes = slice_bytes
        self.pause_secs = pause_secs

    def run(self) -> None:
        try:
            for offset in range(0, len(self.data), self.slice_bytes):
                self.stdin.write(self.data[offset : offset + self.slice_bytes])
                self.stdin.flush()
                time.sleep(self.pause_secs)
            self.stdin.close()
        except (BrokenPipeError, ValueError, OSError):
            pass


def max_accepted(stderr: str) -> int:
    """The highest `records_accepted` any progress/stats line reported."""
    best = 0
    for line in stderr.splitlines():
        if line.startswith('{"progress"') or line.startswith('{"stats"'):
            doc = orjson.loads(line)
            best = max(best, (doc.get("progress") or doc.get("stats"))["records_accepted"])
    return best


def start_sink(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("HARMONY_PIPES_STATE_DIR", None)
    return subprocess.Popen(
        [command_path("s3-batch"), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=full_env,
    )


def kill_trial(
    args: list[str],
    data: bytes,
    *,
    kill_after_secs: float,
    env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Stream `data` into s3-batch, SIGKILL it after `kill_after_secs`; (accepted, stderr)."""
    proc = start_sink(args, env)
    feeder = Feeder(proc.stdin, data)
    feeder.start()
    err_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)  # type: ignore
    out_reader = threading.Thread(target=lambda: proc.stdout.read(), daemon=True)  # type: ignore
    reader.start()
    out_reader.start()
    time.sleep(kill_after_secs)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(10)
    out_reader.join(10)
    stderr = b"".join(err_chunks).decode("utf-8", "replace")
    return max_accepted(stderr), stderr


def random_kill_delays(count: int, seed: int, low: float = 0.3, high: float = 1.6) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(count)]
