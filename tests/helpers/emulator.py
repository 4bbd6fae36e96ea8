"""Start `hec-emulator` as a real subprocess on 127.0.0.1 and talk to its test-only control API.

    with start_emulator("--generate", "500", "--seed", "3") as emu:
        requests.post(emu.url + "/auth/external", json=...)
        emu.stats()["events_served"]

The emulator accepts `CLIENT_ID` / `ACCESS_KEY` below unless the args or `env` say otherwise
(they are the same as tests/helpers/events.py, so a collector configured by `collector_env`
authenticates against it).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tests.helpers.events import ACCESS_KEY, CLIENT_ID

EMULATOR_BIN = Path(sys.executable).parent / "hec-emulator"
START_TIMEOUT_SECS = 60.0


@dataclass
class EmulatorHandle:
    url: str
    proc: subprocess.Popen[bytes]

    def stats(self) -> dict[str, Any]:
        """GET /_emulator/stats (requests counted, pages, faults served, events held ...)."""
        import requests

        return requests.get(self.url + "/_emulator/stats", timeout=10).json()

    def add_events(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """POST /_emulator/events: insert events now (eventCreated may lie in the past)."""
        import requests

        body = b"".join(orjson.dumps(e) + b"\n" for e in events)
        resp = requests.post(self.url + "/_emulator/events", data=body, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def token(self, client_id: str = CLIENT_ID, access_key: str = ACCESS_KEY) -> str:
        import requests

        resp = requests.post(
            self.url + "/auth/external", json={"clientId": client_id, "accessKey": access_key}, timeout=10
        )
        resp.raise_for_status()
        return resp.json()["data"]["token"]


def emulator_env(env: dict[str, str] | None = None) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HEC_EMULATOR_")}
    full.update({"HEC_EMULATOR_CLIENT_ID": CLIENT_ID, "HEC_EMULATOR_ACCESS_KEY": ACCESS_KEY})
    full.update(env or {})
    return full


@contextlib.contextmanager
def start_emulator(*args: str, env: dict[str, str] | None = None, port: str = "0") -> Iterator[EmulatorHandle]:
    """`hec-emulator --port PORT ARGS`; yields once the `{"url": ...}` line is read; SIGTERM on exit."""
    proc = subprocess.Popen(
        [str(EMULATOR_BIN), "--port", port, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=emulator_env(env),
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr_lines: list[bytes] = []
    drain = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True)  # never blocks it
    drain.start()
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT_SECS)
    if not line or not line[0].strip():
        proc.kill()
        proc.wait()
        drain.join(5)
        raise AssertionError(f"hec-emulator printed no URL: {b''.join(stderr_lines).decode(errors='replace')}")
    handle = EmulatorHandle(orjson.loads(line[0])["url"], proc)
    try:
        yield handle
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
