"""Every shell recipe in pipelines/shell/ runs: the cron-able one-shot, the long-running chain
with ordered shutdown and restart, and the aws-discovery loop — against hec-emulator / moto on
127.0.0.1 and a file:// store."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import AWS_TEST_ENV, REPO_ROOT, command_path
from tests.helpers.discovery import MotoEc2
from tests.helpers.events import ACCESS_KEY, CLIENT_ID, make_events, write_events
from tests.helpers.logs import log_lines
from tests.helpers.pipelines import start_hec_emulator
from tests.helpers.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("shell-recipes")]

SHELL = REPO_ROOT / "pipelines" / "shell"
KEEP_TYPES = {"phishing", "malware", "alert", "dlp"}


def recipe_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARMONY_", "S3_BATCH_", "AWS_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def stored_alerts(root: Path) -> list[dict]:
    alerts = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts):
            body = path.read_bytes()
            if path.name.endswith(".gz"):
                body = gzip.decompress(body)
            alerts += [orjson.loads(line) for line in body.splitlines() if line.strip()]
    return alerts


@pytest.fixture(scope="module")
def tenant(tmp_path_factory) -> dict:
    events = make_events(50, span_secs=900, seed=33)
    path = write_events(tmp_path_factory.mktemp("shell-tenant") / "events.ndjson", events)
    proc, url = start_hec_emulator(["--events", str(path)])
    expected = {e["eventId"] for e in events if e["type"] in KEEP_TYPES or int(e["severity"]) >= 4}
    try:
        yield {"url": url, "expected": expected}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def harmony_env(tenant: dict, tmp_path: Path, **extra: str) -> dict[str, str]:
    settings = {
        "HARMONY_BASE_URL": tenant["url"],
        "HARMONY_CLIENT_ID": CLIENT_ID,
        "HARMONY_ACCESS_KEY": ACCESS_KEY,
        "HARMONY_START": "1h",
        "HARMONY_STATE_ROOT": str(tmp_path / "state"),
        "HARMONY_DEST": f"file://{tmp_path / 'store'}/",
    }
    return recipe_env(**{**settings, **extra})


def test_once_recipe_is_cronable(tenant, tmp_path) -> None:
    env = harmony_env(tenant, tmp_path)
    recipe = str(SHELL / "harmony-to-s3-once.sh")
    first = subprocess.run([recipe], env=env, capture_output=True, timeout=60)
    assert first.returncode == 0, first.stderr.decode()
    alerts = stored_alerts(tmp_path / "store")
    assert {a["event_id"] for a in alerts} == tenant["expected"]
    assert len(alerts) == len(tenant["expected"])
    # The next cron run resumes: nothing new, nothing twice.
    second = subprocess.run([recipe], env=env, capture_output=True, timeout=60)
    assert second.returncode == 0, second.stderr.decode()
    assert len(stored_alerts(tmp_path / "store")) == len(alerts)


def test_once_recipe_loses_nothing_while_the_bucket_is_missing(tenant, tmp_path, moto_server) -> None:
    """Cron runs while the bucket does not exist yet: each run exits 4 (s3-batch's code: the
    chain's worst stage), the collected alerts wait in s3-batch's spool, and the first run after
    the bucket appears delivers every alert, once."""
    import boto3

    bucket = f"cron-{os.getpid()}-{time.monotonic_ns() % 10**8}"
    dest = f"s3://{bucket}/harmony/alerts/"
    env = harmony_env(tenant, tmp_path, HARMONY_DEST=dest, **{**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto_server})
    recipe = str(SHELL / "harmony-to-s3-once.sh")
    for _ in range(2):
        failed = subprocess.run([recipe], env=env, capture_output=True, timeout=60)
        assert failed.returncode == 4, failed.stderr.decode()
        assert b"does not exist" in failed.stderr
        assert [line["command"] for line in log_lines(failed.stderr.decode(), "error")] == ["s3-batch"]
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    for _ in range(2):  # the run after the bucket appears, then one with nothing new
        ok = subprocess.run([recipe], env=env, capture_output=True, timeout=60)
        assert ok.returncode == 0, ok.stderr.decode()
    alerts = []
    for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        alerts += [orjson.loads(line) for line in gzip.decompress(body).splitlines() if line.strip()]
    assert sorted(a["event_id"] for a in alerts) == sorted(tenant["expected"])


def test_once_recipe_exits_with_the_failing_command_code(tenant, tmp_path) -> None:
    env = harmony_env(tenant, tmp_path, HARMONY_ACCESS_KEY="wrong-key")
    result = subprocess.run([str(SHELL / "harmony-to-s3-once.sh")], env=env, capture_output=True, timeout=60)
    assert result.returncode == 3, result.stderr.decode()
    assert [line["command"] for line in log_lines(result.stderr.decode(), "error")] == ["harmony-events"]
    assert "wrong-key" not in result.stderr.decode()


def test_once_recipe_requires_a_destination(tmp_path) -> None:
    result = subprocess.run([str(SHELL / "harmony-to-s3-once.sh")], env=recipe_env(), capture_output=True)
    assert result.returncode != 0
    assert b"HARMONY_DEST" in result.stderr


def test_loop_recipe_streams_and_stops_in_order(tenant, tmp_path) -> None:
    env = harmony_env(tenant, tmp_path, HARMONY_INTERVAL_SECS="1", S3_BATCH_MAX_AGE_SECS="60")
    proc = subprocess.Popen(
        [str(SHELL / "harmony-to-s3-loop.sh")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        # harmony-events keeps polling; its first cycle's alerts wait in s3-batch's open batch
        # (max age 60 s). The cursor file appears once the sink committed that cycle. SIGTERM:
        # the chain's source stops, s3-batch seals and writes the batch, the script exits 0.
        cursor = tmp_path / "state" / "events" / "harmony-events.cursor.json"
        wait_until(lambda: cursor.exists() or proc.poll() is not None, 30, "the first cycle committed")
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert b"stopped" in err
    alerts = stored_alerts(tmp_path / "store")
    assert {a["event_id"] for a in alerts} == tenant["expected"]
    assert len(alerts) == len(tenant["expected"])
    receipts = [orjson.loads(line) for line in out.splitlines() if line.strip()]
    assert sum(r["records"] for r in receipts) == len(alerts)


def test_loop_recipe_restarts_with_backoff_after_a_runtime_failure(tmp_path) -> None:
    """An unreachable gateway (exit 4) is not a config error: the loop restarts the chain after
    1 s, then 2 s, ...; SIGTERM during the pause still stops it with exit 0."""
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    env = recipe_env(
        HARMONY_BASE_URL=f"http://127.0.0.1:{closed_port}",
        HARMONY_CLIENT_ID=CLIENT_ID,
        HARMONY_ACCESS_KEY=ACCESS_KEY,
        HARMONY_MAX_RETRIES="0",
        HARMONY_STATE_ROOT=str(tmp_path / "state"),
        HARMONY_DEST=f"file://{tmp_path}/store/",
    )
    proc = subprocess.Popen(
        [str(SHELL / "harmony-to-s3-loop.sh")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stderr is not None
        restarts = []
        deadline = time.monotonic() + 30
        while len(restarts) < 2 and time.monotonic() < deadline:
            line = proc.stderr.readline().decode()
            if not line:
                break
            if "restarting in" in line:
                restarts.append(line.strip())
        assert len(restarts) == 2, restarts
        assert "chain ended (exit 4)" in restarts[0] and restarts[0].endswith("restarting in 1s"), restarts
        assert restarts[1].endswith("restarting in 2s"), restarts
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0


def test_loop_recipe_loses_nothing_while_the_bucket_is_missing(tenant, tmp_path, moto_server) -> None:
    """The loop runs while the bucket is missing: the alerts collected meanwhile wait in
    s3-batch's spool; after the bucket appears, the next start of the loop delivers them all."""
    import boto3

    bucket = f"loop-{os.getpid()}-{time.monotonic_ns() % 10**8}"
    env = harmony_env(
        tenant,
        tmp_path,
        HARMONY_DEST=f"s3://{bucket}/harmony/alerts/",
        HARMONY_INTERVAL_SECS="1",
        S3_BATCH_MAX_AGE_SECS="60",
        **{**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto_server},
    )

    def run_loop_for(secs: float) -> bytes:
        proc = subprocess.Popen(
            [str(SHELL / "harmony-to-s3-loop.sh")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            time.sleep(secs)
            assert proc.poll() is None, proc.stderr.read().decode()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err.decode()
        return err

    err = run_loop_for(4)
    assert b"does not exist" in err
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    run_loop_for(4)
    alerts = []
    for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        alerts += [orjson.loads(line) for line in gzip.decompress(body).splitlines() if line.strip()]
    assert sorted(a["event_id"] for a in alerts) == sorted(tenant["expected"])


def test_systemd_unit_verifies_and_runs_the_chain(tmp_path) -> None:
    """`systemd-analyze verify` accepts the unit (pointed at this venv's command); it runs
    `harmony-pipes chain` (a stop signal to it loses nothing, so the default KillMode is right)
    and does not restart on configuration (2) or credential (3) errors."""
    import shutil

    text = (SHELL / "harmony-to-s3.service").read_text()
    assert "ExecStart=/usr/local/bin/harmony-pipes chain " in text
    assert "RestartPreventExitStatus=2 3" in text
    assert "KillMode" not in text
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    env_file = tmp_path / "harmony.env"
    env_file.write_text("HARMONY_DEST=file:///tmp/x/\n")
    unit = tmp_path / "harmony-to-s3.service"
    unit.write_text(
        text.replace("/usr/local/bin/harmony-pipes", command_path("harmony-pipes")).replace(
            "/etc/harmony-pipes/harmony.env", str(env_file)
        )
    )
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert not result.stderr.strip() and not result.stdout.strip(), (result.stdout + result.stderr).decode()


def test_loop_recipe_does_not_restart_on_a_config_error(tmp_path) -> None:
    env = recipe_env(HARMONY_STATE_ROOT=str(tmp_path / "state"), HARMONY_DEST=f"file://{tmp_path}/store/")
    result = subprocess.run([str(SHELL / "harmony-to-s3-loop.sh")], env=env, capture_output=True, timeout=60)
    assert result.returncode == 2, result.stderr.decode()
    assert b"not restarting" in result.stderr


def test_discovery_loop_recipe(tmp_path) -> None:
    moto = MotoEc2()
    try:
        (instance,) = moto.launch("us-east-1", {"Name": "web", "env": "prod"})
        env = recipe_env(
            **AWS_TEST_ENV,
            AWS_DISCOVERY_ENDPOINT_URL=moto.endpoint,
            AWS_DISCOVERY_REGIONS="us-east-1",
            AWS_DISCOVERY_TAGS="env=prod",
            AWS_DISCOVERY_DEFAULT_USER="ec2-user",
            AWS_DISCOVERY_DEFAULT_KEY="default-key",
            AWS_DISCOVERY_KNOWN_KEYS="default-key",
            AWS_DISCOVERY_INTERVAL_SECS="1",
            HARMONY_STATE_ROOT=str(tmp_path / "state"),
        )
        proc = subprocess.Popen(
            [str(SHELL / "aws-discovery-loop.sh")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            line = proc.stdout.readline()
            record = orjson.loads(line)
            assert record["op"] == "snapshot"
            assert record["instance_id"] == instance["InstanceId"]
            proc.send_signal(signal.SIGTERM)
            rest, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err.decode()
        assert not rest.strip(), "no second snapshot"
        # A configuration error (exit 2) stops the loop instead of restarting forever.
        bad = subprocess.run(
            [str(SHELL / "aws-discovery-loop.sh")],
            env={**env, "AWS_DISCOVERY_RETRY_MODE": "bogus"},
            capture_output=True,
            timeout=30,
        )
        assert bad.returncode == 2
        assert b"not restarting" in bad.stderr
    finally:
        moto.stop()
