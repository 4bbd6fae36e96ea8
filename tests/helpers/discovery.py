"""Helpers for the aws-discovery tests: an own moto server, EC2 fixtures, a per-region fault proxy.

The discovery tests reset EC2 state between tests (POST /moto-api/reset), so they run their own
moto server instead of the session-wide `moto_server` other areas keep S3 buckets in.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import AWS_TEST_ENV, REPO_ROOT, free_port, run_cli

LINUX_AMI = "ami-760aaa0f"  # amzn, no platform
WINDOWS_AMI = "ami-03cf127a"  # moto's bundled Windows_Server-2016 image: Platform == "windows"
REGIONS = ("us-east-1", "eu-west-1")


class MotoEc2:
    """A moto server of our own, reset per test, with small builders for EC2 fixtures."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self._clients: dict[str, Any] = {}
        # moto's backends are process-wide: a new server still sees the instances an earlier test
        # in this pytest worker launched, so every MotoEc2 starts empty.
        self.reset()

    def stop(self) -> None:
        self.server.stop()

    def reset(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("POST", "/moto-api/reset")
        conn.getresponse().read()
        conn.close()

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


class FaultProxy:
    """HTTP proxy in front of moto that fails the requests signed for chosen regions.

    moto has no fault injection, and our command has one endpoint for every region; the region
    is in the SigV4 credential scope of each request, so the proxy can fail exactly one region
    with a real HTTP error (default: 503 RequestLimitExceeded, i.e. EC2 throttling).
    """

    _SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.failing: dict[str, tuple[int, str]] = {}
        self.hits: dict[str, int] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                found = proxy._SCOPE.search(self.headers.get("Authorization", ""))
                region = found.group(1) if found else ""
                if region in proxy.failing:
                    proxy.hits[region] = proxy.hits.get(region, 0) + 1
                    status, code = proxy.failing[region]
                    payload = (
                        f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
                        f"<Message>injected by the test proxy</Message></Error></Errors>"
                        f"<RequestID>x</RequestID></Response>"
                    ).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
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
                self.wfile.write(data)
                conn.close()

            do_POST = _forward
            do_GET = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fail(self, region: str, status: int = 503, code: str = "RequestLimitExceeded") -> None:
        self.failing[region] = (status, code)

    def heal(self, region: str) -> None:
        self.failing.pop(region, None)

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
