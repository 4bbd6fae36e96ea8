"""--metrics-addr (/metrics, /healthz) and --metrics-file with real processes and real servers.

Every metric asserted here is read from a real run: a scrape of the command's own HTTP endpoint
or the textfile it wrote, parsed with prometheus_client's parser.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests

from tests.conftest import AWS_TEST_ENV, command_path, free_port, run_cli
from tests.helpers.discovery import (
    FaultProxy,
    discovery_env,
)
from tests.helpers.emulator import start_emulator
from tests.helpers.events import CLIENT_ID, collector_env, make_events
from tests.helpers.metrics import families, health, read_textfile, scrape, value, wait_for
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.integration

EVENTS = 40
WRONG_KEY = "wrong-key-0000"
ERROR_KINDS = {"auth", "unreachable", "tempfail", "config", "bad_input", "runtime"}


class Running:
    """A command as a long-running process: stdin a pipe we hold, stderr in a file."""

    def __init__(self, args: list[str], env: dict[str, str], tmp_path: Path, name: str = "cmd") -> None:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        full_env.pop("HARMONY_PIPES_STATE_DIR", None)
        self.stderr_path = tmp_path / f"{name}.stderr"
        self.stdout_path = tmp_path / f"{name}.stdout"
        self.proc = subprocess.Popen(
            [command_path(args[0]), *args[1:]],
            stdin=subprocess.PIPE,
            stdout=self.stdout_path.open("wb"),
            stderr=self.stderr_path.open("wb"),
            env=full_env,
        )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def feed(self, lines: list[bytes]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"".join(line + b"\n" for line in lines))
        self.proc.stdin.flush()

    def finish(self, timeout_secs: float = 60) -> int:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.proc.wait(timeout=timeout_secs)

    def stop(self, timeout_secs: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.finish(timeout_secs)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for process in started:
        process.kill()


def start(running: list[Running], args: list[str], env: dict[str, str], tmp_path: Path, name: str) -> Running:
    process = Running(args, env, tmp_path, name)
    running.append(process)
    return process


# -- harmony-events -----------------------------------------------------------------------------


def test_events_wrong_key_is_503_within_one_cycle_and_a_fixed_key_heals(running, tmp_path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with start_emulator("--generate", str(EVENTS), "--span-secs", "600") as emu:
        env = collector_env(emu.url, HARMONY_ACCESS_KEY=WRONG_KEY)
        events = start(
            running,
            ["harmony-events", "--interval-secs", "2", "--metrics-addr", f"127.0.0.1:{port}"],
            env,
            tmp_path,
            "events",
        )
        _, doc = wait_for(lambda: (s := health(url))[0] == 503 and s, 20, "/healthz 503")
        samples = scrape(url)
        cycles = value(samples, "harmony_pipes_cycles_total", command="harmony-events")
        assert cycles in (1.0, 2.0), "reported after the first cycle, not after many"
        assert value(samples, "harmony_pipes_errors_total", command="harmony-events", kind="auth") == cycles
        assert value(samples, "harmony_pipes_healthy", command="harmony-events") == 0
        assert value(samples, "harmony_pipes_last_success_timestamp_seconds", command="harmony-events") is None
        assert doc["status"] == "unhealthy" and doc["command"] == "harmony-events"
        assert "Harmony refused the client id / access key" in doc["reason"]
        assert WRONG_KEY not in doc["reason"] and WRONG_KEY not in events.stderr
        assert events.proc.poll() is None, "a long-running source with /healthz keeps trying"

        # The key is fixed server-side: the gateway accepts it from now on.
        resp = requests.post(
            emu.url + "/_emulator/credentials", json={"clientId": CLIENT_ID, "accessKey": WRONG_KEY}, timeout=10
        )
        assert resp.status_code == 200
        before = time.time()
        _, doc = wait_for(lambda: (s := health(url))[0] == 200 and s, 20, "/healthz 200 after the fix")
        assert doc == {"status": "ok", "command": "harmony-events", "last_success": doc["last_success"]}
        samples = scrape(url)
        assert value(samples, "harmony_pipes_records_out_total", command="harmony-events") == EVENTS
        assert value(samples, "harmony_pipes_healthy", command="harmony-events") == 1
        last_success = value(samples, "harmony_pipes_last_success_timestamp_seconds", command="harmony-events")
        assert before - 1 <= last_success <= time.time() + 1
        lag = value(samples, "harmony_pipes_events_cursor_lag_seconds", command="harmony-events")
        assert 0 <= lag < 30
        assert value(samples, "harmony_pipes_events_token_refreshes_total", command="harmony-events") == 0
        assert events.stop() == 0
    assert len(events.stdout_path.read_bytes().splitlines()) == EVENTS


def test_events_dead_gateway_is_503_unreachable(running, tmp_path) -> None:
    port, dead = free_port(), free_port()  # nothing listens on `dead`
    url = f"http://127.0.0.1:{port}"
    env = collector_env(f"http://127.0.0.1:{dead}")
    events = start(
        running,
        ["harmony-events", "--interval-secs", "1", "--metrics-addr", f"127.0.0.1:{port}"],
        env,
        tmp_path,
        "events",
    )
    _, doc = wait_for(lambda: (s := health(url))[0] == 503 and s, 20, "/healthz 503")
    assert "cannot reach" in doc["reason"] and "Connection refused" in doc["reason"]
    samples = scrape(url)
    assert value(samples, "harmony_pipes_errors_total", command="harmony-events", kind="unreachable") >= 1
    assert value(samples, "harmony_pipes_errors_total", command="harmony-events", kind="auth") == 0
    assert events.proc.poll() is None
    assert events.stop() == 0


def test_events_with_no_successful_cycle_for_3_intervals_is_503_until_one_succeeds(running, tmp_path) -> None:
    """A gateway that answers, but only after 6 s: no cycle fails, none succeeds for more than
    3 x --interval-secs 1, so /healthz turns 503 with that reason; the late answer heals it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with start_emulator("--generate", "5", "--span-secs", "300", "--delay-ms", "6000") as emu:
        args = ["harmony-events", "--interval-secs", "1", "--metrics-addr", f"127.0.0.1:{port}"]
        events = start(running, args, collector_env(emu.url), tmp_path, "events")
        _, doc = wait_for(lambda: (s := health(url))[0] == 503 and s, 20, "/healthz 503")
        assert doc["reason"].startswith("no successful cycle since start") and "3 x --interval-secs 1" in doc["reason"]
        assert value(scrape(url), "harmony_pipes_errors_total", command="harmony-events", kind="unreachable") == 0
        wait_for(lambda: health(url)[0] == 200, 30, "/healthz 200 after the late answers")
        assert events.stop() == 0, events.stderr


def test_events_without_metrics_addr_still_exits_3_on_a_wrong_key(tmp_path) -> None:
    with start_emulator("--generate", "5") as emu:
        env = collector_env(emu.url, HARMONY_ACCESS_KEY=WRONG_KEY)
        result = run_cli(
            ["harmony-events", "--interval-secs", "1", "--metrics-file", str(tmp_path / "m.prom")], env=env
        )
    assert result.returncode == 3, result.stderr
    samples = read_textfile(tmp_path / "m.prom")
    assert value(samples, "harmony_pipes_errors_total", command="harmony-events", kind="auth") == 1
    assert value(samples, "harmony_pipes_healthy", command="harmony-events") == 0


def test_events_once_metrics_file_counts_and_carries_over_runs(tmp_path) -> None:
    metrics_dir = tmp_path / "metrics"
    state = tmp_path / "state"
    with start_emulator("--generate", str(EVENTS), "--span-secs", "600") as emu:
        env = collector_env(emu.url)
        args = ["harmony-events", "--once", "--state-dir", str(state), "--metrics-file", f"{metrics_dir}/"]
        first = run_cli(args, env=env)
        assert first.returncode == 0, first.stderr
        path = metrics_dir / "harmony-events.prom"  # a directory gets <command>.prom
        text = path.read_text()
        samples = read_textfile(path)
        types = families(text)
        assert types["harmony_pipes_records_out"] == "counter"
        assert types["harmony_pipes_last_success_timestamp_seconds"] == "gauge"
        assert value(samples, "harmony_pipes_records_out_total", command="harmony-events") == EVENTS
        assert value(samples, "harmony_pipes_records_in_total", command="harmony-events") == EVENTS
        assert value(samples, "harmony_pipes_bad_records_total", command="harmony-events") == 0
        assert value(samples, "harmony_pipes_cycles_total", command="harmony-events") == 1
        assert value(samples, "harmony_pipes_events_pages_total", command="harmony-events") == first.stats["pages"]
        assert (
            value(samples, "harmony_pipes_events_requests_total", command="harmony-events") == first.stats["requests"]
        )
        for kind in ERROR_KINDS:
            assert value(samples, "harmony_pipes_errors_total", command="harmony-events", kind=kind) == 0
        assert value(samples, "harmony_pipes_healthy", command="harmony-events") == 1
        success = value(samples, "harmony_pipes_last_success_timestamp_seconds", command="harmony-events")
        assert abs(success - time.time()) < 60

        # A second run (nothing new) continues the counters of the first: they stay counters.
        second = run_cli(args, env=env)
        assert second.returncode == 0 and second.stats["records_out"] == 0
        samples = read_textfile(path)
        assert value(samples, "harmony_pipes_records_out_total", command="harmony-events") == EVENTS
        assert value(samples, "harmony_pipes_cycles_total", command="harmony-events") == 2
        success2 = value(samples, "harmony_pipes_last_success_timestamp_seconds", command="harmony-events")
        assert success2 >= success

        # A run with a wrong key: the file says so, and keeps the last success of the runs before.
        third = run_cli(args, env={**env, "HARMONY_ACCESS_KEY": WRONG_KEY})
        assert third.returncode == 3
        samples = read_textfile(path)
        assert value(samples, "harmony_pipes_errors_total", command="harmony-events", kind="auth") == 1
        assert value(samples, "harmony_pipes_healthy", command="harmony-events") == 0
        assert value(samples, "harmony_pipes_last_success_timestamp_seconds", command="harmony-events") == success2
        assert value(samples, "harmony_pipes_last_failure_timestamp_seconds", command="harmony-events") > success2
    assert not list(metrics_dir.glob("*.prom.*")), "no temp file left behind"


def test_events_metrics_count_429s_retries_and_token_refreshes(tmp_path) -> None:
    """The gateway's 429s, our retries and token refreshes, as the run's own stats line counts them."""
    path = tmp_path / "m.prom"
    emulator_args = ["--generate", str(EVENTS), "--span-secs", "600", "--rate-limit-every", "2"]
    with start_emulator(*emulator_args, "--retry-after-secs", "0", "--token-ttl-secs", "1") as emu:
        args = ["harmony-events", "--once", "--max-records-per-window", "5", "--metrics-file", str(path)]
        result = run_cli(args, env=collector_env(emu.url))
    assert result.returncode == 0, result.stderr
    stats, samples = result.stats, read_textfile(path)
    assert stats["rate_limited"] > 0 and stats["retries"] >= stats["rate_limited"]
    for metric, key in (
        ("rate_limited", "rate_limited"),
        ("retries", "retries"),
        ("token_refreshes", "token_refreshes"),
    ):
        assert value(samples, f"harmony_pipes_events_{metric}_total", command="harmony-events") == stats[key], key
    assert value(samples, "harmony_pipes_records_out_total", command="harmony-events") == EVENTS


# -- harmony-alerts -----------------------------------------------------------------------------


def test_alerts_metrics_file_counts(tmp_path) -> None:
    events = make_events(30, span_secs=600, seed=5)
    for event in events:
        event["type"] = "phishing"
    lines = [orjson.dumps(e) for e in events] + [orjson.dumps(events[3]), orjson.dumps(events[7]), b"{not json"]
    path = tmp_path / "alerts.prom"
    result = run_cli(["harmony-alerts", "--metrics-file", str(path)], b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.stderr
    samples = read_textfile(path)
    command = {"command": "harmony-alerts"}
    assert value(samples, "harmony_pipes_records_in_total", **command) == 32
    assert value(samples, "harmony_pipes_records_out_total", **command) == 30 == len(result.stdout_lines)
    assert value(samples, "harmony_pipes_bad_records_total", **command) == 1
    assert value(samples, "harmony_pipes_alerts_duplicates_total", **command) == 2
    assert value(samples, "harmony_pipes_alerts_dedupe_keys", **command) == 30
    assert value(samples, "harmony_pipes_bytes_in_total", **command) == result.stats["bytes_in"]
    assert value(samples, "harmony_pipes_healthy", **command) == 1
    assert value(samples, "harmony_pipes_last_success_timestamp_seconds", **command) is not None


def test_the_metrics_file_is_replaced_whole_never_seen_half_written(running, tmp_path) -> None:
    """node-exporter may read the textfile at any moment: every read sees a complete file."""
    path = tmp_path / "alerts.prom"
    alerts = start(
        running, ["harmony-alerts", "--all", "--stats-interval-secs", "0.02", "--metrics-file", str(path)], {},
        tmp_path, "alerts",
    )  # fmt: skip
    events = [orjson.dumps(e) for e in make_events(2000, span_secs=600, seed=9)]
    wait_until(path.exists, 20, "the first textfile")
    reads = counts = 0
    for start_index in range(0, len(events), 20):
        alerts.feed(events[start_index : start_index + 20])
        for _ in range(5):
            text = path.read_text()
            reads += 1
            assert text.endswith("\n") and "# EOF" not in text, text[-200:]
            samples = read_textfile(path) if reads % 10 == 0 else None
            if samples is not None:
                counts = value(samples, "harmony_pipes_records_in_total", command="harmony-alerts")
                assert counts is not None and value(samples, "harmony_pipes_healthy", command="harmony-alerts") == 1
            assert "harmony_pipes_records_in_total" in text and "harmony_pipes_healthy" in text

    def progress_seen() -> float:  # a read while running that already counts records (whole, too)
        text = path.read_text()
        assert text.endswith("\n") and "# EOF" not in text, text[-200:]
        return value(read_textfile(path), "harmony_pipes_records_in_total", command="harmony-alerts") or 0

    # (the feed may be all in stdin's pipe before the first record is read: wait, do not assume)
    counts = counts or wait_until(progress_seen, 20, "a textfile counting records while running")
    assert alerts.finish() == 0, alerts.stderr
    assert reads == 500 and counts > 0
    assert value(read_textfile(path), "harmony_pipes_records_in_total", command="harmony-alerts") == 2000
    assert not list(tmp_path.glob("alerts.prom.*")), "no temp file left behind"


def test_alerts_metrics_addr_serves_while_reading(running, tmp_path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    alerts = start(running, ["harmony-alerts", "--metrics-addr", f"127.0.0.1:{port}"], {}, tmp_path, "alerts")
    events = make_events(10, span_secs=60, seed=6)
    for event in events:
        event["type"] = "malware"
    alerts.feed([orjson.dumps(e) for e in events])
    samples = wait_for(
        lambda: (
            (s := scrape(url)) and value(s, "harmony_pipes_records_out_total", command="harmony-alerts") == 10 and s
        ),
        20,
        "10 alerts counted",
    )
    assert value(samples, "harmony_pipes_alerts_alerts_total", command="harmony-alerts") == 10
    assert health(url) == (
        200,
        {"status": "ok", "command": "harmony-alerts", "last_success": health(url)[1]["last_success"]},
    )
    assert "process_resident_memory_bytes" in requests.get(url + "/metrics", timeout=10).text
    assert requests.get(url + "/other", timeout=10).status_code == 404
    assert alerts.finish() == 0


def test_metrics_options_are_checked(tmp_path) -> None:
    bad = run_cli(["harmony-alerts", "--metrics-addr", "nope"])
    assert bad.returncode == 2 and "--metrics-addr" in bad.stderr and "Traceback" not in bad.stderr
    with __import__("socket").socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_cli(["harmony-alerts", "--metrics-addr", f"127.0.0.1:{port}"])
    assert busy.returncode == 2, busy.stderr
    assert f"cannot listen on --metrics-addr 127.0.0.1:{port}" in busy.stderr and "Traceback" not in busy.stderr


def test_prometheus_client_is_not_imported_without_a_metrics_option() -> None:
    """Start-up stays cheap (DESIGN 3.8): the import happens only when a metrics option is given."""
    plain = run_cli(["harmony-alerts"], b"", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert plain.returncode == 0
    assert "harmony_pipes._core.metrics" in plain.stderr and "prometheus_client" not in plain.stderr
    with_file = run_cli(
        ["harmony-alerts", "--metrics-file", "/dev/null/x.prom"], b"", env={"PYTHONPROFILEIMPORTTIME": "1"}
    )
    assert "prometheus_client" in with_file.stderr


# -- s3-batch -------------------------------------------------------------------------------------


def alert_lines(n: int, seed: int) -> list[bytes]:
    return [orjson.dumps({"timestamp": 1_714_521_600_000 + i, "event_id": f"{seed}-{i}"}) for i in range(n)]


def s3_env(moto_server: str) -> dict[str, str]:
    return {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto_server}


def test_s3_batch_missing_bucket_is_503_with_backlog_metrics_then_heals(running, tmp_path, moto_server) -> None:
    import boto3

    bucket = f"metrics-{os.urandom(5).hex()}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        "s3-batch",
        "--dest", f"s3://{bucket}/p/",
        "--spool-dir", str(tmp_path / "spool"),
        "--max-age-secs", "0.2",
        "--retry-max-delay-secs", "0.5",
        "--metrics-addr", f"127.0.0.1:{port}",
    ]  # fmt: skip
    sink = start(running, args, s3_env(moto_server), tmp_path, "s3")
    sink.feed(alert_lines(25, 1))
    _, doc = wait_for(lambda: (s := health(url))[0] == 503 and s, 20, "/healthz 503")
    assert doc["reason"].startswith(f"destination {bucket}")
    assert f"bucket '{bucket}' does not exist" in doc["reason"]
    samples = wait_for(
        lambda: (
            (s := scrape(url))
            and value(s, "harmony_pipes_s3_backlog_objects", command="s3-batch", destination=bucket) == 1
            and value(s, "harmony_pipes_s3_destination_failing", command="s3-batch", destination=bucket) == 1
            and s
        ),
        30,
        "one object in the backlog, its upload failing",
    )
    labels = {"command": "s3-batch", "destination": bucket}
    assert value(samples, "harmony_pipes_s3_backlog_bytes", **labels) > 0
    assert value(samples, "harmony_pipes_s3_oldest_unsent_age_seconds", **labels) > 0
    assert value(samples, "harmony_pipes_s3_destination_failing", **labels) == 1
    assert value(samples, "harmony_pipes_s3_objects_total", command="s3-batch") == 0
    assert value(samples, "harmony_pipes_errors_total", command="s3-batch", kind="unreachable") >= 1
    assert value(samples, "harmony_pipes_records_in_total", command="s3-batch") == 25

    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    wait_for(lambda: health(url)[0] == 200, 30, "/healthz 200 once the bucket exists")
    # the counters are the sink's Stats, refreshed by its run loop (every --flush-idle-ms when idle)
    samples = wait_for(
        lambda: (s := scrape(url)) and value(s, "harmony_pipes_s3_objects_total", command="s3-batch") == 1 and s,
        10,
        "the delivered object counted",
    )
    assert value(samples, "harmony_pipes_s3_backlog_objects", **labels) == 0
    assert value(samples, "harmony_pipes_s3_oldest_unsent_age_seconds", **labels) == 0
    assert value(samples, "harmony_pipes_s3_bytes_total", command="s3-batch") > 0
    assert value(samples, "harmony_pipes_last_success_timestamp_seconds", command="s3-batch") is not None
    assert sink.finish() == 0, sink.stderr


def test_s3_batch_backlog_older_than_the_limit_is_503_and_status_exits_75(running, tmp_path) -> None:
    spool = tmp_path / "spool"
    store = tmp_path / "store"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    metrics_file = tmp_path / "s3.prom"
    args = [
        "s3-batch",
        "--dest", f"ops=file://{store}/",
        "--spool-dir", str(spool),
        "--max-age-secs", "0.2",
        "--max-backlog-age-secs", "1",
        "--metrics-addr", f"127.0.0.1:{port}",
        "--metrics-file", str(metrics_file),
    ]  # fmt: skip
    sink = start(running, args, {}, tmp_path, "s3")
    wait_for(lambda: health(url)[0] == 200, 20, "the sink up")
    paused = run_cli(["s3-batch", "pause", "--spool-dir", str(spool)])
    assert paused.returncode == 0, paused.stderr
    time.sleep(0.6)  # the worker re-reads the pause flag every 0.25 s
    sink.feed(alert_lines(10, 2))
    _, doc = wait_for(lambda: (s := health(url))[0] == 503 and s, 20, "/healthz 503")
    assert "destination ops (paused): oldest unsent object is" in doc["reason"]
    assert "more than --max-backlog-age-secs 1" in doc["reason"]
    labels = {"command": "s3-batch", "destination": "ops"}
    samples = scrape(url)
    assert value(samples, "harmony_pipes_s3_backlog_objects", **labels) == 1
    assert value(samples, "harmony_pipes_s3_oldest_unsent_age_seconds", **labels) > 1
    assert value(samples, "harmony_pipes_s3_destination_paused", **labels) == 1
    assert value(samples, "harmony_pipes_s3_destination_failing", **labels) == 0

    stuck = run_cli(["s3-batch", "status", "--spool-dir", str(spool), "--max-backlog-age-secs", "1"])
    assert stuck.returncode == 75, stuck.stderr
    (row,) = [orjson.loads(line) for line in stuck.stdout_lines]
    assert row["backlog_objects"] == 1 and row["paused"] is True
    assert "stuck: destination ops (paused)" in stuck.stderr
    fine = run_cli(["s3-batch", "status", "--spool-dir", str(spool), "--max-backlog-age-secs", "3600"])
    assert fine.returncode == 0, fine.stderr

    assert run_cli(["s3-batch", "resume", "--spool-dir", str(spool)]).returncode == 0
    wait_for(lambda: health(url)[0] == 200, 20, "/healthz 200 after resume")
    assert value(scrape(url), "harmony_pipes_s3_backlog_objects", **labels) == 0
    assert run_cli(["s3-batch", "status", "--spool-dir", str(spool), "--max-backlog-age-secs", "1"]).returncode == 0
    assert sink.finish() == 0, sink.stderr
    samples = read_textfile(metrics_file)  # written at exit
    assert value(samples, "harmony_pipes_s3_objects_total", command="s3-batch") == 1
    assert value(samples, "harmony_pipes_records_in_total", command="s3-batch") == 10
    assert value(samples, "harmony_pipes_healthy", command="s3-batch") == 1


# -- aws-discovery --------------------------------------------------------------------------------


def test_discovery_failed_region_metrics(moto, tmp_path) -> None:
    east, west = "us-east-1", "eu-west-1"
    moto.reset()
    moto.launch(east, {"env": "prod", "checkpoint_ssh:u": "k.pem"})
    moto.launch(west, {"env": "prod", "checkpoint_ssh:u": "k.pem"})
    moto.launch(east, {"env": "prod"})  # unconfigured: no key tag
    proxy = FaultProxy(moto.port)
    try:
        proxy.fail(west, 403, "UnauthorizedOperation")
        path = tmp_path / "discovery.prom"
        args = ["--regions", f"{east},{west}", "--tags", "env=prod", "--site", "hq", "--once"]
        result = run_cli(
            ["aws-discovery", *args, "--state-dir", str(tmp_path / "state"), "--metrics-file", str(path)],
            env=discovery_env(proxy.endpoint),
        )
    finally:
        proxy.close()
    assert result.returncode == 0, result.stderr
    samples = read_textfile(path)
    command = {"command": "aws-discovery"}
    assert value(samples, "harmony_pipes_discovery_failed_regions", **command) == 1
    assert value(samples, "harmony_pipes_discovery_region_failed", region=west, **command) == 1
    assert value(samples, "harmony_pipes_discovery_region_failed", region=east, **command) == 0
    assert value(samples, "harmony_pipes_discovery_regions_failed_total", **command) == 1
    assert value(samples, "harmony_pipes_discovery_instances", **command) == 2
    assert value(samples, "harmony_pipes_discovery_unconfigured", **command) == 1
    assert value(samples, "harmony_pipes_records_in_total", **command) == 2
    assert value(samples, "harmony_pipes_records_out_total", **command) == len(result.stdout_lines)
    assert value(samples, "harmony_pipes_errors_total", kind="auth", **command) == 1
    assert value(samples, "harmony_pipes_healthy", **command) == 0
