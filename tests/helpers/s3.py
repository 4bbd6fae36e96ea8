"""Helpers for the s3-batch tests: inputs, reading stores back, a dedicated moto, kill trials."""

from __future__ import annotations

import gzip
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import AWS_TEST_ENV, command_path, free_port
from tests.helpers.sockets import pump
from tests.helpers.wait import wait_until  # noqa: F401  (re-exported for the s3 tests)


def make_records(count: int, *, start: int = 0, pad: int = 60, base_ms: int = 1_714_521_600_000) -> bytes:
    """NDJSON with a sequence number `i`, a record time and some padding."""
    lines = [
        orjson.dumps({"i": i, "timestamp": base_ms + i, "tenantid": f"t{i % 3}", "msg": "x" * (pad + i % 17)})
        for i in range(start, start + count)
    ]
    return b"\n".join(lines) + b"\n"


UNEVEN_TENANTS = (("hot", 80), ("warm", 15), ("cool", 4), ("rare", 1))


def make_uneven_records(count: int, *, seed: int, start: int = 0, pad: int = 60) -> bytes:
    """Like `make_records`, with `tenantid` drawn from an uneven mix (80/15/4/1 %)."""
    rng = random.Random(seed)
    names = [name for name, _ in UNEVEN_TENANTS]
    weights = [weight for _, weight in UNEVEN_TENANTS]
    tenants = rng.choices(names, weights, k=count)
    base_ms = 1_714_521_600_000
    lines = [
        orjson.dumps({"i": i, "timestamp": base_ms + i, "tenantid": tenant, "msg": "x" * (pad + i % 17)})
        for i, tenant in zip(range(start, start + count), tenants, strict=True)
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


class Feeder(threading.Thread):
    """Writes `data` into a process's stdin in slices (a steady stream, not one burst)."""

    def __init__(
        self, stdin: Any, data: bytes, slice_bytes: int = 64 * 1024, pause_secs: float = 0.005, close: bool = True
    ):
        super().__init__(daemon=True)
        self.stdin = stdin
        self.data = data
        self.slice_bytes = slice_bytes
        self.pause_secs = pause_secs
        self.close = close  # False: keep stdin open after the data (the sink never sees its end)

    def run(self) -> None:
        try:
            for offset in range(0, len(self.data), self.slice_bytes):
                self.stdin.write(self.data[offset : offset + self.slice_bytes])
                self.stdin.flush()
                time.sleep(self.pause_secs)
            if self.close:
                self.stdin.close()
        except (BrokenPipeError, ValueError, OSError):
            pass


def max_accepted(stderr: str, counter: str = "records_accepted") -> int:
    """The highest `records_accepted` (or another counter) any progress/stats line reported."""
    best = 0
    for line in stderr.splitlines():
        if line.startswith('{"progress"') or line.startswith('{"stats"'):
            doc = orjson.loads(line)
            best = max(best, (doc.get("progress") or doc.get("stats"))[counter])
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


@dataclass(frozen=True)
class KillAt:
    """When a kill trial sends SIGKILL: once `counter` reached `at`, plus `extra_secs`.

    `counter` is `records_in` or `records_accepted` (from the sink's progress lines) or
    `receipts` (lines on its stdout). Timing the kill from the sink's own progress, not a wall
    clock delay, makes every trial land mid-stream on a fast and on a slow machine alike.
    """

    counter: str
    at: int
    extra_secs: float = 0.0


@dataclass
class KillResult:
    accepted: int  # the highest records_accepted reported before the kill
    receipts: list[dict[str, Any]]  # receipts printed before the kill
    stderr: str
    progress: dict[str, int]  # the counters that fired the kill


class SinkWatch:
    """Reads a running sink's stderr and stdout line by line and fires when a counter is reached."""

    def __init__(self, proc: subprocess.Popen[bytes], kill_at: KillAt | None) -> None:
        self.proc = proc
        self.kill_at = kill_at
        self.counters: dict[str, int] = {"records_in": 0, "records_accepted": 0, "receipts": 0}
        self.err_lines: list[str] = []
        self.receipts: list[dict[str, Any]] = []
        self.fired = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._read_err, daemon=True),
            threading.Thread(target=self._read_out, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _check(self) -> None:
        if self.kill_at is not None and self.counters.get(self.kill_at.counter, 0) >= self.kill_at.at:
            self.fired.set()

    def _read_err(self) -> None:
        for raw in self.proc.stderr:  # type: ignore[union-attr]
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.lock:
                self.err_lines.append(line)
                if line.startswith('{"progress"') or line.startswith('{"stats"'):
                    doc = orjson.loads(line)
                    snap = doc.get("progress") or doc.get("stats")
                    for name in ("records_in", "records_accepted"):
                        self.counters[name] = max(self.counters[name], int(snap.get(name, 0)))
                self._check()

    def _read_out(self) -> None:
        for raw in self.proc.stdout:  # type: ignore[union-attr]
            if not raw.strip():
                continue
            with self.lock:
                self.receipts.append(orjson.loads(raw))
                self.counters["receipts"] = len(self.receipts)
                self._check()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(10)


def sigkill(proc: subprocess.Popen[bytes], watch: SinkWatch, what: str) -> None:
    """SIGKILL a sink that must still be running, and prove the kill is what ended it."""
    assert proc.poll() is None, f"{what}: the sink exited ({proc.returncode}) before the kill\n" + "\n".join(
        watch.err_lines[-20:]
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, f"{what}: ended with {proc.returncode}, not by the SIGKILL"


def kill_trial(
    args: list[str],
    data: bytes,
    *,
    kill_at: KillAt,
    env: dict[str, str] | None = None,
    timeout_secs: float = 60.0,
) -> KillResult:
    """Stream `data` into s3-batch and SIGKILL it at `kill_at`; asserts the kill landed.

    stdin stays open until the kill (the sink cannot finish on its own first), and the kill
    point is below the input size, so every trial kills a sink that is still taking records.
    """
    proc = start_sink(args, env)
    watch = SinkWatch(proc, kill_at)
    feeder = Feeder(proc.stdin, data, close=False)
    feeder.start()
    fired = watch.fired.wait(timeout_secs)
    with watch.lock:
        progress = dict(watch.counters)
    assert fired, f"{kill_at} never reached ({progress}); stderr:\n" + "\n".join(watch.err_lines[-20:])
    if kill_at.extra_secs:
        time.sleep(kill_at.extra_secs)
    sigkill(proc, watch, f"kill at {kill_at}")
    watch.join()
    feeder.join(10)
    stderr = "\n".join(watch.err_lines)
    return KillResult(max_accepted(stderr), watch.receipts, stderr, progress)


def kill_restart(
    args: list[str], *, kill_at: KillAt, env: dict[str, str] | None = None, timeout_secs: float = 20.0
) -> KillResult:
    """Restart on the spool with no new input and SIGKILL it at `kill_at` (or after the timeout).

    stdin stays open, so the restart recovers and uploads and then waits: it is still running
    when the kill comes, also when the counter is never reached (nothing left to upload).
    """
    proc = start_sink(args, env)
    watch = SinkWatch(proc, kill_at)
    watch.fired.wait(timeout_secs)
    if kill_at.extra_secs:
        time.sleep(kill_at.extra_secs)
    sigkill(proc, watch, f"restart killed at {kill_at}")
    watch.join()
    proc.stdin.close()  # type: ignore[union-attr]
    stderr = "\n".join(watch.err_lines)
    return KillResult(max_accepted(stderr), watch.receipts, stderr, dict(watch.counters))


def random_kill_points(count: int, seed: int, records: int, max_records: int) -> list[KillAt]:
    """Kill points spread over a run: by records read, records accepted and receipts printed."""
    rng = random.Random(seed)
    points = []
    for n in range(count):
        extra = rng.uniform(0.0, 0.03)
        kind = ("records_in", "records_accepted", "receipts")[n % 3]
        if kind == "receipts":
            points.append(KillAt(kind, rng.randint(1, max(1, records // max_records // 2)), extra))
        else:
            points.append(KillAt(kind, rng.randint(records // 20, records * 4 // 5), extra))
    return points


class TcpProxy:
    """A TCP relay on 127.0.0.1 in front of a server that keeps running: an outage on demand.

    `cut()` closes the listening socket and every relayed connection (new connections are
    refused, requests in flight die mid-way); `restore()` listens again on the same port. The
    server behind it (moto) keeps every object stored before, during and after the cut.
    """

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.conns: list[Any] = []
        self.listener: Any = None
        self.accepted = 0
        self.cuts = 0

    def start(self) -> TcpProxy:
        import socket

        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: Any) -> None:
        import socket

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut: the listener was closed
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self.lock:
                if listener is not self.listener:  # cut while connecting
                    client.close()
                    upstream.close()
                    return
                self.conns += [client, upstream]
                self.accepted += 1
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    def cut(self) -> None:
        import socket

        with self.lock:
            listener, self.listener = self.listener, None
            conns, self.conns = self.conns, []
            self.cuts += 1
        if listener is not None:
            listener.close()
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def restore(self) -> None:
        self.start()

    def stop(self) -> None:
        self.cut()


def spooled_records(spool: Path) -> int:
    """Records a running sink has accepted into `spool`: sealed objects (manifests) plus what the
    commit log holds for the bodies still open — what a test waits for before it signals."""
    total = 0
    for manifest in (spool / "objects").glob("*.json"):
        try:
            total += orjson.loads(manifest.read_bytes())["records"]
        except (OSError, ValueError, KeyError):
            continue
    counts: dict[str, int] = {}
    try:
        lines = (spool / "commits.log").read_bytes().split(b"\n")[:-1]
    except FileNotFoundError:
        lines = []
    for line in lines:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        counts.update({k: v for k, v in doc.items() if not k.startswith("@")})
    return total + sum(n for seq, n in counts.items() if (spool / "open" / f"{seq}.body").exists())
