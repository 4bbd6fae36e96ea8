"""The stdin side of the stream contract against hostile input and broken disks (issue 11, the
parts in `_core`): dead-letter files, a closed receipt reader, blank-line floods, size options."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import command_path, run_cli
from tests.helpers.logs import error_lines, log_lines
from tests.helpers.s3 import all_records, read_file_store
from tests.integration.test_stream_contract import valid_lines


@pytest.mark.parametrize("command", ["harmony-alerts", "s3-batch"])
def test_an_unwritable_dead_letter_path_is_refused_at_start_with_exit_2(tmp_path: Path, command: str) -> None:
    args = [command, "--dead-letter", str(tmp_path / "no" / "such" / "dir" / "bad.ndjson")]
    if command == "s3-batch":
        args += ["--dest", f"file://{tmp_path}/store/", "--spool-dir", str(tmp_path / "spool")]
    result = run_cli(args, b"not json\n" + b"\n".join(valid_lines(5)) + b"\n")
    assert result.returncode == 2, result.stderr
    (line,) = error_lines(result.stderr)
    assert line.startswith("cannot open --dead-letter") and "No such file or directory" in line
    assert result.stdout == b"" and "internal error" not in result.stderr


def _limit_file_size(limit_bytes: int):
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG

    return set_limit


def test_a_dead_letter_file_that_cannot_grow_costs_the_dead_letters_not_the_run(tmp_path: Path) -> None:
    """A full disk (here: a file size limit) under the dead-letter file: every good record still
    flows, the loss of dead letters is said once, exit 0."""
    dead = tmp_path / "bad.ndjson"
    good = valid_lines(300)
    data = b"\n".join(line for pair in zip(good, [b"{broken"] * 300, strict=True) for line in pair) + b"\n"
    proc = subprocess.run(
        [command_path("harmony-alerts"), "--all", "--dead-letter", str(dead)],
        input=data,
        capture_output=True,
        preexec_fn=_limit_file_size(4096),
        timeout=60,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr
    assert len(proc.stdout.splitlines()) == 300  # every good record
    warnings = [w["msg"] for w in log_lines(stderr, "warning") if "dead-letter file" in w["msg"]]
    assert len(warnings) == 1 and "cannot be written" in warnings[0]
    stats = orjson.loads(next(line for line in stderr.splitlines() if line.startswith('{"stats"')))["stats"]
    assert stats["bad_records"] == 300 and stats["dead_letters_dropped"] > 0
    assert dead.stat().st_size <= 4096


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_s3_batch_with_its_dead_letter_file_on_a_full_disk_stores_every_good_record(tmp_path: Path) -> None:
    """/dev/full answers every write with ENOSPC, as a full disk does: s3-batch says so once and
    stores all 300 good records (it died once: exit 1 blaming the spool dir, 0 stored)."""
    good = valid_lines(300)
    data = b"\n".join(line for pair in zip(good, [b"{broken"] * 300, strict=True) for line in pair) + b"\n"
    out = tmp_path / "out"
    args = [
        "s3-batch",
        "--dest",
        f"file://{out}/",
        "--spool-dir",
        str(tmp_path / "spool"),
        "--dead-letter",
        "/dev/full",
    ]
    result = run_cli(args, data)
    assert result.returncode == 0, result.stderr
    warnings = [w["msg"] for w in log_lines(result.stderr, "warning") if "dead-letter file" in w["msg"]]
    assert len(warnings) == 1 and "disk full" in warnings[0]
    stored = all_records(read_file_store(out))
    assert sorted(orjson.dumps(r) for r in stored) == sorted(orjson.dumps(orjson.loads(line)) for line in good)
    assert result.stats["bad_records"] == 300


def test_a_flood_of_one_byte_bad_lines_fills_the_dead_letter_file_only_to_its_bound(tmp_path: Path) -> None:
    dead = tmp_path / "bad.ndjson"
    data = b"x\n" * 200_000 + b"\n".join(valid_lines(3)) + b"\n"
    result = run_cli(["harmony-alerts", "--all", "--dead-letter", str(dead), "--dead-letter-max-bytes", "1MiB"], data)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout_lines) == 3
    assert (1 << 20) - 200 <= dead.stat().st_size <= 1 << 20
    assert result.stats["bad_records"] == 200_000
    assert result.stats["dead_letters_dropped"] == 200_000 - len(dead.read_bytes().splitlines())
    assert "is full (--dead-letter-max-bytes)" in result.stderr


def test_s3_batch_piped_into_head_still_stores_everything_and_exits_0(tmp_path: Path) -> None:
    """`s3-batch ... | head -1`: the reader of the receipts went away; the objects are s3-batch's
    job, so it reads to the end, stores every record, and exit 0 means exactly that."""
    records = b"".join(orjson.dumps({"i": i, "pad": "x" * 40}) + b"\n" for i in range(200_000))
    source = tmp_path / "in.ndjson"
    source.write_bytes(records)
    store = tmp_path / "store"
    sink = f"{command_path('s3-batch')} --dest file://{store}/ --spool-dir {tmp_path}/spool --max-records 2000"
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sink} < {source} | head -1"], capture_output=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.count(b"\n") == 1
    assert sorted(r["i"] for r in all_records(read_file_store(store))) == list(range(200_000))
    assert b"receipts are no longer printed; uploads go on" in proc.stderr


def test_twenty_megabytes_of_blank_lines_cost_no_more_than_other_lines(tmp_path: Path) -> None:
    """Blank lines are skipped before parsing (each used to cost a JSON error: 33 s for 20 MB)."""
    blank = tmp_path / "blank.ndjson"
    blank.write_bytes(b"\n" * 20_000_000 + b"\n".join(valid_lines(2)) + b"\n")
    started = time.monotonic()
    result = run_cli(["harmony-alerts", "--all"], blank.read_bytes())
    elapsed = time.monotonic() - started
    assert result.returncode == 0 and len(result.stdout_lines) == 2
    assert result.stats["bad_records"] == 0
    assert elapsed < 10, f"{elapsed:.1f} s for 20 MB of blank lines"  # a loose bound: 33 s before


@pytest.mark.parametrize(("given", "expected"), [("4MiB", 4 << 20), ("2MB", 2_000_000), ("65536", 65536)])
def test_max_line_bytes_takes_units_like_every_size_option(given: str, expected: int) -> None:
    long_line = orjson.dumps({"pad": "x" * (expected - 20)})
    too_long = orjson.dumps({"pad": "x" * (expected + 10)})
    result = run_cli(["harmony-alerts", "--all", "--max-line-bytes", given], long_line + b"\n" + too_long + b"\n")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout_lines) == 1 and result.stats["bad_records"] == 1


def test_max_line_bytes_64mib_as_the_issue_gave_it(tmp_path: Path) -> None:
    """`--max-line-bytes 64MiB` (refused once: plain bytes only). s3-batch takes it when an object
    may hold such a line, and says exactly what to raise when it may not."""
    line = orjson.dumps({"pad": "x" * 2_000_000})  # longer than the default 1 MiB limit
    alerts = run_cli(["harmony-alerts", "--all", "--max-line-bytes", "64MiB"], line + b"\n")
    assert alerts.returncode == 0 and len(alerts.stdout_lines) == 1, alerts.stderr
    s3_args = ["s3-batch", "--dest", f"file://{tmp_path}/out/", "--spool-dir", str(tmp_path / "spool")]
    stored = run_cli([*s3_args, "--max-line-bytes", "64MiB", "--max-bytes", "128MiB"], line + b"\n")
    assert stored.returncode == 0 and stored.stats["records_accepted"] == 1, stored.stderr
    refused = run_cli([*s3_args, "--max-line-bytes", "64MiB"], line + b"\n")
    (error,) = error_lines(refused.stderr)
    assert refused.returncode == 2 and "raise --max-bytes to at least" in error, refused.stderr


def test_max_line_bytes_refuses_what_is_not_a_size() -> None:
    result = run_cli(["harmony-alerts", "--max-line-bytes", "lots"], b"")
    assert result.returncode == 2 and "is not a size" in result.stderr


def test_no_dedupe_with_a_state_dir_says_the_state_dir_is_not_used(tmp_path: Path) -> None:
    result = run_cli(["harmony-alerts", "--no-dedupe", "--state-dir", str(tmp_path / "s")], b"\n".join(valid_lines(2)))
    assert result.returncode == 0
    warnings = [w["msg"] for w in log_lines(result.stderr, "warning")]
    assert any("--no-dedupe: --state-dir is not used" in w for w in warnings), result.stderr
    assert not (tmp_path / "s" / "dedupe-keys.bin").exists()


def test_sighup_ends_a_source_at_its_next_safe_point_with_the_stats_line(tmp_path: Path) -> None:
    """SIGHUP is SIGTERM's twin (a terminal hanging up, a shipper's reload): drain, stats, exit 0."""
    from tests.helpers.emulator import start_emulator
    from tests.helpers.events import collector_env

    with start_emulator("--generate", "50", "--span-secs", "300") as emu:
        env = {**os.environ, **collector_env(emu.url)}
        proc = subprocess.Popen(
            [command_path("harmony-events"), "--interval-secs", "60", "--state-dir", str(tmp_path / "e")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        lines = [proc.stdout.readline() for _ in range(50)]  # type: ignore[union-attr]  # the first cycle is out
        assert all(lines)
        deadline = time.monotonic() + 10
        while not (tmp_path / "e" / "harmony-events.cursor.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        import signal

        proc.send_signal(signal.SIGHUP)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()
        assert err.count(b'{"stats"') == 1 and b"SIGHUP" in err
