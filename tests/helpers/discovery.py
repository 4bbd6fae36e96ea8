"""Helpers for the aws-discovery tests: an own moto server, EC2 fixtures, a per-region fault proxy.

The discovery tests reset EC2 state between tests (POST /moto-api/reset). moto's backends are
process-wide, so a reset inside the pytest worker would also wipe the S3 buckets other areas keep
in the session-wide `moto_server`: `MotoEc2` therefore runs `python -m moto.server` in a process
of its own (about 0.5 s to start, on a port moto picks itself), and its resets touch nothing else.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import AWS_TEST_ENV, REPO_ROOT, run_cli
from tests.helpers.moto_process import start_moto, stop_moto

LINUX_AMI = "ami-760aaa0f"  # amzn, no platform
WINDOWS_AMI = "ami-03cf127a"  # moto's bundled Windows_Server-2016 image: Platform == "windows"
REGIONS = ("us-east-1", "eu-west-1")


class MotoEc2:
    """A moto server process of our own (empty at start), with small builders for EC2 fixtures."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.proc, self.port = start_moto(env)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._clients: dict[str, Any] = {}

    def _post(self, path: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", path)
            conn.getresponse().read()
        finally:
            conn.close()

    def stop(self) -> None:
        stop_moto(self.proc)

    def reset(self) -> None:
        self._post("/moto-api/reset")

    def ec2(self, region: str) -> Any:
        if region not in self._clients:
            import boto3

            self._clients[region] = boto3.client(
                "ec2",
                region_name=region,
                endpoint_url=self.endpoint,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return self._clients[region]

    def vpc(self, region: str, cidr: str = "10.1.0.0/16") -> tuple[str, str]:
        """A new VPC with one subnet; returns (vpc_id, subnet_id)."""
        client = self.ec2(region)
        vpc_id = client.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
        subnet_cidr = cidr.replace("0.0/16", "1.0/24")
        subnet_id = client.create_subnet(VpcId=vpc_id, CidrBlock=subnet_cidr)["Subnet"]["SubnetId"]
        return vpc_id, subnet_id

    def launch(
        self,
        region: str,
        tags: Mapping[str, str] | None = None,
        *,
        windows: bool = False,
        subnet_id: str | None = None,
        count: int = 1,
    ) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "ImageId": WINDOWS_AMI if windows else LINUX_AMI,
            "MinCount": count,
            "MaxCount": count,
            "InstanceType": "t3.micro",
        }
        if tags:
            kwargs["TagSpecifications"] = [
                {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            ]
        if subnet_id:
            kwargs["SubnetId"] = subnet_id
        return self.ec2(region).run_instances(**kwargs)["Instances"]

    def describe(self, region: str, instance_id: str) -> dict[str, Any]:
        answer = self.ec2(region).describe_instances(InstanceIds=[instance_id])
        return answer["Reservations"][0]["Instances"][0]


RESET = 0  # FaultProxy.fail(region, RESET): the connection is reset, no HTTP answer at all


class FaultProxy:
    """HTTP proxy in front of moto that fails, delays and counts requests per region and action.

    moto has no fault injection, and our command has one endpoint for every region; the region
    is in the SigV4 credential scope of each request, so the proxy can fail exactly one region
    with a real HTTP error (default: 503 RequestLimitExceeded, i.e. EC2 throttling), optionally
    only its next `times` requests (a transient throttle the retries must absorb). `calls` counts
    (region, Action) pairs; `delay_secs[action]` holds those requests back, and `max_in_flight`
    records how many of them were ever outstanding at once (proof of concurrent reads).
    """

    _SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")
    _ACTION = re.compile(rb"(?:^|&)Action=([A-Za-z]+)")

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.failing: dict[str, tuple[int, str, int | None]] = {}
        self.hits: dict[str, int] = {}
        self.calls: dict[tuple[str, str], int] = {}
        self.delay_secs: dict[str, float] = {}
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                found = proxy._SCOPE.search(self.headers.get("Authorization", ""))
                region = found.group(1) if found else ""
                action_found = proxy._ACTION.search(body)
                action = action_found.group(1).decode() if action_found else ""
                failure = proxy._take_failure(region, action)
                if failure is not None and failure[0] == RESET:  # no answer: a TCP reset
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if failure is not None:
                    status, code = failure
                    payload = (
                        f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
                        f"<Message>injected by the test proxy</Message></Error></Errors>"
                        f"<RequestID>x</RequestID></Response>"
                    ).encode()
                    self._reply(status, [("Content-Type", "text/xml")], payload)
                    return
                with proxy._lock:
                    proxy.in_flight[action] = proxy.in_flight.get(action, 0) + 1
                    proxy.max_in_flight[action] = max(proxy.max_in_flight.get(action, 0), proxy.in_flight[action])
                try:
                    if proxy.delay_secs.get(action):
                        time.sleep(proxy.delay_secs[action])
                    conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    conn.close()
                finally:
                    with proxy._lock:
                        proxy.in_flight[action] -= 1
                skip = ("content-length", "connection", "transfer-encoding", "server", "date")
                self._reply(resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in skip], data)

            do_POST = _forward
            do_GET = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _take_failure(self, region: str, action: str) -> tuple[int, str] | None:
        with self._lock:
            self.calls[(region, action)] = self.calls.get((region, action), 0) + 1
            if region not in self.failing:
                return None
            status, code, times = self.failing[region]
            self.hits[region] = self.hits.get(region, 0) + 1
            if times is not None:
                if times <= 1:
                    self.failing.pop(region)
                else:
                    self.failing[region] = (status, code, times - 1)
            return status, code

    def fail(
        self, region: str, status: int = 503, code: str = "RequestLimitExceeded", times: int | None = None
    ) -> None:
        """Fail every request signed for `region` (or only the next `times` ones); `status`
        RESET drops the connection without an answer instead."""
        self.failing[region] = (status, code, times)

    def heal(self, region: str) -> None:
        self.failing.pop(region, None)

    def count(self, action: str, region: str | None = None) -> int:
        return sum(n for (r, a), n in self.calls.items() if a == action and region in (None, r))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def discovery_env(endpoint: str) -> dict[str, str]:
    return {**AWS_TEST_ENV, "AWS_DISCOVERY_ENDPOINT_URL": endpoint}


def discover(args: Iterable[str], endpoint: str, env: Mapping[str, str] | None = None):
    """Run `aws-discovery ARGS` against `endpoint`; returns the CliResult."""
    return run_cli(["aws-discovery", *args], b"", env={**discovery_env(endpoint), **(env or {})})


def records(result: Any) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in result.stdout_lines]


_VALIDATOR: Any = None


def validate_records(items: Iterable[Mapping[str, Any]]) -> None:
    """Every record must fit schemas/inventory.schema.json (jsonschema, draft 2020-12)."""
    global _VALIDATOR
    if _VALIDATOR is None:
        import jsonschema

        schema = json.loads(Path(REPO_ROOT, "schemas", "inventory.schema.json").read_text())
        _VALIDATOR = jsonschema.Draft202012Validator(schema)
    for item in items:
        errors = sorted(_VALIDATOR.iter_errors(item), key=str)
        assert not errors, f"record does not fit the inventory schema: {errors[0].message}\n{item}"


def strip_time(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "observed_at"} for item in items]


def discover_clean(args: Iterable[str], env: Mapping[str, str], timeout_secs: float = 120) -> Any:
    """Run `aws-discovery ARGS` with only PATH/HOME and `env`: no ambient AWS credentials, token,
    region or endpoint leak in from the test process (for the credential-chain tests)."""
    from tests.conftest import CliResult, command_path

    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    base.update({"AWS_EC2_METADATA_DISABLED": "true", "PYTHONUNBUFFERED": "1"})
    argv = [command_path("aws-discovery"), *args]
    proc = subprocess.run(argv, input=b"", capture_output=True, env={**base, **env}, timeout=timeout_secs)
    return CliResult(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


# -- pytest fixtures (import them into a test module: `from tests.helpers.discovery import moto`) --


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoEc2]:
    """One EC2 moto server of the module's own (the session moto_server holds S3 state)."""
    for key, value in AWS_TEST_ENV.items():
        os.environ.setdefault(key, value)
    server = MotoEc2()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean(request: pytest.FixtureRequest) -> None:
    """Every test starts from an empty estate (in modules that use `moto`)."""
    if "moto" in request.fixturenames:
        request.getfixturevalue("moto").reset()


@pytest.fixture
def proxy(moto: MotoEc2) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the module's moto, closed after the test."""
    front = FaultProxy(moto.port)
    yield front
    front.close()
