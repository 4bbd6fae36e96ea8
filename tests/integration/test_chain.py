"""`harmony-pipes chain` against real processes: hec-emulator with faults on, file:// and moto.

The guarantee (issue 10): kill -9 of the chain at any moment, then the same command again with
the same state dirs, and the destination holds every alert exactly once. And a stop signal to
every process of a shell pipe at once loses nothing either. Each trial compares the stored
alerts, as a multiset of lines, with what a clean run of the same chain stores.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from harmony_pipes.harmony_alerts.pool import default_workers
from tests.conftest import command_path, run_cli
from tests.helpers.emulator import EmulatorHandle, start_emulator
from tests.helpers.events import collector_env
from tests.helpers.logs import error_lines
from tests.helpers.s3 import all_records, aws_env, new_bucket, read_bucket, read_file_store

EVENTS = 1600
FAULTS = ["--rate-limit-every", "23", "--retry-after-secs", "0", "--error-every", "97", "--invalid-scroll-every", "5"]
# every API answer waits as long as one --stats-interval-secs: a progress line follows each page, so
# a kill point anywhere in the stream is reached while the chain still runs (without it, the
# last pages of a fast run could arrive between two progress lines, and the kill came too late)
DELAY = ["--delay-ms", "20"]
FILE_TRIALS = 12
MOTO_TRIALS = 8
SIGTERM_TRIALS = 10  # SIGTERM each; then one SIGINT and one SIGHUP trial (the same stop)
STOP_SIGNALS = [signal.SIGTERM] * SIGTERM_TRIALS + [signal.SIGINT, signal.SIGHUP]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    end = (datetime.now(UTC) - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with start_emulator(
        "--generate", str(EVENTS), "--seed", "11", "--end-time", end, "--page-size", "100", *FAULTS, *DELAY
    ) as emu:
        yield emu


def stages(url: str, state: Path, dest: str) -> list[str]:
    """The chain as a person would type the pipe (each stage with its own options)."""
    return [
        f"harmony-events --base-url {url} --once --start 3h --state-dir {state}/events --stats-interval-secs 0.02",
        f"harmony-alerts --state-dir {state}/alerts",
        f"s3-batch --dest {dest} --state-dir {state}/s3 --max-records 150 --fsync-interval-ms 40 --compression none",
    ]


def env_for(url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **collector_env(url), **(extra or {})}
    env.pop("HARMONY_PIPES_STATE_DIR", None)
    return env


def stored_lines(objects: dict[str, bytes]) -> Counter[bytes]:
    return Counter(orjson.dumps(record, option=orjson.OPT_SORT_KEYS) for record in all_records(objects))


@pytest.fixture(scope="module")
def clean(emulator: EmulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> Counter[bytes]:
    """What a clean run of the chain stores: the reference for every trial."""
    root = tmp_path_factory.mktemp("clean")
    store = root / "store"
    result = run_chain(stages(emulator.url, root / "state", f"file://{store}/"), env_for(emulator.url))
    assert result.returncode == 0, result.stderr
    lines = stored_lines(read_file_store(store))
    assert len(lines) > EVENTS // 3 and max(lines.values()) == 1
    # the trials run harmony-alerts as by default: with its helper process on two or more CPUs
    stats = [orjson.loads(line) for line in result.stderr.splitlines() if line.startswith('{"stats"')]
    alerts_stage = stats[-1]["stats"]["stages"][1]
    assert alerts_stage.get("helper_processes", 0) == default_workers()
    return lines


def run_chain(stage_list: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [command_path("harmony-pipes"), "chain", " | ".join(stage_list)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


class ProgressKill(threading.Thread):
    """Reads a process's stderr; SIGKILL (or `sig`) once harmony-events reported `at` events out."""

    def __init__(self, procs: list[subprocess.Popen[bytes]], stderr: object, at: int, sig: int) -> None:
        super().__init__(daemon=True)
        self.procs, self.stderr, self.at, self.sig = procs, stderr, at, sig
        self.fired = threading.Event()
        self.lines: list[str] = []

    def run(self) -> None:
        for raw in self.stderr:  # type: ignore[attr-defined]
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            if self.fired.is_set() or not line.startswith('{"progress"'):
                continue
            progress = orjson.loads(line)["progress"]
            if progress.get("command") == "harmony-events" and progress.get("records_out", 0) >= self.at:
                for proc in self.procs:
                    os.kill(proc.pid, self.sig)
                self.fired.set()


def kill_then_restart(stage_list: list[str], env: dict[str, str], at: int) -> None:
    proc = subprocess.Popen(
        [command_path("harmony-pipes"), "chain", " | ".join(stage_list)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    watch = ProgressKill([proc], proc.stderr, at, signal.SIGKILL)
    watch.start()
    proc.wait(120)
    watch.join(10)
    assert watch.fired.is_set() and proc.returncode == -signal.SIGKILL, (
        f"the kill must land while the chain runs (rc {proc.returncode}):\n" + "".join(watch.lines[-15:])
    )
    again = run_chain(stage_list, env)
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("trial", range(FILE_TRIALS))
def test_kill_9_of_the_chain_then_the_same_command_stores_every_alert_once_file_store(
    emulator: EmulatorHandle, clean: Counter[bytes], tmp_path: Path, trial: int
) -> None:
    at = random.Random(trial).randint(20, EVENTS - 200)
    store = tmp_path / "store"
    stage_list = stages(emulator.url, tmp_path / "state", f"file://{store}/")
    kill_then_restart(stage_list, env_for(emulator.url), at)
    assert stored_lines(read_file_store(store)) == clean


@pytest.mark.xdist_group("chain-moto")
@pytest.mark.parametrize("trial", range(MOTO_TRIALS))
def test_kill_9_of_the_chain_then_the_same_command_stores_every_alert_once_moto(
    emulator: EmulatorHandle, clean: Counter[bytes], moto_server: str, tmp_path: Path, trial: int
) -> None:
    at = random.Random(100 + trial).randint(20, EVENTS - 200)
    bucket = new_bucket(moto_server, "chain")
    stage_list = stages(emulator.url, tmp_path / "state", f"s3://{bucket}/alerts/")
    kill_then_restart(stage_list, env_for(emulator.url, aws_env(moto_server)), at)
    assert stored_lines(read_bucket(moto_server, bucket)) == clean


@pytest.mark.parametrize("trial", range(len(STOP_SIGNALS)))
def test_sigterm_to_every_process_of_a_shell_pipe_at_once_loses_nothing(
    emulator: EmulatorHandle, clean: Counter[bytes], tmp_path: Path, trial: int
) -> None:
    """What a terminal's Ctrl-C, `systemctl stop` or a shipper's shutdown does to a pipe."""
    store = tmp_path / "store"
    stage_list = stages(emulator.url, tmp_path / "state", f"file://{store}/")
    env = env_for(emulator.url)
    argvs = [[command_path(text.split()[0]), *text.split()[1:]] for text in stage_list]
    events = subprocess.Popen(argvs[0], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    alerts = subprocess.Popen(argvs[1], stdin=events.stdout, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    sink = subprocess.Popen(argvs[2], stdin=alerts.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    events.stdout.close()  # type: ignore[union-attr]  # (each pipe end is held by its reader only)
    alerts.stdout.close()  # type: ignore[union-attr]
    procs = [events, alerts, sink]
    sig = STOP_SIGNALS[trial]
    watch = ProgressKill(procs, events.stderr, random.Random(200 + trial).randint(20, EVENTS - 200), sig)
    watch.start()
    codes = [proc.wait(120) for proc in procs]
    watch.join(10)
    sink_err = sink.stderr.read().decode()  # type: ignore[union-attr]
    assert watch.fired.is_set(), "the signal must land while the pipe runs:\n" + "".join(watch.lines[-10:])
    assert codes == [0, 0, 0], f"{codes}\n{sink_err}"
    shell = " | ".join(" ".join(argv) for argv in argvs)
    again = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, env=env, timeout=180)
    assert again.returncode == 0, again.stderr.decode()
    assert stored_lines(read_file_store(store)) == clean


def test_a_wrong_option_in_any_stage_exits_2_before_anything_is_read(emulator: EmulatorHandle, tmp_path: Path) -> None:
    good = stages(emulator.url, tmp_path / "state", f"file://{tmp_path}/store/")
    served = emulator.stats()["pages"]
    for index in range(3):
        bad = list(good)
        bad[index] += " --no-such-option"
        result = run_chain(bad, env_for(emulator.url))
        assert result.returncode == 2, result.stderr
        (line,) = error_lines(result.stderr)
        assert line.startswith(f"stage {index + 1} ({good[index].split()[0]}): No such option")
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "state").exists() and not (tmp_path / "store").exists()
    assert emulator.stats()["pages"] == served  # nothing was read
    for text, why in [
        ("s3-batch --dest file:///x/ | harmony-alerts", "is a sink: nothing comes out of it"),
        ("harmony-alerts | harmony-events --once", "is a source: it reads no input"),
        ("harmony-alerts | | s3-batch --dest file:///x/", "empty stage"),
        ("jq . | harmony-alerts", "cannot be a chain stage"),
        ("s3-batch status --spool-dir /x", "subcommands run on their own"),
    ]:
        result = run_cli(["harmony-pipes", "chain", text], b"")
        assert result.returncode == 2 and why in result.stderr, result.stderr


def test_the_chain_stores_what_the_shell_pipe_stores_with_one_stats_line(
    emulator: EmulatorHandle, clean: Counter[bytes], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    stage_list = stages(emulator.url, tmp_path / "state", f"file://{store}/")
    argvs = [" ".join([command_path(t.split()[0]), *t.split()[1:]]) for t in stage_list]
    piped = subprocess.run(
        ["bash", "-o", "pipefail", "-c", " | ".join(argvs)], capture_output=True, env=env_for(emulator.url), timeout=180
    )
    assert piped.returncode == 0, piped.stderr.decode()
    assert stored_lines(read_file_store(store)) == clean
    again = run_chain(stage_list, env_for(emulator.url))  # same state dirs: nothing new, nothing twice
    assert again.returncode == 0, again.stderr
    assert stored_lines(read_file_store(store)) == clean
    (stats,) = [orjson.loads(line)["stats"] for line in again.stderr.splitlines() if line.startswith('{"stats"')]
    assert stats["command"] == "harmony-pipes chain"
    assert [s["command"] for s in stats["stages"]] == ["harmony-events", "harmony-alerts", "s3-batch"]
    assert [s["stage"] for s in stats["stages"]] == [1, 2, 3]
    assert stats["stages"][1]["records_in"] == stats["stages"][0]["records_out"]


def test_the_chain_in_interval_mode_delivers_new_events_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    end = datetime.now(UTC) - timedelta(seconds=5)
    with start_emulator("--generate", "300", "--seed", "5", "--end-time", end.strftime("%Y-%m-%dT%H:%M:%SZ")) as emu:
        store = tmp_path / "store"
        stage_list = [
            f"harmony-events --base-url {emu.url} --interval-secs 0.5 --start 3h --state-dir {tmp_path}/e",
            f"harmony-alerts --all --state-dir {tmp_path}/a",
            f"s3-batch --dest file://{store}/ --state-dir {tmp_path}/s --max-age-secs 0.2 --compression none",
        ]
        proc = subprocess.Popen(
            [command_path("harmony-pipes"), "chain", " | ".join(stage_list)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env_for(emu.url),
        )

        def stored() -> int:
            return len(all_records(read_file_store(store)))

        deadline = time.monotonic() + 60
        while stored() < 300 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stored() == 300
        late = [
            {**orjson.loads(b'{"customerId": "exampletest", "type": "phishing", "severity": "5"}'),
             "eventId": f"late-{i}", "eventCreated": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}
            for i in range(7)
        ]  # fmt: skip
        emu.add_events(late)
        while stored() < 307 and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        records = all_records(read_file_store(store))
        assert len(records) == 307 and len({r["event_id"] for r in records}) == 307


@pytest.mark.integration
def test_aws_discovery_into_s3_batch_as_a_chain_survives_a_kill(tmp_path: Path) -> None:
    from tests.helpers.discovery import MotoEc2

    moto = MotoEc2()
    try:
        for n in range(40):
            moto.launch("us-east-1", {"env": "prod", "Name": f"vm-{n}"})
        store = tmp_path / "store"
        text = (
            f"aws-discovery --regions us-east-1 --tags env=prod --default-user ec2-user --default-key ops "
            f"--endpoint-url {moto.endpoint} --interval-secs 1 --state-dir {tmp_path}/d "
            f"| s3-batch --dest file://{store}/ --state-dir {tmp_path}/s --max-records 7 --compression none"
        )
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        proc = subprocess.Popen([command_path("harmony-pipes"), "chain", text], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)  # fmt: skip
        first = proc.stdout.readline()  # type: ignore[union-attr]  # a receipt: the first cycle is committed
        assert first, proc.stderr.read().decode()  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        moto.launch("us-east-1", {"env": "prod", "Name": "vm-late"})
        again = subprocess.run(
            [command_path("harmony-pipes"), "chain", text.replace("--interval-secs 1", "--once")],
            capture_output=True, env=env, timeout=120,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr.decode()
        records = all_records(read_file_store(store))
        ops = Counter((r["op"], r["instance_id"]) for r in records)
        assert max(ops.values()) == 1  # nothing twice
        assert sum(1 for op, _ in ops if op == "snapshot") == 40  # the first cycle, whole, once
        assert [r["name"] for r in records if r["op"] == "add"] == ["vm-late"]
    finally:
        moto.stop()


def test_the_chains_metrics_cover_every_stage(tmp_path: Path) -> None:
    """`--metrics-file` on the chain: one textfile, every stage's samples labelled with its command."""
    from prometheus_client.parser import text_string_to_metric_families

    from tests.integration.test_stream_contract import valid_lines

    store = tmp_path / "store"
    text = f"harmony-alerts --all | s3-batch --dest file://{store}/ --spool-dir {tmp_path}/spool"
    data = b"\n".join(valid_lines(40)) + b"\nnot json\n"
    result = run_cli(["harmony-pipes", "chain", "--metrics-file", str(tmp_path / "metrics") + "/", text], data)
    assert result.returncode == 0, result.stderr
    samples = {
        (s.name, s.labels.get("command")): s.value
        for family in text_string_to_metric_families((tmp_path / "metrics" / "harmony-pipes.prom").read_text())
        for s in family.samples
    }
    assert samples[("harmony_pipes_records_in_total", "harmony-alerts")] == 40
    assert samples[("harmony_pipes_bad_records_total", "harmony-alerts")] == 1
    assert samples[("harmony_pipes_records_in_total", "s3-batch")] == 40
    assert samples[("harmony_pipes_healthy", "s3-batch")] == 1
    assert len(all_records(read_file_store(store))) == 40
