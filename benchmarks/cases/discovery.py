"""aws-discovery benchmark: one full sync cycle over 10,000 EC2 instances in 4 regions, and a
no-change cycle, against moto; baseline: a plain sequential boto3 paginator dump of the same
instances (what an Ansible-style inventory does: regions one after another, no diff).

moto serializes ~10 ms per instance in one Python process, so each region gets its own moto
server process behind a tiny router that forwards by the SigV4 region of each request; the
command itself sees one endpoint. Scale with HARMONY_BENCH_SCALE (instances = 10,000 x scale).
Rows: wall time and records/s of the full cycle (records = the snapshot records emitted) and of
the no-change cycle (records = the instances re-read and diffed; nothing is emitted).
Runs inside `benchmarks/run_pipe.py discovery` (`run(ctx)`) or alone:
`python benchmarks/cases/discovery.py` (prints its rows, writes nothing).
"""

from __future__ import annotations

import http.client
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.harness import row, run_standalone

REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2")
BATCH = 250  # instances per RunInstances call (MinCount = MaxCount)
GROUP = "aws-discovery"
CREDS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}

BASELINE = r"""
import sys, boto3, orjson
endpoint, regions = sys.argv[1], sys.argv[2].split(",")
out = sys.stdout.buffer
from botocore.config import Config
config = Config(read_timeout=600, retries={"mode": "standard", "max_attempts": 3})
for region in regions:  # sequential, like ansible aws_ec2
    client = boto3.client("ec2", endpoint_url=endpoint, region_name=region, config=config)
    filters = [{"Name": "instance-state-name", "Values": ["running"]}, {"Name": "tag:env", "Values": ["prod"]}]
    for page in client.get_paginator("describe_instances").paginate(Filters=filters,
                                                                    PaginationConfig={"PageSize": 1000}):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                out.write(orjson.dumps(instance, default=str) + b"\n")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int, timeout_secs: float = 30) -> None:
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto did not start on port {port}")


class RegionRouter:
    """Forwards each request to the moto process of its SigV4 region."""

    _SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")

    def __init__(self, ports: dict[str, int]) -> None:
        router = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                found = router._SCOPE.search(self.headers.get("Authorization", ""))
                port = ports.get(found.group(1) if found else "", next(iter(ports.values())))
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request("POST", self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in (
                        "content-length",
                        "connection",
                        "transfer-encoding",
                        "server",
                        "date",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout); nothing to report

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _populate(endpoint: str, region: str, count: int) -> dict[str, int]:
    """8 in 10 batches: selected Linux with a checkpoint_ssh user; 1: selected but unconfigured;
    1: not selected (env=dev). Batches are RunInstances calls with MinCount = MaxCount."""
    import boto3
    from botocore.config import Config

    config = Config(read_timeout=600, retries={"max_attempts": 1})  # a retried launch would duplicate
    client = boto3.client("ec2", endpoint_url=endpoint, region_name=region, config=config, **_boto_creds())
    made = {"configured": 0, "unconfigured": 0, "not_selected": 0}
    batch_no = 0
    batch = max(1, min(BATCH, count // 10))
    while sum(made.values()) < count:
        n = min(batch, count - sum(made.values()))
        kind = ("unconfigured", "not_selected", *["configured"] * 8)[batch_no % 10]
        tags = {
            "configured": {"env": "prod", "Name": f"web-{batch_no}", "checkpoint_ssh:ubuntu": "deploy.pem"},
            "unconfigured": {"env": "prod", "Name": f"bare-{batch_no}"},
            "not_selected": {"env": "dev"},
        }[kind]
        client.run_instances(
            ImageId="ami-0bench000",
            MinCount=n,
            MaxCount=n,
            InstanceType="t3.micro",
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        )
        made[kind] += n
        batch_no += 1
    return made


def _boto_creds() -> dict[str, str]:
    return {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}


def _children_cpu_secs() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(ctx: Any) -> list[dict[str, Any]]:
    scale = float(os.environ.get("HARMONY_BENCH_SCALE", "1.0"))
    total = max(len(REGIONS) * 10, int(10_000 * scale))
    per_region = total // len(REGIONS)
    workdir = Path(ctx.workdir) / "discovery"
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **CREDS}
    moto_env = {**env, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}
    ports = {region: _free_port() for region in REGIONS}
    python = str(getattr(ctx, "python", sys.executable))
    servers = [
        subprocess.Popen(
            [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=moto_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports.values()
    ]
    router = None
    try:
        for port in ports.values():
            _wait_port(port)
        router = RegionRouter(ports)
        started = time.monotonic()
        with ThreadPoolExecutor(len(REGIONS)) as pool:
            made = list(pool.map(lambda r: _populate(router.endpoint, r, per_region), REGIONS))
        setup_secs = time.monotonic() - started
        selected = sum(m["configured"] + m["unconfigured"] for m in made)
        instances = sum(sum(m.values()) for m in made)

        state_dir = workdir / "state"
        out_full, out_again, out_base = (workdir / n for n in ("full.ndjson", "nochange.ndjson", "base.ndjson"))
        for path in (out_full, out_again, out_base):
            path.unlink(missing_ok=True)
        if state_dir.exists():
            for item in state_dir.iterdir():
                item.unlink()
        cmd = [
            ctx.bin("aws-discovery"),
            "--regions",
            ",".join(REGIONS),
            "--tags",
            "env=prod",
            "--once",
            "--state-dir",
            str(state_dir),
            "--read-timeout-secs",
            "600",
            "--endpoint-url",
            router.endpoint,
        ]
        cpu0 = _children_cpu_secs()
        full = ctx.measure(cmd, stdout_path=str(out_full), env=env)
        cpu1 = _children_cpu_secs()
        again = ctx.measure(cmd, stdout_path=str(out_again), env=env)
        cpu2 = _children_cpu_secs()
        base = ctx.measure(
            [python, "-c", BASELINE, router.endpoint, ",".join(REGIONS)], stdout_path=str(out_base), env=env
        )
        cpu3 = _children_cpu_secs()
        full_records = sum(1 for _ in out_full.open("rb"))
        again_records = sum(1 for _ in out_again.open("rb"))
        base_records = sum(1 for _ in out_base.open("rb"))
        if full_records != selected or again_records != 0:
            raise RuntimeError(
                f"aws-discovery emitted {full_records} snapshot records (expected {selected}) and "
                f"{again_records} on the no-change cycle (expected 0); run it by hand to see why"
            )
        note = (
            f"{instances} instances in {len(REGIONS)} regions (moto, one server process per region), "
            f"{selected} selected; setup {setup_secs:.0f}s"
        )
        label = f"{instances:,} instances, {len(REGIONS)} regions (moto)"
        return [
            row(
                GROUP,
                "aws-discovery full cycle (snapshot)",
                full_records,
                out_full.stat().st_size,
                full,
                key="discovery_full",
                input=label,
                notes=f"{note}; regions read concurrently; client CPU {cpu1 - cpu0:.1f}s (botocore XML "
                "parsing, as the baseline's); moto pages by reservation, so each region answers in one "
                f"{per_region}-instance page and the 4 regions parsed at once set the peak RSS",
            ),
            row(
                GROUP,
                "aws-discovery no-change cycle",
                selected,  # instances read and diffed; 0 records were emitted
                out_again.stat().st_size,
                again,
                key="discovery_nochange",
                input=label,
                notes=f"records = the {selected} instances re-read and diffed against the state dir; "
                f"{again_records} records emitted; client CPU {cpu2 - cpu1:.1f}s",
            ),
            row(
                GROUP,
                "baseline: sequential boto3 paginator dump",
                base_records,
                out_base.stat().st_size,
                base,
                baseline=True,
                key="discovery_boto3",
                input=label,
                notes=f"same filters, regions one after another, raw instances, no classify/diff/state; "
                f"client CPU {cpu3 - cpu2:.1f}s",
            ),
        ]
    finally:
        if router is not None:
            router.close()
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    run_standalone(run)
