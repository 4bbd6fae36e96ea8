"""harmony-alerts' helper processes (`--workers`, pool.py): the same output, dead letters, stats
and saved keys as one process, byte for byte; a helper killed mid-run costs nothing; a stop
signal still drains everything; no helper outlives its parent."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections import deque
from pathlib import Path

import orjson
import psutil
import pytest

from harmony_pipes._core.log import Log
from harmony_pipes._core.options import Runtime
from harmony_pipes._core.output import BatchWriter
from harmony_pipes._core.signals import StopFlag
from harmony_pipes._core.stats import Stats
from harmony_pipes.harmony_alerts.chunks import render_chunk
from harmony_pipes.harmony_alerts.config import AlertsConfig
from harmony_pipes.harmony_alerts.pool import (
    RENDER_AHEAD_BYTES,
    RENDER_AHEAD_PIECES,
    SLOTS_PER_HELPER,
    Helper,
    RenderPool,
)
from harmony_pipes.harmony_alerts.render import make_render
from harmony_pipes.harmony_alerts.run import AlertsProcessor
from harmony_pipes.harmony_alerts.spawn import (
    NOT_EARLY_ENV,
    POOL_MIN_BYTES,
    HelperProcess,
    available_cpus,
    discard_early,
    start_early,
    take_early,
)
from harmony_pipes.hec_emulator.generate import EventGenerator
from tests.conftest import CliResult, command_path
from tests.helpers.emulator import start_emulator
from tests.helpers.events import collector_env
from tests.helpers.s3 import read_file_store
from tests.helpers.wait import wait_until

COUNTERS = ("records_in", "records_out", "bad_records", "alerts", "duplicates", "filtered", "dedupe_keys")
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def events(count: int, seed: int, tenant: str = "exampletest") -> list[bytes]:
    generator = EventGenerator(seed, customer_id=tenant)
    return [orjson.dumps(generator.make(START_US + i * 250_000)) for i in range(count)]


def hostile_corpus(count: int, seed: int) -> list[bytes]:
    """Real-shaped events with what a pool must keep in order: duplicates (also at the very
    start and end, and across pieces), blank and whitespace lines, bad JSON, JSON that is not an
    object, CRLF endings, tiny events whose alerts are many times their size, and one line over
    `--max-line-bytes 65536`."""
    rng = random.Random(seed)
    lines = events(count, seed)
    # (with an eventCreated: ECS and OCSF put the clock's time in an event without one)
    tiny = [
        orjson.dumps({"eventId": f"tiny-{i}", "type": "phishing", "eventCreated": "2026-01-02T00:00:00Z"})
        for i in range(3000)
    ]
    out: list[bytes] = [lines[0], lines[0]]
    for i, line in enumerate(lines[1:], 1):
        out.append(line)
        roll = rng.random()
        if roll < 0.03:
            out.append(lines[rng.randrange(i)])  # a duplicate of an earlier event
        elif roll < 0.04:
            out.append(rng.choice([b"", b"   ", b"{not json", b"[1, 2]", b'"text"', line + b"\r"]))
        if i == count // 2:
            out += tiny
            out.append(b'{"eventId": "' + b"x" * 70_000 + b'", "type": "phishing"}')  # over the line limit
    out.append(lines[-1])
    return out


def run_file(
    args: list[str], path: Path, timeout_secs: float = 120, env: dict[str, str] | None = None
) -> tuple[int, bytes, str]:
    with open(path, "rb") as stdin:
        proc = subprocess.run(
            [command_path("harmony-alerts"), *args], stdin=stdin, capture_output=True, timeout=timeout_secs, env=env
        )
    return proc.returncode, proc.stdout, proc.stderr.decode()


def stats_of(stderr: str) -> dict:
    return CliResult(0, b"", stderr).stats  # (exactly one stats line, as run_cli's results check)


TAG_ENV = "HARMONY_PIPES_TEST_TAG"


def tagged(tag: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a run whose helper processes `helper_pids(tag)` finds (they inherit it)."""
    return {**(os.environ if env is None else env), TAG_ENV: tag}


def helper_pids(tag: str) -> list[int]:
    """The live helper processes of the runs started with `tagged(tag)`, orphans included."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if not any("harmony_alerts.helper" in part for part in cmdline) or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if proc.environ().get(TAG_ENV) == tag:
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


@pytest.mark.parametrize("output_format", ["native", "ecs", "ocsf"])
def test_helpers_write_what_one_process_writes_byte_for_byte(tmp_path: Path, output_format: str) -> None:
    corpus = tmp_path / "events.ndjson"
    corpus.write_bytes(b"\n".join(hostile_corpus(4000, seed=3)) + b"\n")
    assert corpus.stat().st_size > 4 << 20  # several reads, many pieces
    runs = {}
    for workers in (0, 1, 2):
        dead = tmp_path / f"dead-{workers}.ndjson"
        args = ["--format", output_format, "--max-line-bytes", "65536", "--dead-letter", str(dead)]
        code, out, err = run_file([*args, "--workers", str(workers)], corpus)
        assert code == 0, err
        runs[workers] = (out, dead.read_bytes(), stats_of(err))
    one_out, one_dead, one_stats = runs[0]
    assert "helper_processes" not in one_stats
    assert one_stats["bad_records"] == one_dead.count(b"\n") >= 20
    assert one_stats["duplicates"] >= 50 and one_stats["filtered"] > 0
    for workers in (1, 2):
        out, dead, stats = runs[workers]
        assert stats["helper_processes"] == workers
        assert out == one_out
        assert dead == one_dead
        assert {k: stats[k] for k in COUNTERS} == {k: one_stats[k] for k in COUNTERS}


def test_keys_the_pool_saves_dedupe_the_next_run_as_one_process_does(tmp_path: Path) -> None:
    lines = events(5000, seed=5)
    first, both = tmp_path / "first.ndjson", tmp_path / "both.ndjson"
    first.write_bytes(b"\n".join(lines[:3500]) + b"\n")
    both.write_bytes(b"\n".join(lines) + b"\n")
    outputs = {}
    for workers in (0, 1):
        state = ["--state-dir", str(tmp_path / f"state-{workers}"), "--workers", str(workers)]
        code, _, err = run_file(state, first)
        assert code == 0, err
        saved = stats_of(err)["dedupe_keys"]
        code, out, err = run_file(state, both)
        assert code == 0, err
        outputs[workers] = out
        assert stats_of(err)["dedupe_keys_loaded"] == saved > 1000
    new_ids = {orjson.loads(line)["eventId"] for line in lines[3500:]}
    assert {orjson.loads(line)["event_id"] for line in outputs[1].splitlines()} <= new_ids
    assert outputs[1] == outputs[0] and outputs[0]


def start_streaming(tenant: str, extra: list[str] = ()) -> subprocess.Popen:
    return subprocess.Popen(
        [command_path("harmony-alerts"), "--workers", "1", "--tenant", tenant, *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=tagged(tenant),
    )


def feed_and_collect(proc: subprocess.Popen, halves: tuple[bytes, bytes], between) -> tuple[bytes, str]:
    """Write the first half, call `between()`, write the second half, close; stdout is read by a
    thread all along (a full stdout pipe would stop the command reading)."""
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))
    reader.start()
    proc.stdin.write(halves[0])
    proc.stdin.flush()
    between()
    proc.stdin.write(halves[1])
    proc.stdin.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    reader.join(timeout=60)
    return out[0], err


def reference(data: bytes, tenant: str) -> bytes:
    proc = subprocess.run(
        [command_path("harmony-alerts"), "--workers", "0", "--tenant", tenant], input=data, capture_output=True
    )
    assert proc.returncode == 0
    return proc.stdout


def test_a_helper_killed_mid_run_costs_nothing(tmp_path: Path) -> None:
    tenant = f"pool-kill-{uuid.uuid4().hex[:8]}"
    lines = events(6000, seed=9)
    halves = (b"\n".join(lines[:3000]) + b"\n", b"\n".join(lines[3000:]) + b"\n")
    proc = start_streaming(tenant)

    def kill_the_helper() -> None:
        wait_until(lambda: helper_pids(tenant), what="the helper process to start")
        for pid in helper_pids(tenant):
            os.kill(pid, signal.SIGKILL)

    out, err = feed_and_collect(proc, halves, kill_the_helper)
    assert proc.returncode == 0, err
    assert "(killed by signal 9); its input is rendered in the main process, nothing is lost" in err
    assert "Traceback" not in err
    assert out == reference(halves[0] + halves[1], tenant)
    assert stats_of(err)["helper_processes"] == 1


def test_a_stop_signal_to_parent_and_helper_drains_everything(tmp_path: Path) -> None:
    tenant = f"pool-term-{uuid.uuid4().hex[:8]}"
    lines = events(5000, seed=13)
    halves = (b"\n".join(lines[:2500]) + b"\n", b"\n".join(lines[2500:]) + b"\n")
    proc = start_streaming(tenant)
    helpers: list[int] = []

    def signal_everyone() -> None:  # what systemd's stop does to every process of the unit
        wait_until(lambda: helper_pids(tenant), what="the helper process to start")
        helpers.extend(helper_pids(tenant))
        for pid in [proc.pid, *helpers]:
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.2)

    out, err = feed_and_collect(proc, halves, signal_everyone)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM; everything read was committed" in err
    assert "ended unexpectedly" not in err  # the helper ignores stop signals; its parent drains
    assert out == reference(halves[0] + halves[1], tenant)
    assert helpers and not helper_pids(tenant)  # reaped with its parent


def test_a_reader_that_goes_away_takes_the_helper_with_it(tmp_path: Path) -> None:
    tenant = f"pool-epipe-{uuid.uuid4().hex[:8]}"
    corpus = tmp_path / "events.ndjson"
    corpus.write_bytes(b"\n".join(events(8000, seed=17)) + b"\n")
    shell = f"{command_path('harmony-alerts')} --workers 1 --tenant {tenant} < {corpus} | head -c 1000 > /dev/null"
    proc = subprocess.run(
        ["/bin/bash", "-o", "pipefail", "-c", shell], capture_output=True, timeout=60, env=tagged(tenant)
    )
    err = proc.stderr.decode()
    assert proc.returncode == 75, err
    assert "stdout was closed by its reader" in err and "Traceback" not in err
    assert not helper_pids(tenant)


def test_no_helper_for_a_small_input_or_under_strict(tmp_path: Path) -> None:
    small = tmp_path / "small.ndjson"
    small.write_bytes(b"\n".join(events(20, seed=1)) + b"\n")
    big = tmp_path / "big.ndjson"
    big.write_bytes(b"\n".join(events(2000, seed=1)) + b"\n")
    code, _, err = run_file(["--workers", "1"], small)
    assert code == 0 and "helper_processes" not in stats_of(err)
    code, _, err = run_file(["--workers", "1", "--strict"], big)
    assert code == 0 and "helper_processes" not in stats_of(err)
    code, _, err = run_file(["--workers", "1"], big)
    assert code == 0 and stats_of(err)["helper_processes"] == 1


def defaults_env(tag: str) -> dict[str, str]:
    env = tagged(tag)
    for name in NOT_EARLY_ENV:
        env.pop(name, None)
    return env


@pytest.mark.skipif(available_cpus() < 2, reason="the default is one process on a machine with one CPU")
def test_a_large_file_with_the_defaults_starts_its_helper_early_and_writes_what_one_process_writes(
    tmp_path: Path,
) -> None:
    tag = f"early-{uuid.uuid4().hex[:8]}"
    corpus = tmp_path / "events.ndjson"
    corpus.write_bytes(b"\n".join(hostile_corpus(3000, seed=5)) + b"\n")
    args = ["--max-line-bytes", "65536", "--tenant", tag]
    code, out, err = run_file(args, corpus, env=defaults_env(tag))
    assert code == 0, err
    assert stats_of(err)["helper_processes"] == 1
    one_code, one_out, one_err = run_file([*args, "--workers", "0"], corpus)
    assert one_code == 0 and out == one_out
    assert {k: stats_of(err)[k] for k in COUNTERS} == {k: stats_of(one_err)[k] for k in COUNTERS}
    assert not helper_pids(tag)


def test_an_early_helper_that_no_pool_takes_is_ended_with_the_run(tmp_path: Path) -> None:
    """A file large enough for an early helper whose lines are too few for a pool (one of them
    over --max-line-bytes): no pool starts, and the helper must not outlive the run (nor be
    counted in its stats)."""
    tag = f"early-unused-{uuid.uuid4().hex[:8]}"
    few_lines = tmp_path / "few-lines.ndjson"
    event = b'{"eventId": "e1", "type": "phishing"}'
    few_lines.write_bytes(b'{"description": "' + b"x" * POOL_MIN_BYTES + b'"}\n' + event + b"\n")
    env = defaults_env(tag)
    for _ in range(3):
        code, out, err = run_file(["--tenant", tag, "--max-line-bytes", "1024"], few_lines, env=env)
        assert code == 0, err
        stats = stats_of(err)
        assert out.count(b"\n") == 1 and stats["bad_records"] == 1 and "helper_processes" not in stats
        assert not helper_pids(tag)  # killed and reaped before exit, not left to finish its imports


@pytest.fixture
def no_opt_outs(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No environment variable that stops `start_early` (the runner's may set them)."""
    for name in NOT_EARLY_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def start_early_on(path: Path, argv: list[str] | None = None, skip_bytes: int = 0) -> None:
    """`spawn.start_early` with `path` as its stdin, read up to `skip_bytes` already."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, skip_bytes, os.SEEK_SET)
        start_early(argv or [], fd)
    finally:
        os.close(fd)


def test_start_early_starts_a_helper_only_for_a_large_regular_file_and_the_default_count(
    tmp_path: Path, no_opt_outs: pytest.MonkeyPatch
) -> None:
    monkeypatch = no_opt_outs
    big = tmp_path / "big.ndjson"
    big.write_bytes(b"\n".join(events(200, seed=2)) + b"\n")
    assert big.stat().st_size >= POOL_MIN_BYTES
    small = tmp_path / "small.ndjson"
    small.write_bytes(b"\n".join(events(5, seed=2)) + b"\n")

    def started(argv: list[str], path: Path | None = None, skip_bytes: int = 0) -> HelperProcess | None:
        if path is not None:
            start_early_on(path, argv, skip_bytes)
            return take_early()
        read_fd, write_fd = os.pipe()
        try:
            os.write(write_fd, big.read_bytes()[:60000])
            start_early(argv, read_fd)
            return take_early()
        finally:
            os.close(read_fd)
            os.close(write_fd)

    # a pipe, a small file, a file read almost to its end, an explicit count, --strict, --help: none
    assert started([]) is None
    assert started([], small) is None
    assert started([], big, skip_bytes=big.stat().st_size - 1000) is None
    for argv in (["--workers", "1"], ["--workers=0"], ["--strict"], ["--help"]):
        assert started(argv, big) is None
    monkeypatch.setenv("HARMONY_ALERTS_WORKERS", "0")
    assert started([], big) is None
    monkeypatch.delenv("HARMONY_ALERTS_WORKERS")
    if available_cpus() < 2:
        assert started([], big) is None
        return
    # the defaults on a large file: a helper, configured later by the pool, that renders as usual
    early = started(["--tenant", "t"], big)
    assert early is not None and take_early() is None  # taken once
    alerts, pieces = pool_alerts_and_pieces()
    spec = alerts.render_spec()
    helper = Helper(spec, early)
    try:
        assert helper.pid == early.pid
        helper.send(b"\n".join(pieces[0]), 0)
        chunk = helper.receive()
        assert chunk is not None and bytes(chunk.blob) == bytes(render_chunk(pieces[0], make_render(spec), 0).blob)
    finally:
        helper.stop()
    assert helper.process.returncode == 0
    # one that no pool takes is ended by discard_early
    tag = f"early-discard-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(TAG_ENV, tag)
    start_early_on(big)
    assert helper_pids(tag)
    discard_early()
    assert not helper_pids(tag) and take_early() is None


def test_an_early_helper_killed_before_the_pool_needs_it_is_replaced(
    tmp_path: Path, no_opt_outs: pytest.MonkeyPatch
) -> None:
    if available_cpus() < 2:
        pytest.skip("no early helper on a machine with one CPU")
    big = tmp_path / "big.ndjson"
    big.write_bytes(b"\n".join(events(200, seed=2)) + b"\n")
    start_early_on(big)
    early = take_early()
    assert early is not None
    early.process.kill()
    early.process.wait()
    no_opt_outs.setattr("harmony_pipes.harmony_alerts.spawn._early", early)  # as if never taken
    alerts, pieces = pool_alerts_and_pieces()
    pool = RenderPool(alerts, 1)
    applied: list[bytes] = []
    try:
        pool.start()
        [helper] = pool.helpers
        assert helper.pid != early.pid and early.process.returncode == -signal.SIGKILL
        wait_until(helper.is_up, what="the new helper to start up")
        pool.dispatch(0, b"\n".join(pieces[0]), lambda tag, chunk: applied.append(bytes(chunk.blob)))
        pool.take(lambda tag, chunk: applied.append(bytes(chunk.blob)), wait_all=True)
        assert helper.in_flight == deque() and len(applied) == 1
    finally:
        pool.stop()
    assert applied == [bytes(render_chunk(pieces[0], make_render(alerts.render_spec()), 0).blob)]


# -- inside `harmony-pipes chain` (PooledAlerts): between harmony-events and s3-batch ------------


def chain_text(url: str, root: Path, store: Path, alerts_options: str) -> str:
    return (
        f"harmony-events --base-url {url} --once --start 3h --state-dir {root}/events | "
        f"harmony-alerts --format ecs --state-dir {root}/alerts {alerts_options} | "
        f"s3-batch --dest file://{store}/ --state-dir {root}/s3 --compression none"
    )


def chain_env(url: str) -> dict[str, str]:
    env = {**os.environ, **collector_env(url)}
    env.pop("HARMONY_ALERTS_WORKERS", None)
    return env


def stored_lines(store: Path) -> list[bytes]:
    objects = read_file_store(store)
    return sorted(b"".join(objects.values()).splitlines())


def stage_stats(stderr: str, stage: int) -> dict:
    return stats_of(stderr)["stages"][stage - 1]


def test_in_a_chain_the_helper_renders_and_the_store_holds_what_one_process_stores(tmp_path: Path) -> None:
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 30))
    with start_emulator("--generate", "4000", "--seed", "13", "--end-time", end, "--page-size", "500") as emu:
        runs = {}
        for workers in (0, 1, 2):
            root, store = tmp_path / f"state-{workers}", tmp_path / f"store-{workers}"
            text = chain_text(emu.url, root, store, f"--workers {workers}")
            proc = subprocess.run(
                [command_path("harmony-pipes"), "chain", text], capture_output=True, env=chain_env(emu.url), timeout=120
            )
            assert proc.returncode == 0, proc.stderr.decode()
            runs[workers] = (stored_lines(store), stage_stats(proc.stderr.decode(), 2))
    one_lines, one_stats = runs[0]
    assert "helper_processes" not in one_stats
    assert len(one_lines) == one_stats["alerts"] > 1000 and one_stats["filtered"] > 0
    for workers in (1, 2):
        lines, stats = runs[workers]
        assert stats["helper_processes"] == workers
        assert lines == one_lines
        assert {k: stats[k] for k in COUNTERS} == {k: one_stats[k] for k in COUNTERS}


def test_in_a_chain_a_helper_killed_mid_run_costs_nothing(tmp_path: Path) -> None:
    tenant = f"chain-kill-{uuid.uuid4().hex[:8]}"
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 30))
    emulator_args = ["--generate", "5000", "--seed", "17", "--end-time", end, "--page-size", "100"]
    with start_emulator(*emulator_args, "--delay-ms", "30") as emu:
        reference = tmp_path / "store-ref"
        text = chain_text(emu.url, tmp_path / "ref", reference, f"--tenant {tenant}-ref --workers 0")
        env = chain_env(emu.url)
        done = subprocess.run([command_path("harmony-pipes"), "chain", text], capture_output=True, env=env, timeout=180)
        assert done.returncode == 0, done.stderr.decode()
        store = tmp_path / "store"
        text = chain_text(emu.url, tmp_path / "state", store, f"--tenant {tenant} --workers 1")
        proc = subprocess.Popen(
            [command_path("harmony-pipes"), "chain", text],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env=tagged(tenant, env),
        )
        pids = wait_until(lambda: helper_pids(tenant), 60, "the chain's helper process to start")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err.decode()
    assert "(killed by signal 9); its input is rendered in the main process, nothing is lost" in err.decode()
    expected = [line.replace(f"{tenant}-ref".encode(), tenant.encode()) for line in stored_lines(reference)]
    assert stored_lines(store) == sorted(expected)
    assert stage_stats(err.decode(), 2)["helper_processes"] == 1


def test_a_stop_signal_while_a_helper_starts_up_does_not_kill_it() -> None:
    """systemd signals every process of the unit at once: one that reaches a helper whose
    interpreter is still starting (before it can ignore stop signals) must not end it. Right after
    the spawn returns, the new interpreter has not yet run a line of our code."""
    spec = {"types": ["phishing"], "min_severity": 4, "keep_all": False, "tenant": "t", "dedupe_key": "tenant,eventId",
            "dedupe": True, "output_format": "native"}  # fmt: skip
    for _ in range(5):
        helper = Helper(spec)
        try:
            os.kill(helper.pid, signal.SIGTERM)
            os.kill(helper.pid, signal.SIGINT)
            os.kill(helper.pid, signal.SIGHUP)
            event = {"eventId": "e1", "type": "phishing", "severity": "5", "eventCreated": "2026-01-01T00:00:00Z"}
            helper.send(orjson.dumps(event), 0)
            chunk = helper.receive()  # HelperFailed ("ended unexpectedly") if a signal killed it
            assert chunk is not None and len(chunk.ends) == 1 and chunk.good == 1
            assert orjson.loads(bytes(chunk.blob[: chunk.ends[0]]))["event_id"] == "e1"
        finally:
            helper.stop()
        assert helper.process.returncode == 0


def pool_alerts_and_pieces() -> tuple[AlertsProcessor, list[list[bytes]]]:
    """An `--all` AlertsProcessor in this process, and 30 pieces of 200 real-shaped events."""
    log = Log("harmony-alerts", stream=io.StringIO())
    runtime = Runtime("harmony-alerts", log, Stats("harmony-alerts", log), BatchWriter(1), StopFlag())
    alerts = AlertsProcessor(runtime, AlertsConfig(keep_all=True))
    generator = EventGenerator(21)
    pieces = [
        [orjson.dumps(generator.make(1_767_225_600_000_000 + (p * 200 + i) * 1000)) for i in range(200)]
        for p in range(30)
    ]
    return alerts, pieces


def test_the_pool_renders_ahead_within_its_bounds_and_applies_in_input_order() -> None:
    """RenderPool in this process, one real helper: 30 pieces dispatched as fast as they come.
    This process renders pieces itself while the helper's slots are full, never holds more than
    RENDER_AHEAD_BYTES of them or queues more than the slots plus RENDER_AHEAD_PIECES, and every
    piece is applied once, in order, as one process renders it."""
    alerts, pieces = pool_alerts_and_pieces()
    render = make_render(alerts.render_spec())
    runtime = alerts.runtime
    applied: list[tuple[int, bytes]] = []
    pool = RenderPool(alerts, workers=1)
    largest_queue = largest_held = 0
    try:
        pool.start()  # (pieces go to the helper only once it is up: see the next test)
        wait_until(pool.helpers[0].is_up, what="the helper to start up")
        for index, piece in enumerate(pieces):
            pool.dispatch(index, b"\n".join(piece), lambda tag, chunk: applied.append((tag, bytes(chunk.blob))))
            largest_queue = max(largest_queue, len(pool.queue))
            largest_held = max(largest_held, pool.held_bytes)
        pool.take(lambda tag, chunk: applied.append((tag, bytes(chunk.blob))), wait_all=True)
    finally:
        pool.stop()
    assert [tag for tag, _ in applied] == list(range(30))
    assert [blob for _, blob in applied] == [bytes(render_chunk(piece, render, 0).blob) for piece in pieces]
    assert runtime.stats.extra["helper_processes"] == 1
    assert 0 < largest_held <= RENDER_AHEAD_BYTES  # it did render ahead, within the bound
    assert largest_queue <= SLOTS_PER_HELPER + RENDER_AHEAD_PIECES
    assert pool.held_bytes == 0 and not pool.queue


def starting_up(alerts: AlertsProcessor) -> tuple[RenderPool, Helper]:
    """A pool whose helper is stopped (SIGSTOP) before it could say READY: as a helper still
    importing is, for as long as the test likes. (Tried again in the rare case its imports won.)"""
    for _ in range(5):
        pool = RenderPool(alerts, workers=1)
        pool.start()
        helper = pool.helpers[0]
        os.kill(helper.pid, signal.SIGSTOP)
        process = psutil.Process(helper.pid)
        wait_until(lambda: process.status() == psutil.STATUS_STOPPED, what="the helper to stop")  # noqa: B023
        if not helper.ready():
            return pool, helper
        pool.stop()
    pytest.fail("the helper said READY before a SIGSTOP could reach it, 5 times")


def test_pieces_are_rendered_here_while_the_helper_starts_up() -> None:
    """A helper still starting up (a new interpreter importing: ~0.1 s; here held there by
    SIGSTOP) is handed nothing: each piece is rendered here and applied at once, where it used to
    queue behind the helper and leave this process idle. Once the helper is up, pieces go to it."""
    alerts, pieces = pool_alerts_and_pieces()
    render = make_render(alerts.render_spec())
    applied: list[tuple[int, bytes]] = []

    def apply(tag: int, chunk) -> None:
        applied.append((tag, bytes(chunk.blob)))

    pool, helper = starting_up(alerts)
    to_helper = 0
    try:
        for index, piece in enumerate(pieces[:10]):
            pool.dispatch(index, b"\n".join(piece), apply)
            assert not pool.queue and not helper.in_flight  # rendered and applied here, at once
        os.kill(helper.pid, signal.SIGCONT)
        wait_until(helper.is_up, what="the helper to start up once continued")
        for index, piece in enumerate(pieces[10:], 10):
            pool.dispatch(index, b"\n".join(piece), apply)
            to_helper += bool(helper.in_flight)
        pool.take(apply, wait_all=True)
    finally:
        pool.stop()
    assert [tag for tag, _ in applied] == list(range(30))
    assert [blob for _, blob in applied] == [bytes(render_chunk(piece, render, 0).blob) for piece in pieces]
    assert to_helper > 0
    assert helper.process.returncode == 0


def test_a_helper_that_never_started_up_is_not_waited_for() -> None:
    """At the end of a short input the helper may still be importing: it holds no work, so it is
    killed rather than waited for (up to STOP_TIMEOUT_SECS for one that hangs)."""
    alerts, pieces = pool_alerts_and_pieces()
    pool, helper = starting_up(alerts)
    applied: list[int] = []
    pool.dispatch(0, b"\n".join(pieces[0]), lambda tag, chunk: applied.append(len(chunk.ends)))
    pool.stop()
    assert applied == [200]
    assert helper.process.returncode == -signal.SIGKILL
