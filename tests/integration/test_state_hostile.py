"""Issue 11, case 7 (the smaller ones; the lead keeps the stdin-loop ones): broken state on real
processes. A dedupe log entry dated in the future or corrupted forgets no earlier key; state
dirs are 0700 at every level a command creates; a read-only state dir is one line, not an
internal error; a state dir of another command is refused (an unmarked one is adopted);
`--max-bytes` smaller than one record can make an object is refused; an s3-batch whose spool
disk cannot take another byte can still start and deliver its backlog.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import resource
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from harmony_pipes.harmony_alerts.dedupe import ENTRY, LOG_MAGIC
from tests.conftest import command_path, free_port, run_cli
from tests.helpers.discovery import discovery_env
from tests.helpers.events import ACCESS_KEY, CLIENT_ID
from tests.helpers.logs import error_lines
from tests.helpers.s3 import all_records, make_records, read_file_store
from tests.integration.test_stream_contract import valid_lines

# --- the dedupe key log ------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["future-dated", "corrupted"])
def test_one_bad_dedupe_entry_forgets_no_earlier_key(tmp_path: Path, damage: str) -> None:
    lines = valid_lines(1000, seed=31)
    data = b"\n".join(lines) + b"\n"
    args = ["harmony-alerts", "--all", "--state-dir", str(tmp_path / "state")]
    first = run_cli(args, data)
    assert first.returncode == 0 and len(first.stdout_lines) == 1000, first.stderr
    log = tmp_path / "state" / "dedupe-keys.bin"
    raw = bytearray(log.read_bytes())
    at = len(LOG_MAGIC) + 500 * ENTRY.size  # the 501st entry
    digest, seen_at = ENTRY.unpack_from(raw, at)
    if damage == "future-dated":
        ENTRY.pack_into(raw, at, digest, seen_at + 10 * 365 * 86400)  # ten years ahead
    else:
        raw[at : at + ENTRY.size] = b"\xff" * ENTRY.size  # digest and date garbage (year 2106)
    log.write_bytes(bytes(raw))
    again = run_cli(args, data)
    assert again.returncode == 0, again.stderr
    # the damaged entry's own key may be lost (its digest is garbage): never the 500 before it
    assert len(again.stdout_lines) <= (0 if damage == "future-dated" else 1), len(again.stdout_lines)
    warnings = [line for line in again.stderr.splitlines() if "dated in the future" in line]
    assert len(warnings) == 1 and "1 of 1000" in warnings[0], again.stderr


# --- state directories: modes, read-only, ownership ----------------------------------------------


def command_args(command: str, state: Path, moto: str) -> tuple[list[str], dict[str, str], bytes]:
    """argv, env and stdin that make `command` open `state` as its state dir (and then finish or
    fail on something else, which does not matter here)."""
    if command == "s3-batch":
        return ["s3-batch", "--dest", f"file://{state.parent}/store/", "--state-dir", str(state)], {}, b'{"a":1}\n'
    if command == "harmony-alerts":
        return ["harmony-alerts", "--state-dir", str(state)], {}, valid_lines(3)[0] + b"\n"
    if command == "harmony-events":
        env = {
            "HARMONY_BASE_URL": f"http://127.0.0.1:{free_port()}",  # nobody listens: exit 4 after the state dir
            "HARMONY_CLIENT_ID": CLIENT_ID,
            "HARMONY_ACCESS_KEY": ACCESS_KEY,
        }
        return ["harmony-events", "--once", "--state-dir", str(state)], env, b""
    env = discovery_env(moto)
    argv = ["aws-discovery", "--regions", "us-east-1", "--tags", "env", "--once", "--state-dir", str(state)]
    return argv, env, b""


COMMANDS = ["s3-batch", "harmony-alerts", "harmony-events", "aws-discovery"]


def run_with_umask(args: list[str], env: dict[str, str], data: bytes, umask: int):
    old = os.umask(umask)  # inherited by the child; this worker process runs one test at a time
    try:
        return run_cli(args, data, env=env)
    finally:
        os.umask(old)


@pytest.mark.parametrize("command", COMMANDS)
def test_state_dirs_are_0700_at_every_level_we_create(tmp_path: Path, moto_server: str, command: str) -> None:
    base = tmp_path / "existing"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    state = base / "a" / "b" / "state"
    args, env, data = command_args(command, state, moto_server)
    result = run_with_umask(args, env, data, 0)  # the worst umask: mkdir would give 0777
    assert "internal error" not in result.stderr, result.stderr
    created = [base / "a", base / "a" / "b", state, *(p for p in state.rglob("*") if p.is_dir())]
    modes = {str(p.relative_to(base)): oct(stat.S_IMODE(p.stat().st_mode)) for p in created}
    assert set(modes.values()) == {"0o700"}, modes
    assert stat.S_IMODE(base.stat().st_mode) == 0o755, "a parent that existed is left alone"
    files = [p for p in state.rglob("*") if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` unwritable for this user: chmod 0500, or for root (who ignores modes) the
    immutable attribute; skipped where neither works."""
    if os.geteuid() != 0:
        os.chmod(path, 0o500)
        undo = ["chmod", "700", str(path)]
    else:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode != 0:
            pytest.skip("running as root and chattr +i is not available: cannot make a read-only directory")
        undo = ["chattr", "-i", str(path)]
    try:
        try:
            (path / "probe").touch()
        except OSError:
            pass
        else:
            pytest.skip("the directory stayed writable")
        yield
    finally:
        subprocess.run(undo, check=False)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_state_dir_is_one_line_not_an_internal_error(
    tmp_path: Path, moto_server: str, command: str
) -> None:
    state = tmp_path / "state"
    args, env, data = command_args(command, state, moto_server)
    state.mkdir(mode=0o700)
    if command == "s3-batch":
        (state / "s3-batch-spool").mkdir(mode=0o700)  # an existing spool inside a read-only dir
        target = state / "s3-batch-spool"
    else:
        target = state
    with read_only(target):
        result = run_cli(args, data, env=env)
    assert result.returncode in (1, 2), result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "internal error" not in errors[0] and " — " in errors[0], result.stderr
    assert str(target) in errors[0] and "writable" in errors[0]


OWNERS = [("harmony-alerts", "s3-batch"), ("s3-batch", "harmony-alerts"), ("harmony-events", "aws-discovery")]


@pytest.mark.parametrize(("first", "second"), OWNERS)
def test_a_state_dir_of_another_command_is_refused(tmp_path: Path, moto_server: str, first: str, second: str) -> None:
    state = tmp_path / "state"
    args, env, data = command_args(first, state, moto_server)
    run_cli(args, data, env=env)  # whatever its outcome, it claims the directory
    assert (state / ".owner").read_text().strip() == first
    args, env, data = command_args(second, state, moto_server)
    result = run_cli(args, data, env=env)
    assert result.returncode == 2, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and f"belongs to {first}" in errors[0] and "--state-dir" in errors[0], result.stderr
    assert result.stdout == b""


def test_an_unmarked_state_dir_of_an_older_version_is_adopted(tmp_path: Path) -> None:
    state = tmp_path / "state"
    data = b"\n".join(valid_lines(20, seed=4)) + b"\n"
    args = ["harmony-alerts", "--all", "--state-dir", str(state)]
    assert run_cli(args, data).returncode == 0
    (state / ".owner").unlink()  # as an older version left it
    again = run_cli(args, data)
    assert again.returncode == 0 and again.stdout_lines == [] and again.stats["duplicates"] == 20
    assert (state / ".owner").read_text().strip() == "harmony-alerts"


# --- --max-bytes -------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_bytes", "extra"), [("10", []), ("64KiB", []), ("1MiB", ["--compression", "none"])])
def test_max_bytes_smaller_than_one_record_can_make_an_object_is_refused(
    tmp_path: Path, max_bytes: str, extra: list[str]
) -> None:
    args = ["s3-batch", "--dest", f"file://{tmp_path}/s/", "--max-bytes", max_bytes, *extra]
    result = run_cli(args, make_records(3))
    assert result.returncode == 2, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "--max-bytes" in errors[0] and "--max-line-bytes" in errors[0]
    assert not (tmp_path / "s").exists()


def test_objects_never_exceed_max_bytes_even_for_the_longest_record(tmp_path: Path) -> None:
    """At the smallest --max-bytes allowed for --max-line-bytes 4096, incompressible records of
    up to 4096 bytes each still fit: every object stays within --max-bytes."""
    probe = run_cli(["s3-batch", "--dest", f"file://{tmp_path}/p/", "--max-line-bytes", "4096", "--max-bytes", "64"])
    found = re.search(r"at least (\d+)", probe.stderr)
    floor = int(found.group(1)) if found else None
    assert floor is not None, probe.stderr
    rng = random.Random(9)
    lines = [
        orjson.dumps({"i": i, "noise": rng.randbytes(1500 if i % 4 else 2990).hex()[: 4096 - 40]}) for i in range(60)
    ]
    assert max(len(line) for line in lines) <= 4096
    args = ["s3-batch", "--dest", f"file://{tmp_path}/s/", "--max-line-bytes", "4096", "--max-bytes", str(floor)]
    result = run_cli(args, b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.stderr
    objects = read_file_store(tmp_path / "s")
    assert max(len(body) for body in objects.values()) <= floor
    assert sorted(r["i"] for r in all_records(objects)) == list(range(60))


# --- a spool whose disk takes no more bytes ----------------------------------------------------


def test_a_spool_on_a_full_disk_can_start_and_deliver_its_backlog(tmp_path: Path) -> None:
    """The disk filled up while the destination was down; once it is back, a start must deliver
    the backlog (which frees the disk) instead of failing on destinations.json. The full disk is
    RLIMIT_FSIZE: every write that grows a file fails (EFBIG), as on a disk without free blocks."""
    spool = tmp_path / "spool"
    spool.mkdir()
    store = f"file://{tmp_path}/store/"
    assert run_cli(["s3-batch", "pause", "--spool-dir", str(spool)]).returncode == 0
    first = run_cli(["s3-batch", "--dest", store, "--spool-dir", str(spool), "--max-records", "100"], make_records(450))
    assert first.returncode == 0, first.stderr
    assert run_cli(["s3-batch", "resume", "--spool-dir", str(spool)]).returncode == 0
    assert len(list((spool / "objects").glob("*.body"))) == 5

    def no_bytes() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HARMONY_PIPES_STATE_DIR", None)
    started = time.monotonic()
    proc = subprocess.run(
        [command_path("s3-batch"), "--dest", store, "--spool-dir", str(spool)],
        input=b"",
        capture_output=True,
        env=env,
        preexec_fn=no_bytes,
        timeout=120,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr
    assert "destinations.json" in stderr and "internal error" not in stderr
    assert sorted(r["i"] for r in all_records(read_file_store(tmp_path / "store"))) == list(range(450))
    assert not list((spool / "objects").glob("*.body")), "the backlog is freed"
    assert time.monotonic() - started < 60
