"""Fixtures shared by every test: real servers on 127.0.0.1 and a subprocess CLI runner."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
VENV_BIN = Path(sys.executable).parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"
SCHEMAS = REPO_ROOT / "schemas"

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command_path(name: str) -> str:
    """The console script from this venv (never one found elsewhere on PATH)."""
    path = VENV_BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {VENV_BIN}; run `make test` (it installs the project)")
    return str(path)


@dataclass
class CliResult:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def stdout_lines(self) -> list[bytes]:
        return [line for line in self.stdout.split(b"\n") if line]

    @property
    def stats(self) -> dict:
        import orjson

        found = [line for line in self.stderr.splitlines() if line.startswith('{"stats"')]
        assert len(found) == 1, f"expected exactly one stats line, stderr was:\n{self.stderr}"
        return orjson.loads(found[0])["stats"]


def run_cli(
    args: list[str],
    input_bytes: bytes | None = b"",
    env: Mapping[str, str] | None = None,
    timeout_secs: float = 120,
    cwd: str | os.PathLike[str] | None = None,
) -> CliResult:
    """Run one of our commands as a real process: `run_cli(["harmony-alerts", "--all"], data)`."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    full_env.pop("HARMONY_PIPES_STATE_DIR", None)
    if env:
        full_env.update(env)
    argv = [command_path(args[0]), *args[1:]]
    proc = subprocess.run(
        argv,
        input=input_bytes,
        capture_output=True,
        env=full_env,
        timeout=timeout_secs,
        cwd=cwd,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server (S3, EC2, STS, ...) on 127.0.0.1 and a free port; yields its endpoint URL.

    Tests must use unique bucket names / regions (or reset via POST /moto-api/reset) because the
    server is shared across the session within one xdist worker.
    """
    from moto.server import ThreadedMotoServer

    for key, value in AWS_TEST_ENV.items():
        os.environ.setdefault(key, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()  # binds port 0 itself: no gap in which another worker could take the port
    _, port = server.get_host_and_port()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: str) -> dict[str, str]:
    """Environment for a subprocess talking to the moto server with dummy credentials."""
    return {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto_server}


def find_fluent_bit() -> str | None:
    candidate = SHARED_DIR / "tools" / "fluent-bit" / "fluent-bit"
    if candidate.exists() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("fluent-bit")


@pytest.fixture(scope="session")
def fluent_bit_path() -> str:
    path = find_fluent_bit()
    if path is None:
        pytest.skip("Fluent Bit not found at ../shared/tools/fluent-bit/fluent-bit nor on PATH")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers follow folders: everything under tests/integration is `integration`, under
    tests/pipelines `pipeline` (so `-m "not integration"` means what it says)."""
    for item in items:
        parts = item.path.relative_to(REPO_ROOT).parts
        if parts[:2] == ("tests", "integration"):
            item.add_marker(pytest.mark.integration)
        elif parts[:2] == ("tests", "pipelines"):
            item.add_marker(pytest.mark.pipeline)
