"""Run a shipped Fluent Bit config with the real binary, as a user would, and stop it cleanly.

The config is copied next to its parsers.conf into a scratch directory, optionally with a few
exact text replacements (the 60 s exec interval becomes 1-2 s so a test sees two cycles); the
test asserts each replacement matched once, so the rest of the file runs exactly as shipped.
Two replacements are always made, so tests running side by side never fight over a port: Fluent
Bit's HTTP server (2020 in every shipped config) and our `--metrics-addr 0.0.0.0:9464` move to
free ports on 127.0.0.1 (`fb.http_url`, `fb.metrics_url`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import orjson

from tests.conftest import free_port
from tests.helpers.wait import wait_until

SHIPPED_METRICS_ADDR = "--metrics-addr 0.0.0.0:9464"
_HTTP_LISTEN = re.compile(r"(?mi)^([ \t]*http_listen:?[ \t]+)0\.0\.0\.0[ \t]*$")
_HTTP_PORT = re.compile(r"(?mi)^([ \t]*http_port:?[ \t]+)2020[ \t]*$")

REPO = Path(__file__).resolve().parents[2]
FLUENT_BIT_DIR = REPO / "pipelines" / "fluent-bit"
VENV_BIN = Path(sys.executable).parent


class FluentBit:
    def __init__(
        self,
        binary: str,
        config_name: str,
        work_dir: Path,
        env: Mapping[str, str],
        replace: Mapping[str, str] | None = None,
    ) -> None:
        conf_dir = work_dir / "fluent-bit-conf"
        conf_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(FLUENT_BIT_DIR / "parsers.conf", conf_dir / "parsers.conf")
        text = (FLUENT_BIT_DIR / config_name).read_text()
        for old, new in (replace or {}).items():
            assert text.count(old) == 1, f"{old!r} must occur once in {config_name}"
            text = text.replace(old, new)
        http_port, metrics_port = free_port(), free_port()
        text = _HTTP_LISTEN.sub(r"\g<1>127.0.0.1", text)
        text, found = _HTTP_PORT.subn(rf"\g<1>{http_port}", text)
        self.http_url = f"http://127.0.0.1:{http_port}" if found else None
        self.metrics_url = None
        if SHIPPED_METRICS_ADDR in text:
            text = text.replace(SHIPPED_METRICS_ADDR, f"--metrics-addr 127.0.0.1:{metrics_port}")
            self.metrics_url = f"http://127.0.0.1:{metrics_port}"
        self.config = conf_dir / config_name
        self.config.write_text(text)
        self.stderr_path = work_dir / "fluent-bit.stderr"
        self.stdout_path = work_dir / "fluent-bit.stdout"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HARMONY_", "S3_BATCH_"))}
        full_env.pop("HARMONY_PIPES_STATE_DIR", None)
        # Our console scripts first on PATH, as after `pip install harmony-pipes`.
        full_env["PATH"] = f"{VENV_BIN}{os.pathsep}{full_env.get('PATH', '')}"
        full_env.update(env)
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.config)],
            stdout=self.stdout_path.open("wb"),
            stderr=self.stderr_path.open("wb"),
            env=full_env,
            cwd=work_dir,
        )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stats_lines(self, command: str) -> list[dict]:
        """The final {"stats": ...} lines our commands wrote (their stderr is Fluent Bit's); a
        `harmony-pipes chain` line counts once for each of its stages."""
        found = []
        for line in self.stderr.splitlines():
            start = line.find('{"stats"')
            if start >= 0:
                try:
                    stats = orjson.loads(line[start:])["stats"]
                except orjson.JSONDecodeError:
                    continue
                for one in [stats, *stats.get("stages", ())]:
                    if one.get("command") == command:
                        found.append(one)
        return found

    def wait_until(self, predicate: Callable[[], bool], timeout_secs: float, what: str) -> None:
        def alive() -> None:
            if self.proc.poll() is not None:
                raise AssertionError(f"fluent-bit exited {self.proc.returncode} before {what}:\n{self.tail()}")

        try:
            wait_until(predicate, timeout_secs, what, 0.2, alive=alive)
        except AssertionError as exc:
            if "timed out" in str(exc):
                raise AssertionError(f"timed out after {timeout_secs}s waiting for {what}:\n{self.tail()}") from None
            raise

    def wait_exit(self, timeout_secs: float = 30) -> int:
        try:
            return self.proc.wait(timeout=timeout_secs)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"fluent-bit did not exit within {timeout_secs}s:\n{self.tail()}") from None

    def stop(self, timeout_secs: float = 30) -> int:
        """SIGTERM, as a supervisor would; Fluent Bit flushes its outputs (S3 uploads) and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout_secs)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.stderr.splitlines()[-lines:])

    def __enter__(self) -> FluentBit:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def read_ndjson(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
