"""kill -9 at random moments, restart on the same spool: a gap-free prefix, each record once.

Acceptance is what s3-batch reports: `records_accepted` in its progress lines
(`--stats-interval-secs`), counted only after the records were fsynced to the spool. Every
accepted record must be in the store after the restart; records read but not yet accepted may
be there too, but only as a continuation of the prefix and never twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.helpers.s3 import (
    MotoProcess,
    aws_env,
    kill_trial,
    make_records,
    new_bucket,
    random_kill_delays,
    read_bucket,
    read_file_store,
    sequence_numbers,
    start_sink,
)

RECORDS = 40_000
TRIAL_ARGS = [
    "--max-records",
    "900",
    "--max-bytes",
    "24KiB",
    "--fsync-interval-ms",
    "20",
    "--stats-interval-secs",
    "0.02",
    "--flush-idle-ms",
    "20",
    "--retry-max-delay-secs",
    "0.2",
]
FILE_DELAYS = random_kill_delays(16, seed=20240501)
MOTO_DELAYS = random_kill_delays(8, seed=424242)
FORMATS = [("ndjson", "gzip"), ("json-array", "zstd"), ("ndjson", "none"), ("json-array", "gzip")]


def check_prefix(found: list[int], accepted: int) -> None:
    assert found == list(range(len(found))), "records in the store must be a gap-free prefix, each once"
    assert len(found) >= accepted, f"{accepted} records were reported accepted, only {len(found)} stored"


@pytest.mark.parametrize("trial", range(len(FILE_DELAYS)))
def test_kill9_then_restart_file_store(tmp_path: Path, trial: int) -> None:
    fmt, compression = FORMATS[trial % len(FORMATS)]
    spool, store = tmp_path / "spool", tmp_path / "store"
    args = [
        "--dest",
        f"file://{store}/",
        "--spool-dir",
        str(spool),
        "--format",
        fmt,
        "--compression",
        compression,
        *TRIAL_ARGS,
    ]
    accepted, stderr = kill_trial(args, make_records(RECORDS), kill_after_secs=FILE_DELAYS[trial])
    assert "Traceback" not in stderr

    restart = run_cli(["s3-batch", *args], b"")
    assert restart.returncode == 0, restart.stderr
    check_prefix(sequence_numbers(read_file_store(store)), accepted)
    assert not list((spool / "objects").iterdir()), "every delivered object is freed from the spool"
    assert not list((spool / "open").iterdir())


@pytest.mark.xdist_group("s3-moto")
@pytest.mark.parametrize("trial", range(len(MOTO_DELAYS)))
def test_kill9_then_restart_moto(moto_server: str, tmp_path: Path, trial: int) -> None:
    bucket = new_bucket(moto_server)
    spool = tmp_path / "spool"
    fmt, compression = FORMATS[trial % len(FORMATS)]
    args = [
        "--dest",
        f"s3://{bucket}/k9/",
        "--spool-dir",
        str(spool),
        "--format",
        fmt,
        "--compression",
        compression,
        *TRIAL_ARGS,
    ]
    env = aws_env(moto_server)
    accepted, stderr = kill_trial(args, make_records(RECORDS), kill_after_secs=MOTO_DELAYS[trial], env=env)
    assert "Traceback" not in stderr

    restart = run_cli(["s3-batch", *args], b"", env=env)
    assert restart.returncode == 0, restart.stderr
    objects = read_bucket(moto_server, bucket)
    assert all(key.startswith("k9/dt=") for key in objects)
    check_prefix(sequence_numbers(objects), accepted)


def test_s3_outage_then_back_loses_nothing(tmp_path: Path) -> None:
    """Stop the S3 endpoint mid-stream, start a new one on the same port: every record lands."""
    moto = MotoProcess().start()
    try:
        bucket = new_bucket(moto.endpoint)
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
        ]
        proc = start_sink(args, aws_env(moto.endpoint))
        first, second = make_records(3000), make_records(3000, start=3000)
        proc.stdin.write(first)  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        import time

        time.sleep(1.0)
        moto.stop()  # the outage: the bucket and everything in it is gone with the server
        proc.stdin.write(second)  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        time.sleep(1.5)
        before = read_spool_objects(spool)
        assert before > 0, "objects sealed during the outage wait in the spool"
        moto.start()
        new_bucket_same_name(moto.endpoint, bucket)
        _out, err = proc.communicate(timeout=90)  # closes stdin: end of input
        stderr = err.decode()
        assert proc.returncode == 0, stderr
        assert "nothing is dropped" in stderr  # the failure was reported, once per backoff step
        found = sequence_numbers(read_bucket(moto.endpoint, bucket))
        # the first server's objects died with it; the spool kept only what was not yet confirmed,
        # so the new server holds the records from the outage on, each exactly once
        assert found == sorted(set(found))
        assert found[-1] == 5999
        assert set(range(3000, 6000)) <= set(found)
    finally:
        moto.stop()


def read_spool_objects(spool: Path) -> int:
    return len(list((spool / "objects").glob("*.json")))


def new_bucket_same_name(endpoint: str, bucket: str) -> None:
    from tests.helpers.s3 import s3_client

    s3_client(endpoint).create_bucket(Bucket=bucket)


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


DOUBLE_DELAYS = random_kill_delays(4, seed=77, low=0.4, high=1.2)


@pytest.mark.parametrize("trial", range(len(DOUBLE_DELAYS)))
def test_kill9_again_during_the_restart(tmp_path: Path, trial: int) -> None:
    """A second crash while the restart recovers and uploads still loses and duplicates nothing."""
    import os
    import signal
    import time

    spool, store = tmp_path / "spool", tmp_path / "store"
    fmt, compression = FORMATS[trial % len(FORMATS)]
    args = [
        "--dest",
        f"file://{store}/",
        "--spool-dir",
        str(spool),
        "--format",
        fmt,
        "--compression",
        compression,
        *TRIAL_ARGS,
    ]
    accepted, _ = kill_trial(args, make_records(RECORDS), kill_after_secs=DOUBLE_DELAYS[trial])
    restart = start_sink(args)
    restart.stdin.close()  # type: ignore[union-attr]
    restart.stdin = None
    time.sleep(0.25 + 0.05 * trial)  # start-up takes ~0.25 s: kill during recovery / uploads
    if restart.poll() is None:
        os.kill(restart.pid, signal.SIGKILL)
    restart.communicate()
    final = run_cli(["s3-batch", *args], b"")
    assert final.returncode == 0, final.stderr
    check_prefix(sequence_numbers(read_file_store(store)), accepted)
    assert not list((spool / "objects").iterdir())
