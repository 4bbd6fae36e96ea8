"""harmony-events as a real process, for what needs no emulator: config errors, unreachable, TLS."""

from __future__ import annotations

import http.server
import os
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, run_cli
from tests.helpers.events import ACCESS_KEY, CLIENT_ID
from tests.helpers.logs import error_lines


def test_help_lists_options_with_env_vars_and_is_fast():
    started = time.monotonic()
    result = run_cli(["harmony-events", "--help"])
    assert result.returncode == 0
    assert time.monotonic() - started < 3
    text = result.stdout.decode()
    for env in (
        "HARMONY_BASE_URL",
        "HARMONY_CLIENT_ID",
        "HARMONY_REGION",
        "HARMONY_ACCESS_KEY_FILE",
        "HARMONY_WINDOW_SECS",
        "HARMONY_OVERLAP_SECS",
        "HARMONY_PIPES_STATE_DIR",
        "HARMONY_INSECURE",
    ):
        assert env in text
    assert "--access-key " not in text  # the key is never an argv option
    test_help = run_cli(["harmony-events", "test", "--help"])
    assert test_help.returncode == 0 and b"tiny query" in test_help.stdout


def test_help_does_not_import_requests():
    code = (
        "import sys; from harmony_pipes.harmony_events import cli; "
        "assert 'requests' not in sys.modules, 'requests imported at start-up'"
    )
    subprocess.run([os.sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("env", "args", "needle"),
    [
        ({"HARMONY_ACCESS_KEY": ACCESS_KEY}, [], "no client id"),
        ({"HARMONY_CLIENT_ID": CLIENT_ID}, [], "no access key"),
        ({"HARMONY_CLIENT_ID": CLIENT_ID, "HARMONY_ACCESS_KEY": "k"}, ["--start", "yesterday"], "not a time"),
        (
            {"HARMONY_CLIENT_ID": CLIENT_ID, "HARMONY_ACCESS_KEY": "k"},
            ["--region", "eu", "--base-url", "https://x"],
            "both a base URL and --region",
        ),
        (
            {"HARMONY_CLIENT_ID": CLIENT_ID, "HARMONY_ACCESS_KEY": "k"},
            ["--states", "bogus"],
            "unknown --states",
        ),
    ],
)
def test_configuration_errors_exit_2_with_one_line(env, args, needle):
    result = run_cli(["harmony-events", "--once", *args], env={"HARMONY_ACCESS_KEY": "", **env})
    assert result.returncode == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and needle in lines[0] and " — " in lines[0]


def test_unreachable_url_exits_4_without_leaking_the_key(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    env = {"HARMONY_CLIENT_ID": CLIENT_ID, "HARMONY_ACCESS_KEY": ACCESS_KEY}
    for argv in (
        ["harmony-events", "--once", "--base-url", url, "--state-dir", str(tmp_path / "st")],
        ["harmony-events", "test", "--base-url", url],
    ):
        result = run_cli(argv, env=env)
        assert result.returncode == 4, result.stderr
        lines = error_lines(result.stderr)
        assert len(lines) == 1 and "cannot reach" in lines[0] and "--base-url" in lines[0]
        assert ACCESS_KEY not in result.stderr and ACCESS_KEY.encode() not in result.stdout
    for path in (tmp_path / "st").rglob("*"):
        assert ACCESS_KEY.encode() not in path.read_bytes()


def test_access_key_file_is_read(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(ACCESS_KEY + "\n")
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli(
        ["harmony-events", "--once", "--base-url", url, "--access-key-file", str(key_file)],
        env={"HARMONY_CLIENT_ID": CLIENT_ID, "HARMONY_ACCESS_KEY": ""},
    )
    assert result.returncode == 4  # got as far as the network: the key was accepted from the file


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server with a self-signed certificate that answers 404 to everything."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_tls_failure_says_ca_or_insecure_and_insecure_warns(tls_server: str):
    env = {"HARMONY_CLIENT_ID": CLIENT_ID, "HARMONY_ACCESS_KEY": ACCESS_KEY}
    result = run_cli(["harmony-events", "test", "--base-url", tls_server], env=env)
    assert result.returncode == 4
    (line,) = error_lines(result.stderr)
    assert "TLS" in line and "--insecure" in line and "CA" in line
    insecure = run_cli(["harmony-events", "--once", "--insecure", "--base-url", tls_server], env=env)
    assert "--insecure" in insecure.stderr and "NOT verified" in insecure.stderr
    assert insecure.returncode == 4  # TLS passed; the double answers 404 = wrong base URL
    (line,) = error_lines(insecure.stderr)
    assert "404" in line and "--region" in line


def test_state_dir_files_are_private(tmp_path: Path):
    url = f"http://127.0.0.1:{free_port()}"
    run_cli(
        ["harmony-events", "--once", "--base-url", url, "--state-dir", str(tmp_path / "st")],
        env={"HARMONY_CLIENT_ID": CLIENT_ID, "HARMONY_ACCESS_KEY": ACCESS_KEY},
    )
    assert (tmp_path / "st").stat().st_mode & 0o777 == 0o700
