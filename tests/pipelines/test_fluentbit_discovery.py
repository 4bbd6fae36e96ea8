"""Flow 3 with the real Fluent Bit: a long-running aws-discovery under exec (oneshot, threaded)
against a moto EC2 server on 127.0.0.1, its records delivered while it runs — to a file
(aws-discovery.conf / .yaml) and over HTTP (aws-discovery-http.yaml) — and its exit code
propagated when it dies."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from tests.helpers.discovery import MotoEc2, validate_records
from tests.helpers.fluentbit import FluentBit, read_ndjson

pytestmark = [pytest.mark.pipeline, pytest.mark.integration, pytest.mark.xdist_group("fb-discovery")]

REGION = "eu-west-1"
CYCLE_DONE = "cycle done"  # aws-discovery logs this on stderr after each cycle


@pytest.fixture(scope="module")
def ec2() -> Iterator[tuple[MotoEc2, dict[str, str]]]:
    """Own moto server: three selected instances (Linux with a user tag, Linux on the default
    key, Windows) and one without the selected tag."""
    moto = MotoEc2()
    try:
        expected = {}
        (linux,) = moto.launch(REGION, {"Name": "web-1", "env": "prod", "checkpoint_ssh:ubuntu": "ops-key.pem"})
        expected[linux["InstanceId"]] = "ssh"
        (plain,) = moto.launch(REGION, {"Name": "db-1", "env": "prod"})
        expected[plain["InstanceId"]] = "ssh"
        (win,) = moto.launch(REGION, {"Name": "win-1", "env": "prod"}, windows=True)
        expected[win["InstanceId"]] = "rdp"
        moto.launch(REGION, {"Name": "not-selected", "env": "dev"})
        yield moto, expected
    finally:
        moto.stop()


def discovery_env(moto: MotoEc2, tmp_path: Path) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DISCOVERY_ENDPOINT_URL": moto.endpoint,
        "AWS_DISCOVERY_REGIONS": REGION,
        "AWS_DISCOVERY_TAGS": "env=prod",
        "AWS_DISCOVERY_SITE": "site-a",
        "AWS_DISCOVERY_DEFAULT_USER": "ec2-user",
        "AWS_DISCOVERY_DEFAULT_KEY": "default-key",
        "AWS_DISCOVERY_KNOWN_KEYS": "default-key,ops-key",
        "HARMONY_STATE_ROOT": str(tmp_path / "state"),
        "HARMONY_INVENTORY_DIR": str(tmp_path / "out"),
    }


def check_snapshot(records: list[dict], expected: dict[str, str]) -> None:
    validate_records(records)
    assert {r["op"] for r in records} == {"snapshot"}
    got = {r["instance_id"]: r["app"]["type"] for r in records}
    assert got == expected
    assert len(records) == len(expected), "each instance exactly once"
    users = {r["instance_id"]: r["app"].get("users") for r in records}
    ssh_users = sorted(u["user"] for uid, kind in expected.items() if kind == "ssh" for u in users[uid])
    assert ssh_users == ["ec2-user", "ubuntu"]


@pytest.mark.parametrize("config", ["aws-discovery.conf", "aws-discovery.yaml"])
def test_discovery_records_arrive_while_it_runs(fluent_bit_path, ec2, tmp_path, config) -> None:
    moto, expected = ec2
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "inventory.ndjson"
    with FluentBit(fluent_bit_path, config, tmp_path, discovery_env(moto, tmp_path)) as fb:
        # The process keeps running (60 s interval); the snapshot must arrive before it exits.
        fb.wait_until(lambda: len(read_ndjson(out)) >= len(expected), 30, "the snapshot records")
        assert fb.proc.poll() is None, "aws-discovery should still be running"
        rc = fb.stop()
    assert rc == 0
    check_snapshot(read_ndjson(out), expected)
    # A restart on the same state dir: no second snapshot (diffs only, none here).
    with FluentBit(fluent_bit_path, config, tmp_path, discovery_env(moto, tmp_path)) as fb:
        fb.wait_until(lambda: CYCLE_DONE in fb.stderr, 30, "the first cycle after the restart")
        fb.stop()
    check_snapshot(read_ndjson(out), expected)


def test_discovery_over_http(fluent_bit_path, ec2, tmp_path) -> None:
    moto, expected = ec2
    received: list[dict] = []
    auth: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            auth.append(self.headers.get("Authorization", ""))
            received.extend(orjson.loads(line) for line in body.splitlines() if line.strip())
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {
        **discovery_env(moto, tmp_path),
        "INVENTORY_HTTP_HOST": "127.0.0.1",
        "INVENTORY_HTTP_PORT": str(server.server_address[1]),
        "INVENTORY_HTTP_URI": "/inventory",
        "INVENTORY_HTTP_TOKEN": "tok-123",
    }
    try:
        with FluentBit(fluent_bit_path, "aws-discovery-http.yaml", tmp_path, env) as fb:
            fb.wait_until(lambda: len(received) >= len(expected), 30, "the snapshot over HTTP")
            assert fb.stop() == 0
    finally:
        server.shutdown()
    check_snapshot(received, expected)
    assert set(auth) == {"Bearer tok-123"}
    assert "tok-123" not in fb.stderr


def test_discovery_exit_code_is_propagated(fluent_bit_path, ec2, tmp_path) -> None:
    """aws-discovery dies on a config error (exit 2): Fluent Bit exits with that code, so a
    supervisor sees the failure instead of a silent, idle Fluent Bit."""
    moto, _ = ec2
    env = {**discovery_env(moto, tmp_path), "AWS_DISCOVERY_RETRY_MODE": "bogus"}
    with FluentBit(fluent_bit_path, "aws-discovery.conf", tmp_path, env) as fb:
        rc = fb.wait_exit(30)
    assert rc == 2, fb.tail()


@pytest.mark.parametrize(
    ("config", "region", "command"),
    [
        ("aws-discovery.conf", "ap-southeast-2", "Command              aws-discovery --interval-secs"),
        ("aws-discovery.yaml", "ap-northeast-1", "command: aws-discovery --interval-secs"),
    ],
)
def test_discovery_diffs_stream_on_later_cycles(fluent_bit_path, ec2, tmp_path, config, region, command) -> None:
    """Not only the first cycle: an instance launched and one terminated while aws-discovery runs
    arrive as `add` / `remove` records on a later cycle, Fluent Bit still running. Only the 60 s
    interval is shortened to 1 s; a region of its own keeps the module's instances untouched."""
    moto, _ = ec2
    (stays,) = moto.launch(region, {"Name": "stays", "env": "prod"})
    (goes,) = moto.launch(region, {"Name": "goes", "env": "prod"})
    env = {**discovery_env(moto, tmp_path), "AWS_DISCOVERY_REGIONS": region, "AWS_DEFAULT_REGION": region}
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "inventory.ndjson"
    interval = {f"{command} 60": f"{command} 1"}
    with FluentBit(fluent_bit_path, config, tmp_path, env, interval) as fb:
        fb.wait_until(lambda: len(read_ndjson(out)) >= 2, 30, "the snapshot")
        (added,) = moto.launch(region, {"Name": "new", "env": "prod"})
        moto.ec2(region).terminate_instances(InstanceIds=[goes["InstanceId"]])

        def ops() -> dict[str, set[str]]:
            found: dict[str, set[str]] = {}
            for record in read_ndjson(out):
                found.setdefault(record["op"], set()).add(record["instance_id"])
            return found

        fb.wait_until(lambda: {"add", "remove"} <= set(ops()), 30, "the add and remove diffs")
        assert fb.proc.poll() is None, "aws-discovery (and Fluent Bit) keep running"
        assert fb.stop() == 0
    validate_records(read_ndjson(out))
    found = ops()
    assert found["snapshot"] == {stays["InstanceId"], goes["InstanceId"]}
    assert found["add"] == {added["InstanceId"]}
    assert found["remove"] == {goes["InstanceId"]}
