"""harmony-events' HTTP connection against gateways that behave like real ones and unlike
hec-emulator: one that closes a keep-alive connection once it has been idle a moment, one that
answers in chunks (Transfer-Encoding: chunked), one behind TLS with a certificate of its own CA,
and a proxy (HTTP_PROXY forwarding, HTTPS_PROXY tunnelling with CONNECT), with or without
credentials. Each is a small relay on 127.0.0.1 in front of a real
hec-emulator, and harmony-events runs as a real process.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import command_path, run_cli
from tests.helpers.emulator import start_emulator
from tests.helpers.events import collector_env, ids_of, make_events, write_events
from tests.helpers.logs import error_lines
from tests.helpers.sockets import pump

pytestmark = pytest.mark.integration

NO_PROXY_ENV = {
    "HTTP_PROXY": "",
    "http_proxy": "",
    "HTTPS_PROXY": "",
    "https_proxy": "",
    "NO_PROXY": "",
    "no_proxy": "",
    "ALL_PROXY": "",
    "all_proxy": "",
}
FORWARDED = ("Authorization", "Content-Type", "Accept", "x-av-req-id")


class Relay:
    """Forwards every POST to `upstream` (also when asked with an absolute URI, as a proxy is).
    `idle_close_secs`: a keep-alive connection idle that long is closed without notice (as a load
    balancer's idle timeout does). `chunked`: answers are sent in 4 KiB chunks. `tls`: (cert,
    key) PEM files: the relay speaks https. `proxy_login`: (user, password) a proxy asks for
    (407 without them). As a proxy it also tunnels CONNECT to any 127.0.0.1 port."""

    def __init__(
        self,
        upstream: str,
        *,
        idle_close_secs: float | None = None,
        chunked: bool = False,
        tls: tuple[Path, Path] | None = None,
        proxy_login: tuple[str, str] | None = None,
    ) -> None:
        self.connections = 0
        self.targets: list[str] = []
        self.header_names: set[str] = set()
        self.refused = 0
        expected_auth = None
        if proxy_login is not None:
            expected_auth = "Basic " + base64.b64encode(":".join(proxy_login).encode()).decode()
        target = urlsplit(upstream)
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = idle_close_secs

            def setup(self) -> None:
                relay.connections += 1
                super().setup()

            def log_message(self, *args) -> None:
                pass

            def log_error(self, *args) -> None:
                pass

            def _login_refused(self) -> bool:
                relay.header_names.update(name.lower() for name in self.headers)
                if expected_auth is None or self.headers.get("Proxy-Authorization") == expected_auth:
                    return False
                relay.refused += 1
                self.send_response(407)
                self.send_header("Proxy-Authenticate", 'Basic realm="test"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True

            def do_CONNECT(self) -> None:
                relay.targets.append("CONNECT " + self.path)
                if self._login_refused():
                    return
                host, port = self.path.rsplit(":", 1)
                assert host == "127.0.0.1", host  # network traffic stays on this host
                upstream_sock = socket.create_connection((host, int(port)), timeout=30)
                self.send_response(200)
                self.end_headers()
                self.wfile.flush()

                back = threading.Thread(target=pump, args=(upstream_sock, self.connection), daemon=True)
                back.start()
                pump(self.connection, upstream_sock)
                back.join(timeout=30)
                upstream_sock.close()
                self.close_connection = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self._login_refused():
                    return
                relay.targets.append(self.path)
                upstream_conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {name: self.headers[name] for name in FORWARDED if self.headers.get(name)}
                upstream_conn.request("POST", urlsplit(self.path).path, body=body, headers=headers)
                answer = upstream_conn.getresponse()
                payload = answer.read()
                upstream_conn.close()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
                if not chunked:
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for at in range(0, len(payload), 4096):
                    piece = payload[at : at + 4096]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def relaying(upstream: str, **options) -> Iterator[Relay]:
    relay = Relay(upstream, **options)
    try:
        yield relay
    finally:
        relay.close()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (a private CA's, as far as we know)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "gateway.pem", folder / "gateway.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture
def tenant(tmp_path: Path) -> Path:
    return write_events(tmp_path / "events.ndjson", make_events(700, span_secs=1800, seed=11))


def stats_of(stderr: bytes) -> dict:
    lines = [line for line in stderr.splitlines() if line.startswith(b'{"stats"')]
    assert len(lines) == 1, stderr.decode()
    return orjson.loads(lines[0])["stats"]


def test_a_gateway_closing_idle_connections_costs_a_reconnect_not_a_retry(tenant, tmp_path) -> None:
    """Between two cycles the connection idles longer than the gateway keeps it: the next cycle
    notices the close and connects again, instead of sending into a dead connection (a failed
    request, a backoff, and mid-scroll a restarted window)."""
    with (
        start_emulator("--events", str(tenant), "--page-size", "100") as emu,
        relaying(emu.url, idle_close_secs=0.2) as relay,
    ):
        out = tmp_path / "out.ndjson"
        with out.open("wb") as sink:  # (a pipe nobody reads would fill and stop the collector)
            proc = subprocess.Popen(
                [command_path("harmony-events"), "--start", "2h", "--interval-secs", "0.6"],
                env={**os.environ, **collector_env(relay.url), **NO_PROXY_ENV},
                stdout=sink,
                stderr=subprocess.PIPE,
            )
            time.sleep(3.0)
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
        stdout = out.read_bytes()
    assert proc.returncode == 0, stderr.decode()
    stats = stats_of(stderr)
    assert stats["cycles"] >= 2, stats
    assert relay.connections >= stats["cycles"]  # the gateway did close the idle connections
    assert stats["retries"] == 0 and stats["scroll_restarts"] == 0, stats
    assert sorted(ids_of(stdout)) == sorted(e["eventId"] for e in make_events(700, span_secs=1800, seed=11))


@pytest.mark.parametrize("via", ["chunked answers", "forward proxy"])
def test_chunked_answers_and_a_forward_proxy_give_the_same_bytes(tenant, via) -> None:
    args = ["harmony-events", "--once", "--start", "2h", "--window-secs", "600"]
    with start_emulator("--events", str(tenant), "--page-size", "50") as emu:
        direct = run_cli(args, env={**collector_env(emu.url), **NO_PROXY_ENV})
        if via == "chunked answers":
            with relaying(emu.url, chunked=True) as relay:
                relayed = run_cli(args, env={**collector_env(relay.url), **NO_PROXY_ENV})
            assert all(target.startswith("/") for target in relay.targets)
        else:
            with relaying(emu.url) as relay:
                proxy = {"HTTP_PROXY": relay.url, "http_proxy": relay.url}
                relayed = run_cli(args, env={**collector_env(emu.url), **NO_PROXY_ENV, **proxy})
            # a proxy is asked with absolute URIs naming the gateway
            assert relay.targets and all(target.startswith(emu.url + "/") for target in relay.targets)
    assert direct.returncode == 0 and relayed.returncode == 0, relayed.stderr
    assert len(direct.stdout_lines) == 700
    assert relayed.stdout == direct.stdout
    assert relayed.stats["retries"] == 0


def test_tls_is_verified_against_the_ca_bundle_or_not_at_all_with_insecure(tenant, tmp_path) -> None:
    """A gateway whose certificate no known CA signed: refused (exit 4, the fix named) unless
    REQUESTS_CA_BUNDLE holds its CA, or --insecure is given; then the same bytes as over http."""
    cert, key = self_signed(tmp_path)
    args = ["harmony-events", "--once", "--start", "2h", "--max-retries", "1"]
    with (
        start_emulator("--events", str(tenant), "--page-size", "100") as emu,
        relaying(emu.url, tls=(cert, key)) as relay,
    ):
        plain = run_cli(args, env={**collector_env(emu.url), **NO_PROXY_ENV})
        base = {**collector_env(relay.url), **NO_PROXY_ENV, "REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""}
        refused = run_cli(args, env=base)
        trusted = run_cli(args, env={**base, "REQUESTS_CA_BUNDLE": str(cert)})
        insecure = run_cli([*args, "--insecure"], env=base)
    assert plain.returncode == 0 and len(plain.stdout_lines) == 700, plain.stderr
    assert refused.returncode == 4, refused.stderr
    lines = error_lines(refused.stderr)
    assert len(lines) == 1 and "TLS verification" in lines[0] and "certificate verify failed" in lines[0]
    assert "REQUESTS_CA_BUNDLE" in lines[0] and not refused.stdout
    assert trusted.returncode == 0 and trusted.stdout == plain.stdout, trusted.stderr
    assert insecure.returncode == 0 and insecure.stdout == plain.stdout, insecure.stderr
    assert "NOT verified" in insecure.stderr


PROXY_USER, PROXY_PASSWORD = "svc-harmony", "p@ss:w/rd%secret"
PROXY_PASSWORD_IN_URL = "p%40ss%3Aw%2Frd%25secret"  # the same password, percent-encoded


@pytest.mark.parametrize("gateway", ["http", "https"])
def test_a_proxy_that_asks_for_credentials_gets_those_of_its_url(tenant, tmp_path, gateway) -> None:
    """HTTP_PROXY (an http gateway, absolute URIs) and HTTPS_PROXY (an https one, CONNECT tunnel),
    or ALL_PROXY for either,
    with `USER:PASSWORD@` in the URL: the proxy gets them as Proxy-Authorization, the gateway never
    does, and the bytes are those of a direct run. Without them, or with a wrong password: exit 3,
    one error line naming the fix, no retries, and the password in no output."""
    args = ["harmony-events", "--once", "--start", "2h", "--max-retries", "2"]
    with start_emulator("--events", str(tenant), "--page-size", "100") as emu:
        direct = run_cli(args, env={**collector_env(emu.url), **NO_PROXY_ENV})
        with (
            relaying(emu.url, tls=self_signed(tmp_path) if gateway == "https" else None) as target,
            relaying(emu.url, proxy_login=(PROXY_USER, PROXY_PASSWORD)) as proxy,
        ):
            env = {**collector_env(target.url), **NO_PROXY_ENV}
            if gateway == "https":
                env["REQUESTS_CA_BUNDLE"] = str(tmp_path / "gateway.pem")
            name = f"{gateway.upper()}_PROXY"
            proxy_host = proxy.url.split("://", 1)[1]

            def via(url: str):
                return run_cli(args, env={**env, name: url, name.lower(): url})

            logged_in = via(f"http://{PROXY_USER}:{PROXY_PASSWORD_IN_URL}@{proxy_host}")
            through_proxy = len(proxy.targets)
            everything = f"http://{PROXY_USER}:{PROXY_PASSWORD_IN_URL}@{proxy_host}"
            all_proxy = run_cli(args, env={**env, "ALL_PROXY": everything, "all_proxy": everything})
            all_proxy_requests = len(proxy.targets) - through_proxy
            tunnels = [t for t in proxy.targets if t.startswith("CONNECT ")]
            refused_before = proxy.refused
            anonymous = via(proxy.url)
            wrong = via(f"{PROXY_USER}:wrong-{PROXY_PASSWORD_IN_URL}@{proxy_host}")  # no scheme: http://
    assert direct.returncode == 0 and len(direct.stdout_lines) == 700, direct.stderr
    assert logged_in.returncode == 0, logged_in.stderr
    assert logged_in.stdout == direct.stdout and logged_in.stats["retries"] == 0
    assert all_proxy.returncode == 0 and all_proxy.stdout == direct.stdout, all_proxy.stderr
    assert all_proxy_requests > 0  # ALL_PROXY: through the proxy, the same bytes
    assert refused_before == 0
    if gateway == "https":  # one tunnel per connection, to the gateway named in the URL
        assert tunnels and all(t == "CONNECT " + target.url.split("://", 1)[1] for t in tunnels)
    else:
        assert tunnels == [] and all(t.startswith(target.url + "/") for t in proxy.targets)
    assert "proxy-authorization" not in target.header_names  # only the proxy gets the credentials
    assert proxy.refused == 2  # each refused run asked once: a 407 is not retried
    for refused, sent in (
        (anonymous, "and the proxy URL holds none"),
        (wrong, "with the credentials in the proxy URL"),
    ):
        assert refused.returncode == 3, refused.stderr
        lines = error_lines(refused.stderr)
        assert len(lines) == 1, refused.stderr
        assert f"proxy asked for credentials (HTTP 407) {sent}" in lines[0]
        assert "http://USER:PASSWORD@HOST:PORT" in lines[0] and not refused.stdout
    for run in (logged_in, all_proxy, anonymous, wrong):
        for secret in (PROXY_PASSWORD, PROXY_PASSWORD_IN_URL, "wrong-"):
            assert secret not in run.stderr
