"""A `python -m moto.server` process of a test's own, on a port it picked itself.

Picking a free port first and passing it to moto leaves a gap in which another xdist worker can
take the same port; a readiness probe would then talk to that other worker's server (and a
reset would wipe it). Here moto binds port 0 itself and we read the port from its start-up line,
so the server we talk to is always ours. Its stderr (a line per request) is drained so a busy
server never blocks on a full pipe.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Mapping

STARTED = re.compile(rb"Running on http://127\.0\.0\.1:(\d+)")
START_TIMEOUT_SECS = 30.0


def start_moto(env: Mapping[str, str] | None = None, port: int = 0) -> tuple[subprocess.Popen[bytes], int]:
    """Start moto on 127.0.0.1 (`port` 0 = its own pick); returns (process, bound port)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    found: list[int] = []
    ready = threading.Event()

    def drain() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            if not found and (match := STARTED.search(line)):
                found.append(int(match.group(1)))
                ready.set()
        ready.set()  # EOF: the process ended

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(START_TIMEOUT_SECS) or not found:
        stop_moto(proc)
        raise RuntimeError(f"moto server did not start (exit code {proc.poll()})")
    return proc, found[0]


def stop_moto(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
