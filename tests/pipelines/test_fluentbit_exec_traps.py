"""The Fluent Bit exec behaviours our configs rely on, pinned with the real binary and shell
stand-ins (so a Fluent Bit upgrade that changes them fails here, not in production)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.fluentbit import FLUENT_BIT_DIR

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("fb-traps")]


def run_exec(fluent_bit_path: str, tmp_path: Path, command: str, *props: str) -> list[dict]:
    argv = [
        fluent_bit_path,
        "-R",
        str(FLUENT_BIT_DIR / "parsers.conf"),
        "-i",
        "exec",
        "-p",
        f"command={command}",
    ]
    argv += ["-p", "parser=harmony_ndjson", "-p", "oneshot=true", "-p", "exit_after_oneshot=true"]
    for prop in props:
        argv += ["-p", prop]
    argv += ["-o", "stdout", "-p", "format=json_lines", "-p", "json_date_key=false", "-f", "1"]
    proc = subprocess.run(argv, capture_output=True, timeout=30, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith(b"{")]


def test_a_line_longer_than_buf_size_is_dropped_and_a_big_buf_size_keeps_it(fluent_bit_path, tmp_path) -> None:
    data = tmp_path / "lines.ndjson"
    data.write_text(json.dumps({"id": 1, "pad": "x" * 5000}) + "\n" + json.dumps({"id": 2}) + "\n")
    assert [r["id"] for r in run_exec(fluent_bit_path, tmp_path, f"cat {data}")] == [2]
    kept = run_exec(fluent_bit_path, tmp_path, f"cat {data}", "buf_size=8M")
    assert [r["id"] for r in kept] == [1, 2]
    assert len(kept[0]["pad"]) == 5000


def test_a_streaming_command_needs_threaded(fluent_bit_path, tmp_path) -> None:
    """With threaded=true a record arrives while the command still runs; without, only at exit."""
    script = tmp_path / "stream.sh"
    script.write_text("#!/bin/sh\necho '{\"n\":1}'\nsleep 3\necho '{\"n\":2}'\n")
    script.chmod(0o755)
    arrivals = {}
    for threaded in ("true", "false"):
        argv = [fluent_bit_path, "-R", str(FLUENT_BIT_DIR / "parsers.conf"), "-i", "exec"]
        argv += ["-p", f"command={script}", "-p", "parser=harmony_ndjson", "-p", "oneshot=true"]
        argv += ["-p", "exit_after_oneshot=true", "-p", f"threaded={threaded}"]
        argv += ["-o", "stdout", "-p", "format=json_lines", "-p", "json_date_key=false", "-f", "1"]
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        first = proc.stdout.readline()
        arrivals[threaded] = time.monotonic() - started
        proc.communicate(timeout=30)
        assert json.loads(first) == {"n": 1}
    assert arrivals["true"] < 2.0, arrivals
    assert arrivals["false"] >= 3.0, arrivals


def test_stderr_is_not_data_and_exit_code_propagates(fluent_bit_path, tmp_path) -> None:
    argv = [fluent_bit_path, "-R", str(FLUENT_BIT_DIR / "parsers.conf"), "-i", "exec"]
    argv += ["-p", """command=echo '{"a":1}'; echo '{"stats":{}}' >&2; exit 75"""]
    argv += ["-p", "parser=harmony_ndjson", "-p", "oneshot=true", "-p", "exit_after_oneshot=true"]
    argv += ["-p", "propagate_exit_code=true"]
    argv += ["-o", "stdout", "-p", "format=json_lines", "-p", "json_date_key=false", "-f", "1"]
    proc = subprocess.run(argv, capture_output=True, timeout=30)
    assert proc.returncode == 75
    assert [json.loads(line) for line in proc.stdout.splitlines() if line.startswith(b"{")] == [{"a": 1}]
    assert b'{"stats":{}}' in proc.stderr
