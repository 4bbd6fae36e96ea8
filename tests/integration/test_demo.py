"""`make demo` (python -m harmony_pipes.demo): real processes, a summary a person can read, the
objects it names exist, and it finishes well under 30 seconds."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("demo")]


def test_demo_prints_the_summary(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARMONY_", "S3_BATCH_"))}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "harmony_pipes.demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=90,
    )
    elapsed_secs = time.monotonic() - started
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert elapsed_secs < 30, f"demo took {elapsed_secs:.1f}s"
    assert "Traceback" not in proc.stderr.decode()
    # the collection ran as one harmony-pipes chain of the three stages, and the summary says so
    chain = re.search(r'chain\s+harmony-pipes chain "([^"]+)"', out)
    assert chain, out
    assert [stage.split()[0] for stage in chain.group(1).split(" | ")] == [
        "harmony-events",
        "harmony-alerts",
        "s3-batch",
    ]

    events = int(re.search(r"events collected\s+([\d,]+)", out).group(1).replace(",", ""))
    kept = int(re.search(r"alerts kept\s+([\d,]+)", out).group(1).replace(",", ""))
    objects = int(re.search(r"objects written\s+(\d+)", out).group(1))
    assert events > 0 and 0 < kept <= events
    assert objects >= 1
    assert re.search(r"duplicates dropped\s+\d+", out)
    # The replay of the same events emits nothing new: every alert is a known duplicate.
    replay = re.search(r"replay of the same events: ([\d,]+) in, ([\d,]+) new alerts, ([\d,]+) duplicates", out)
    assert replay, out
    assert replay.group(2) == "0"
    assert int(replay.group(3).replace(",", "")) >= kept

    # Every object named in the summary exists, and together they hold exactly the kept alerts.
    names = re.findall(r"(demo-out/\S+)\s+([\d,]+) alerts", out)
    assert len(names) == objects
    total = 0
    ids = []
    for name, count in names:
        path = tmp_path / name
        assert path.exists(), name
        body = path.read_bytes()
        if name.endswith(".gz"):
            body = gzip.decompress(body)
        records = [orjson.loads(line) for line in body.splitlines() if line.strip()]
        assert len(records) == int(count.replace(",", ""))
        total += len(records)
        ids += [r["event_id"] for r in records]
    assert total == kept
    assert len(ids) == len(set(ids)), "an alert was written twice"
    # Reasons are listed, and one alert is pretty-printed.
    assert re.search(r"type:\w+\s+[\d,]+", out) or re.search(r"severity>=\d\s+[\d,]+", out)
    assert '"msg_class": "checkpoint_harmony_security_event"' in out


def test_make_demo_runs_this_module() -> None:
    """`make demo` is the entry point the issue names: it must run the module tested above."""
    from tests.conftest import REPO_ROOT

    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "-m harmony_pipes.demo" in recipe
