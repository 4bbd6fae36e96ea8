"""s3-batch accepts on write: kill -9 after it read N records loses none of them (issue 10, point 4).

Each trial streams N records into a real s3-batch whose stdin stays open, waits until the sink's
own progress lines report all N read (`records_in`), sends SIGKILL, then restarts on the same
spool with empty input: the store must hold exactly records 0..N-1, each once. Most trials run
with `--fsync-interval-ms 600000`, so no fsync (and, with large objects, no seal) comes before
the kill: the records survive only because each input chunk was written to the spool files and
its counts logged before the next chunk was read. Two trials keep the default interval.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.helpers.s3 import (
    Feeder,
    KillAt,
    SinkWatch,
    aws_env,
    make_records,
    make_uneven_records,
    new_bucket,
    read_bucket,
    read_file_store,
    sequence_numbers,
    sigkill,
    start_sink,
    wait_until,
)

FORMATS = [("ndjson", "gzip"), ("json-array", "zstd"), ("ndjson", "none"), ("json-array", "gzip")]
NO_FSYNC = ["--fsync-interval-ms", "600000"]
COMMON = ["--max-records", "100000", "--stats-interval-secs", "0.02", "--flush-idle-ms", "20"]
PARTITIONED = ["--key-template", "{prefix}{field:tenantid}/{t1}_{t2}_{t3}_{hash}{ext}"]

# (fsync args, partitioned, level): 8 trials into file://, 3 into moto
FILE_TRIALS = [
    (NO_FSYNC, False, None),
    (NO_FSYNC, True, None),
    (NO_FSYNC, False, "1"),
    (NO_FSYNC, True, None),
    (NO_FSYNC, False, "9"),
    (NO_FSYNC, True, "1"),
    ([], False, None),
    ([], True, None),
]
MOTO_TRIALS = [(NO_FSYNC, False, None), (NO_FSYNC, True, None), ([], False, "1")]


def sink_args(dest: str, spool: Path, trial: int, fsync: list[str], partitioned: bool, level: str | None) -> list[str]:
    fmt, compression = FORMATS[trial % len(FORMATS)]
    args = ["--dest", dest, "--spool-dir", str(spool), "--format", fmt, "--compression", compression]
    if level is not None and compression == "gzip":
        args += ["--compression-level", level]
    return [*args, *COMMON, *fsync, *(PARTITIONED if partitioned else [])]


def feed_read_kill(args: list[str], data: bytes, records: int, env: dict[str, str] | None = None) -> str:
    """Stream `data` with stdin held open; SIGKILL once the sink reports every record read."""
    proc = start_sink(args, env)
    watch = SinkWatch(proc, KillAt("records_in", records))
    feeder = Feeder(proc.stdin, data, slice_bytes=16 * 1024, pause_secs=0.002, close=False)
    feeder.start()
    fired = watch.fired.wait(60)
    assert fired, f"s3-batch never reported {records} records read:\n" + "\n".join(watch.err_lines[-20:])
    sigkill(proc, watch, f"kill after {records} records read")
    watch.join()
    feeder.join(10)
    return "\n".join(watch.err_lines)


def trial_data(trial: int) -> tuple[bytes, int]:
    records = random.Random(trial).randint(2_000, 9_000)
    data = make_uneven_records(records, seed=trial) if trial % 2 else make_records(records)
    return data, records


@pytest.mark.parametrize("trial", range(len(FILE_TRIALS)))
def test_kill9_after_read_keeps_every_record_read_file_store(tmp_path: Path, trial: int) -> None:
    spool, store = tmp_path / "spool", tmp_path / "store"
    fsync, partitioned, level = FILE_TRIALS[trial]
    args = sink_args(f"file://{store}/", spool, trial, fsync, partitioned, level)
    data, records = trial_data(trial)
    stderr = feed_read_kill(args, data, records)
    assert "Traceback" not in stderr
    assert not read_file_store(store), "nothing was sealed before the kill: the restart must recover it"

    restart = run_cli(["s3-batch", *args], b"")
    assert restart.returncode == 0, restart.stderr
    assert f"sealed now from {records} records spooled before a crash" in restart.stderr
    assert sequence_numbers(read_file_store(store)) == list(range(records)), "every record read, each once"
    assert not list((spool / "open").iterdir()) and not list((spool / "objects").iterdir())


@pytest.mark.xdist_group("s3-moto")
@pytest.mark.parametrize("trial", range(len(MOTO_TRIALS)))
def test_kill9_after_read_keeps_every_record_read_moto(moto_server: str, tmp_path: Path, trial: int) -> None:
    bucket = new_bucket(moto_server)
    fsync, partitioned, level = MOTO_TRIALS[trial]
    args = sink_args(f"s3://{bucket}/aw/", tmp_path / "spool", trial, fsync, partitioned, level)
    env = aws_env(moto_server)
    data, records = trial_data(100 + trial)
    stderr = feed_read_kill(args, data, records, env)
    assert "Traceback" not in stderr

    restart = run_cli(["s3-batch", *args], b"", env=env)
    assert restart.returncode == 0, restart.stderr
    objects = read_bucket(moto_server, bucket)
    assert objects and all(key.startswith("aw/") for key in objects)
    assert sequence_numbers(objects) == list(range(records)), "every record read, each once"


@pytest.mark.parametrize(("max_spool", "pipe_bytes"), [("2GiB", 1 << 20), ("40KiB", 64 * 1024)])
def test_stdin_pipe_is_grown_for_chunks_the_compressor_can_overlap(
    tmp_path: Path, max_spool: str, pipe_bytes: int
) -> None:
    """Commits follow read chunks, so s3-batch asks for a 1 MiB stdin pipe (1/8 of a small
    --max-spool-bytes at most: a chunk may overshoot the spool bound)."""
    import fcntl

    proc = start_sink(["--dest", f"file://{tmp_path}/store/", "--spool-dir", str(tmp_path / "spool"),
                       "--max-spool-bytes", max_spool, "--stats-interval-secs", "0.02"])  # fmt: skip
    watch = SinkWatch(proc, None)
    try:
        proc.stdin.write(make_records(10))  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        wait_until(lambda: watch.counters["records_in"] == 10, 30, "10 records read")  # after the pipe is set
        assert fcntl.fcntl(proc.stdin.fileno(), fcntl.F_GETPIPE_SZ) == pipe_bytes  # type: ignore[union-attr]
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(30)
        watch.join()
    assert proc.returncode == 0
