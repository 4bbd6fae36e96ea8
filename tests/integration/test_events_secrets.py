"""Issue 11, case 3: harmony-events never prints, sends elsewhere or stores a secret.

Hostile gateways are tiny HTTP servers on 127.0.0.1 (a real socket, a real harmony-events
process): one answers 400 with a message that echoes the request body (the access key in it),
one answers 307 to a second server on another port (another origin). A password in the
--base-url userinfo is refused before it is printed or stored; a cursor file an older version
wrote with it is cleaned on the next save.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from harmony_pipes.harmony_events.cursor import FORMAT_VERSION, STATE_FILE
from tests.conftest import run_cli
from tests.helpers.emulator import start_emulator
from tests.helpers.events import ACCESS_KEY, CLIENT_ID, collector_env
from tests.helpers.logs import error_lines

pytestmark = pytest.mark.integration

# a key whose JSON text differs from the key itself ('/' may be sent as '\/', '"' as '\"')
ODD_KEY = 'k3y/with"quote-and-slash-0123456789'


class Recorder:
    """A local HTTP server that answers every POST with `reply(handler, body)` and keeps the
    bodies it received (so a test can prove a secret never reached it)."""

    def __init__(self, reply) -> None:
        self.bodies: list[bytes] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.bodies.append(body)
                status, headers, payload = reply(self.path, body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def serving(reply) -> Iterator[Recorder]:
    server = Recorder(reply)
    try:
        yield server
    finally:
        server.close()


def echo_400(path: str, body: bytes) -> tuple[int, dict, bytes]:
    """A gateway that says what it did not like, quoting the request body in several ways."""
    text = body.decode()
    message = {"message": f"Invalid request body: {text}", "detail": text, "error": text}
    return 400, {"Content-Type": "application/json"}, orjson.dumps(message)


def events_env(url: str, key: str, **extra: str) -> dict[str, str]:
    return {**collector_env(url), "HARMONY_ACCESS_KEY": key, "HARMONY_MAX_RETRIES": "1", **extra}


def json_forms(key: str) -> list[str]:
    return [key, orjson.dumps(key).decode()[1:-1], key.replace("/", "\\/"), key[:12]]


@pytest.mark.parametrize("key", [ACCESS_KEY, ODD_KEY])
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_400_echoing_the_access_key_is_redacted(tmp_path: Path, key: str, log_format: str) -> None:
    with serving(echo_400) as server:
        env = events_env(server.url, key, HARMONY_PIPES_LOG_FORMAT=log_format)
        result = run_cli(["harmony-events", "--once", "--state-dir", str(tmp_path / "st")], env=env)
        probe = run_cli(["harmony-events", "test"], env=env)
    assert orjson.dumps(key)[1:-1] in server.bodies[0], "the server really got (and echoed) the key"
    assert result.returncode == 2, result.stderr
    assert probe.returncode == 2, probe.stderr
    for output in (result.stderr, probe.stderr, probe.stdout.decode()):
        for form in json_forms(key):
            assert form not in output, output
    assert "<redacted>" in result.stderr and "Invalid request body" in result.stderr
    for path in (tmp_path / "st").rglob("*"):
        assert key[:12].encode() not in path.read_bytes()


def test_a_redirect_to_another_origin_never_gets_the_access_key(tmp_path: Path) -> None:
    with serving(lambda path, body: (200, {}, b"{}")) as elsewhere:
        target = elsewhere.url + "/auth/external"
        with serving(lambda path, body: (307, {"Location": target}, b"")) as gateway:
            env = events_env(gateway.url, ACCESS_KEY)
            result = run_cli(["harmony-events", "--once", "--state-dir", str(tmp_path / "st")], env=env)
            probe = run_cli(["harmony-events", "test"], env=env)
    assert len(gateway.bodies) == 2 and ACCESS_KEY.encode() in gateway.bodies[0]
    assert elsewhere.bodies == [], "the credentials were re-sent to another origin"
    for run in (result, probe):
        assert run.returncode == 4, run.stderr
        lines = error_lines(run.stderr)
        assert len(lines) == 1 and "redirect" in lines[0] and elsewhere.url in lines[0], run.stderr
        assert ACCESS_KEY not in run.stderr + run.stdout.decode()


def test_a_same_origin_redirect_is_not_followed_either(tmp_path: Path) -> None:
    with serving(lambda path, body: (308, {"Location": "/v2" + path}, b"")) as gateway:
        result = run_cli(["harmony-events", "--once"], env=events_env(gateway.url, ACCESS_KEY))
    assert len(gateway.bodies) == 1
    assert result.returncode == 4 and "does not follow redirects" in result.stderr


@pytest.mark.parametrize(
    "url",
    ["http://user:pa55word-Secret@127.0.0.1:9/", "https://:pa55word-Secret@gw.example", "ftp://u:pa55word-Secret@h"],
)
def test_userinfo_in_the_base_url_is_refused_without_printing_it(tmp_path: Path, url: str) -> None:
    state = tmp_path / "st"
    for argv in (["harmony-events", "--once", "--state-dir", str(state)], ["harmony-events", "test"]):
        result = run_cli([*argv, "--base-url", url], env=events_env("", ACCESS_KEY))
        assert result.returncode == 2, result.stderr
        lines = error_lines(result.stderr)
        assert len(lines) == 1 and "pa55word-Secret" not in result.stderr + result.stdout.decode(), result.stderr
    assert not (state / STATE_FILE).exists()


def test_a_cursor_an_older_version_stored_with_a_password_is_cleaned(tmp_path: Path) -> None:
    with start_emulator("--generate", "5", "--seed", "3") as emu:
        state = tmp_path / "st"
        state.mkdir(mode=0o700)
        host = emu.url.removeprefix("http://")
        now_us = time.time_ns() // 1000
        old = {
            "format_version": FORMAT_VERSION,
            "data": {
                "cursor_us": now_us - 600_000_000,
                "origin_us": now_us - 600_000_000,
                "source": f"http://admin:pa55word-Secret@{host} {CLIENT_ID}",
                "seen": {},
            },
        }
        (state / STATE_FILE).write_bytes(orjson.dumps(old))
        result = run_cli(["harmony-events", "--once", "--state-dir", str(state)], env=collector_env(emu.url))
    assert result.returncode == 0, result.stderr
    saved = (state / STATE_FILE).read_bytes()
    assert b"pa55word-Secret" not in saved and b"admin@" not in saved
    assert orjson.loads(saved)["data"]["source"] == f"{emu.url} {CLIENT_ID}"
    assert "pa55word-Secret" not in result.stderr
