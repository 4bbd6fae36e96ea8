"""Failures are visible under the real Fluent Bit: our metrics say what Fluent Bit's health cannot.

Flow 2 (harmony-chain-to-s3.*) as shipped, with a wrong access key and the exec interval cut to
2 s: after the first run the textfile $HARMONY_STATE_ROOT/metrics/harmony-events.prom says
errors_total{kind="auth"} 1 and healthy 0, while Fluent Bit's own /api/v1/health still answers
200 (it never sees an exec child fail). Flow 3 (aws-discovery.*) as shipped, with one region's
reads refused: our /healthz answers 503 naming the region, Fluent Bit's health 200.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import AWS_TEST_ENV
from tests.helpers.discovery import FaultProxy, MotoEc2
from tests.helpers.emulator import start_emulator
from tests.helpers.events import CLIENT_ID
from tests.helpers.fluentbit import FluentBit
from tests.helpers.metrics import health, read_textfile, scrape, value, wait_for

pytestmark = [pytest.mark.pipeline, pytest.mark.integration, pytest.mark.xdist_group("fb-metrics")]

WRONG_KEY = "wrong-key-for-fluent-bit"
INTERVAL = {".conf": ("Interval_Sec  60", "Interval_Sec  2"), ".yaml": ("interval_sec: 60", "interval_sec: 2")}


def fluent_bit_health(fb: FluentBit) -> tuple[int, str]:
    assert fb.http_url is not None, "the shipped config turns Fluent Bit's HTTP server on"
    resp = requests.get(fb.http_url + "/api/v1/health", timeout=10)
    return resp.status_code, resp.text.strip()


@pytest.mark.parametrize("suffix", [".conf", ".yaml"])
def test_flow2_wrong_key_shows_in_our_textfile_within_one_cycle(fluent_bit_path, moto_server, tmp_path, suffix) -> None:
    import boto3

    bucket = f"fbm-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    state = tmp_path / "state"
    with start_emulator("--generate", "20", "--span-secs", "600") as emu:
        env = {
            **AWS_TEST_ENV,
            "AWS_REGION": "us-east-1",
            "HARMONY_BASE_URL": emu.url,
            "HARMONY_CLIENT_ID": CLIENT_ID,
            "HARMONY_ACCESS_KEY": WRONG_KEY,
            "HARMONY_STATE_ROOT": str(state),
            "HARMONY_S3_BUCKET": bucket,
            "S3_BATCH_ENDPOINT_URL": moto_server,
            "HARMONY_RECEIPTS_DIR": str(tmp_path / "receipts"),
        }
        old, new = INTERVAL[suffix]
        events_file = state / "metrics" / "harmony-pipes.prom"  # the chain's: every stage, labelled
        with FluentBit(fluent_bit_path, f"harmony-chain-to-s3{suffix}", tmp_path, env, {old: new}) as fb:
            fb.wait_until(events_file.exists, 40, "the first run's metrics textfile")
            runs = fb.stderr.count("Harmony refused the client id / access key")
            samples = read_textfile(events_file)
            auth = value(samples, "harmony_pipes_errors_total", command="harmony-events", kind="auth")
            assert auth >= 1 and auth <= max(runs, 1), "written by the run that failed, not later"
            assert value(samples, "harmony_pipes_healthy", command="harmony-events") == 0
            assert value(samples, "harmony_pipes_records_out_total", command="harmony-events") == 0
            assert value(samples, "harmony_pipes_last_success_timestamp_seconds", command="harmony-events") is None
            # ... while Fluent Bit itself is "ok": it never learns that its exec child failed.
            assert fluent_bit_health(fb) == (200, "ok")
            fb_metrics = requests.get(fb.http_url + "/api/v1/metrics/prometheus", timeout=10).text
            assert "fluentbit_input_records_total" in fb_metrics
            # The next runs add up in the same file (each run is a new process).
            fb.wait_until(
                lambda: (
                    (
                        value(
                            read_textfile(events_file),
                            "harmony_pipes_errors_total",
                            command="harmony-events",
                            kind="auth",
                        )
                        or 0
                    )
                    > auth
                ),
                20,
                "a second failed run counted",
            )
            # the same file holds the other stages, each labelled with its command
            samples = read_textfile(events_file)
            assert value(samples, "harmony_pipes_healthy", command="harmony-alerts") == 1
            assert value(samples, "harmony_pipes_healthy", command="s3-batch") is not None
            assert fb.stop() == 0, fb.tail()
    assert WRONG_KEY not in fb.stderr
    assert WRONG_KEY not in events_file.read_text()


REGION, OTHER = "eu-west-1", "us-east-1"
COMMAND = {"aws-discovery.conf": "Command              aws-discovery", "aws-discovery.yaml": "command: aws-discovery"}


@pytest.fixture(scope="module")
def ec2() -> Iterator[MotoEc2]:
    moto = MotoEc2()
    try:
        moto.launch(REGION, {"Name": "web-1", "env": "prod", "checkpoint_ssh:ubuntu": "ops-key.pem"})
        moto.launch(OTHER, {"Name": "web-2", "env": "prod", "checkpoint_ssh:ubuntu": "ops-key.pem"})
        yield moto
    finally:
        moto.stop()


@pytest.mark.parametrize("config", ["aws-discovery.conf", "aws-discovery.yaml"])
def test_flow3_refused_region_is_503_on_our_healthz(fluent_bit_path, ec2, tmp_path: Path, config) -> None:
    proxy = FaultProxy(ec2.port)
    proxy.fail(OTHER, 403, "UnauthorizedOperation")
    (tmp_path / "out").mkdir()
    env = {
        **AWS_TEST_ENV,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_DISCOVERY_ENDPOINT_URL": proxy.endpoint,
        "AWS_DISCOVERY_REGIONS": f"{REGION},{OTHER}",
        "AWS_DISCOVERY_TAGS": "env=prod",
        "AWS_DISCOVERY_SITE": "site-m",
        "HARMONY_STATE_ROOT": str(tmp_path / "state"),
        "HARMONY_INVENTORY_DIR": str(tmp_path / "out"),
    }
    try:
        with FluentBit(
            fluent_bit_path,
            config,
            tmp_path,
            env,
            {f"{COMMAND[config]} --interval-secs 60": f"{COMMAND[config]} --interval-secs 1"},
        ) as fb:
            assert fb.metrics_url is not None, "the shipped config serves our /metrics and /healthz"
            url = fb.metrics_url
            _, doc = wait_for(lambda: (s := health(url))[0] == 503 and s, 30, "our /healthz 503")
            assert doc["reason"].startswith(f"last cycle failed: regions failed: {OTHER}")
            # the cycle's counters land just after its health verdict: wait for them
            samples = wait_for(
                lambda: (
                    (s := scrape(url)) and value(s, "harmony_pipes_discovery_instances", command="aws-discovery") and s
                ),
                30,
                "the first cycle's instance count",
            )
            assert value(samples, "harmony_pipes_discovery_region_failed", command="aws-discovery", region=OTHER) == 1
            assert value(samples, "harmony_pipes_discovery_region_failed", command="aws-discovery", region=REGION) == 0
            assert value(samples, "harmony_pipes_discovery_instances", command="aws-discovery") == 1
            assert value(samples, "harmony_pipes_errors_total", command="aws-discovery", kind="auth") >= 1
            assert fluent_bit_health(fb) == (200, "ok")
            proxy.heal(OTHER)
            wait_for(lambda: health(url)[0] == 200, 30, "our /healthz 200 once the region answers")
            assert value(scrape(url), "harmony_pipes_discovery_instances", command="aws-discovery") == 2
            assert fb.stop() == 0, fb.tail()
    finally:
        proxy.close()
