"""kill -9 at random moments, restart on the same spool: a gap-free prefix, each record once.

Acceptance is what s3-batch reports: `records_accepted` in its progress lines
(`--stats-interval-secs`), counted once the records were written to the spool and their counts
logged (after every input chunk, before the next is read). Every accepted record, and every
record a progress line reported read (`records_in`), must be in the store after the restart;
records read later may be there too, but only as a continuation of the prefix and never twice.

Each kill is timed from the sink's own progress (records read, records accepted, receipts
printed), with its stdin still open, and every trial asserts the process died of the SIGKILL:
all the trials below are real kills on a fast or a slow machine. Trials: 12 file://, 6 moto,
8 partitioned file://, 4 partitioned moto, 4 with a second kill during the restart (34).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.helpers.s3 import (
    KillAt,
    KillResult,
    SinkWatch,
    TcpProxy,
    aws_env,
    kill_restart,
    kill_trial,
    make_records,
    make_uneven_records,
    max_accepted,
    new_bucket,
    random_kill_points,
    read_bucket,
    read_file_store,
    sequence_numbers,
    start_sink,
    wait_until,
)

RECORDS = 40_000
TRIAL_ARGS = [
    "--max-records",
    "900",
    "--max-bytes",
    "24KiB",
    "--max-line-bytes",  # --max-bytes must hold the longest allowed record alone
    "16384",
    "--fsync-interval-ms",
    "20",
    "--stats-interval-secs",
    "0.02",
    "--flush-idle-ms",
    "20",
    "--retry-max-delay-secs",
    "0.2",
]
FILE_POINTS = random_kill_points(12, seed=20240501, records=RECORDS, max_records=900)
MOTO_POINTS = random_kill_points(6, seed=424242, records=RECORDS, max_records=900)
FORMATS = [("ndjson", "gzip"), ("json-array", "zstd"), ("ndjson", "none"), ("json-array", "gzip")]

# one open batch per tenant, tenants far from even (80/15/4/1 %), small objects: the rare
# tenants' open batches hold old records while the hot tenant's objects are sealed and uploaded
PARTITION_RECORDS = 20_000
PARTITION_ARGS = [
    "--key-template",
    "{prefix}{field:tenantid}/{t1}_{t2}_{t3}_{hash}{ext}",
    *TRIAL_ARGS,
    "--max-records",
    "200",
]
PARTITION_FILE_POINTS = random_kill_points(8, seed=5150, records=PARTITION_RECORDS, max_records=200)
PARTITION_MOTO_POINTS = random_kill_points(4, seed=6160, records=PARTITION_RECORDS, max_records=200)


def check_prefix(found: list[int], killed: KillResult) -> None:
    """A gap-free prefix, each record once, covering what was accepted and receipted."""
    assert found == sorted(set(found)), "a record is stored twice"
    missing = sorted(set(range(found[-1] + 1)) - set(found)) if found else []
    assert not missing, f"records missing below the highest stored one ({found[-1]}): {missing[:20]}"
    accepted = killed.accepted
    assert accepted > 0, f"the kill came before anything was accepted ({killed.progress})"
    assert len(found) >= accepted, f"{accepted} records were reported accepted, only {len(found)} stored"
    # accepted on write: a progress line counts a chunk's records after they were committed
    read = max_accepted(killed.stderr, "records_in")
    assert len(found) >= read, f"{read} records were reported read before the kill, only {len(found)} stored"
    receipted = sum(r["records"] for r in killed.receipts)
    assert len(found) >= receipted, f"receipts before the kill covered {receipted} records, {len(found)} stored"


def check_partitions(objects: dict[str, bytes]) -> None:
    """Every object holds the records of the one tenant its key names."""
    from tests.helpers.s3 import decode_body

    tenants = set()
    for key, body in objects.items():
        tenant = key.split("/")[-2]
        tenants.add(tenant)
        assert {r["tenantid"] for r in decode_body(body, key)} == {tenant}, key
    assert {"hot", "warm"} <= tenants


def file_args(spool: Path, store: Path, trial: int, extra: list[str]) -> list[str]:
    return trial_args(f"file://{store}/", spool, trial, extra)


def trial_args(dest: str, spool: Path, trial: int, extra: list[str]) -> list[str]:
    """One destination, the spool, and the trial's body format and compression (in turn)."""
    fmt, compression = FORMATS[trial % len(FORMATS)]
    return [
        "--dest",
        dest,
        "--spool-dir",
        str(spool),
        "--format",
        fmt,
        "--compression",
        compression,
        *extra,
    ]


def restart_and_finish(args: list[str], env: dict[str, str] | None = None) -> None:
    restart = run_cli(["s3-batch", *args], b"", env=env)
    assert restart.returncode == 0, restart.stderr
    assert "Traceback" not in restart.stderr


@pytest.mark.parametrize("trial", range(len(FILE_POINTS)))
def test_kill9_then_restart_file_store(tmp_path: Path, trial: int) -> None:
    spool, store = tmp_path / "spool", tmp_path / "store"
    args = file_args(spool, store, trial, TRIAL_ARGS)
    killed = kill_trial(args, make_records(RECORDS), kill_at=FILE_POINTS[trial])
    assert "Traceback" not in killed.stderr

    restart_and_finish(args)
    check_prefix(sequence_numbers(read_file_store(store)), killed)
    assert not list((spool / "objects").iterdir()), "every delivered object is freed from the spool"
    assert not list((spool / "open").iterdir())


@pytest.mark.xdist_group("s3-moto")
@pytest.mark.parametrize("trial", range(len(MOTO_POINTS)))
def test_kill9_then_restart_moto(moto_server: str, tmp_path: Path, trial: int) -> None:
    bucket = new_bucket(moto_server)
    args = trial_args(f"s3://{bucket}/k9/", tmp_path / "spool", trial, TRIAL_ARGS)
    env = aws_env(moto_server)
    killed = kill_trial(args, make_records(RECORDS), kill_at=MOTO_POINTS[trial], env=env)
    assert "Traceback" not in killed.stderr

    restart_and_finish(args, env)
    objects = read_bucket(moto_server, bucket)
    assert all(key.startswith("k9/dt=") for key in objects)
    check_prefix(sequence_numbers(objects), killed)


@pytest.mark.parametrize("trial", range(len(PARTITION_FILE_POINTS)))
def test_kill9_partitioned_file_store(tmp_path: Path, trial: int) -> None:
    """{field:tenantid} with an uneven tenant mix: the prefix holds across all objects."""
    spool, store = tmp_path / "spool", tmp_path / "store"
    args = file_args(spool, store, trial, PARTITION_ARGS)
    data = make_uneven_records(PARTITION_RECORDS, seed=trial)
    killed = kill_trial(args, data, kill_at=PARTITION_FILE_POINTS[trial])
    assert "Traceback" not in killed.stderr

    restart_and_finish(args)
    objects = read_file_store(store)
    check_partitions(objects)
    check_prefix(sequence_numbers(objects), killed)
    assert not list((spool / "objects").iterdir())


@pytest.mark.xdist_group("s3-moto")
@pytest.mark.parametrize("trial", range(len(PARTITION_MOTO_POINTS)))
def test_kill9_partitioned_moto(moto_server: str, tmp_path: Path, trial: int) -> None:
    bucket = new_bucket(moto_server)
    args = trial_args(f"s3://{bucket}/", tmp_path / "spool", trial, PARTITION_ARGS)
    env = aws_env(moto_server)
    data = make_uneven_records(PARTITION_RECORDS, seed=100 + trial)
    killed = kill_trial(args, data, kill_at=PARTITION_MOTO_POINTS[trial], env=env)
    assert "Traceback" not in killed.stderr

    restart_and_finish(args, env)
    objects = read_bucket(moto_server, bucket)
    check_partitions(objects)
    check_prefix(sequence_numbers(objects), killed)


DOUBLE_POINTS = random_kill_points(4, seed=77, records=RECORDS, max_records=900)


@pytest.mark.parametrize("trial", range(len(DOUBLE_POINTS)))
def test_kill9_again_during_the_restart(tmp_path: Path, trial: int) -> None:
    """A second crash while the restart recovers and uploads still loses and duplicates nothing."""
    spool, store = tmp_path / "spool", tmp_path / "store"
    args = file_args(spool, store, trial, PARTITION_ARGS if trial % 2 else TRIAL_ARGS)
    data = make_uneven_records(RECORDS, seed=trial) if trial % 2 else make_records(RECORDS)
    killed = kill_trial(args, data, kill_at=DOUBLE_POINTS[trial])
    pending = len(list((spool / "objects").glob("*.json"))) + len(list((spool / "open").glob("*.body")))
    # 0: at the restart's first line (before/while it recovers); else after some of its uploads
    receipts = random.Random(trial).randint(0, max(0, pending - 1))
    second = kill_restart(args, kill_at=KillAt("receipts", receipts))
    assert "Traceback" not in second.stderr
    restart_and_finish(args)
    check_prefix(sequence_numbers(read_file_store(store)), killed)
    assert not list((spool / "objects").iterdir())


@pytest.mark.xdist_group("s3-moto")
def test_s3_outage_then_back_loses_nothing(moto_server: str, tmp_path: Path) -> None:
    """Cut the connection to a moto that keeps running, twice: every record is stored once.

    s3-batch reaches moto through a TCP relay. Records sent before the outage (all confirmed),
    during it (sealed while nothing gets through) and after it all end up in the bucket exactly
    once, in exactly the objects the receipts name — also when the second cut kills uploads in
    flight (a PUT that was stored but whose answer was lost is redone with the same key and bytes).
    """
    proxy = TcpProxy(int(moto_server.rsplit(":", 1)[1])).start()
    try:
        bucket = new_bucket(moto_server)
        spool = tmp_path / "spool"
        args = [
            "--dest",
            f"s3://{bucket}/",
            "--spool-dir",
            str(spool),
            "--max-records",
            "500",
            "--retry-max-delay-secs",
            "0.3",
            "--drain-timeout-secs",
            "60",
            "--stats-interval-secs",
            "0.1",
            "--flush-idle-ms",
            "20",
        ]
        proc = start_sink(args, aws_env(proxy.endpoint))
        watch = SinkWatch(proc, None)

        def receipted() -> int:
            with watch.lock:
                return sum(r["records"] for r in watch.receipts)

        def failures() -> int:
            with watch.lock:
                return sum("failed, retrying" in line for line in watch.err_lines)

        def feed(start: int) -> None:
            proc.stdin.write(make_records(3000, start=start))  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]

        feed(0)  # before: all of it confirmed before the cut
        wait_until(lambda: receipted() == 3000, 30, "the first 3000 records confirmed")

        proxy.cut()  # the outage: moto keeps everything, s3-batch cannot reach it
        feed(3000)
        wait_until(lambda: failures() >= 2, 30, "failed uploads logged during the outage")
        wait_until(lambda: len(list((spool / "objects").glob("*.json"))) == 6, 30, "6 objects sealed, waiting")
        assert receipted() == 3000, "nothing gets through during the outage"
        assert proc.poll() is None, "s3-batch keeps running through the outage"

        proxy.restore()
        feed(6000)  # after
        # a second cut just as the backlog starts draining: uploads in flight die mid-way
        wait_until(lambda: receipted() > 3000, 30, "the backlog draining after the first outage")
        before_second = failures()
        proxy.cut()
        wait_until(lambda: failures() > before_second, 30, "a failure logged in the second outage")
        proxy.restore()
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(90)
        watch.join()
        stderr = "\n".join(watch.err_lines)
        assert proc.returncode == 0, stderr
        assert "nothing is dropped" in stderr and "recovered after" in stderr

        objects = read_bucket(moto_server, bucket)
        assert sequence_numbers(objects) == list(range(9000)), "before, during and after: each record once"
        keys = [r["key"] for r in watch.receipts]
        assert sorted(set(keys)) == sorted(objects), "the bucket holds exactly the receipted objects"
        assert len(objects) == 18 and all(r["records"] == 500 for r in watch.receipts)
        assert not list((spool / "objects").iterdir())
    finally:
        proxy.stop()


def test_full_spool_applies_backpressure(tmp_path: Path) -> None:
    """A paused destination and a small spool: s3-batch stops reading instead of dropping."""
    spool, store = tmp_path / "spool", tmp_path / "store"
    args = [
        "--dest",
        f"local=file://{store}/",
        "--spool-dir",
        str(spool),
        "--max-records",
        "200",
        "--max-spool-bytes",
        "40KiB",
        "--compression",
        "none",
        "--drain-timeout-secs",
        "30",
    ]
    spool.mkdir()
    assert run_cli(["s3-batch", "pause", "--spool-dir", str(spool)]).returncode == 0
    proc = start_sink(args)
    data = make_records(20_000)  # ~2 MB: far beyond the 40 KiB spool
    import threading
    import time

    from tests.helpers.s3 import Feeder

    feeder = Feeder(proc.stdin, data)
    feeder.start()
    time.sleep(2.0)
    assert proc.poll() is None
    assert feeder.is_alive(), "the writer must be blocked: s3-batch stopped reading the pipe"
    used = sum(p.stat().st_size for p in spool.rglob("*.body"))
    assert used < 40 * 1024 + 32 * 1024, "the spool stays near its bound"
    err_lines: list[bytes] = []
    reader = threading.Thread(target=lambda: err_lines.append(proc.stderr.read()), daemon=True)  # type: ignore
    reader.start()
    assert run_cli(["s3-batch", "resume", "--spool-dir", str(spool)]).returncode == 0
    feeder.join(60)
    out = proc.stdout.read()  # type: ignore[union-attr]
    proc.wait(60)
    reader.join(10)
    stderr = b"".join(err_lines).decode()
    assert proc.returncode == 0, stderr
    assert "spool full" in stderr and "stopped reading stdin" in stderr
    assert sequence_numbers(read_file_store(store)) == list(range(20_000))
    assert len(out.splitlines()) == len(read_file_store(store))
