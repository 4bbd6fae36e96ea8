"""HTTP/1.1 keep-alive server on 127.0.0.1 around the pure `Emulator` (stdlib only, one thread per connection).

Each response is written with a single `send` (status line, headers and body together) and
Nagle disabled, so keep-alive clients never wait on delayed ACKs.
"""

from __future__ import annotations

import socket
import struct
import time
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harmony_pipes._core.log import Log

from .api import Emulator

HOST = "127.0.0.1"


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(
        self,
        port: int,
        emulator: Emulator,
        delay_secs: float = 0.0,
        log_requests: bool = False,
        log: Log | None = None,
    ) -> None:
        self.emulator = emulator
        self.delay_secs = delay_secs
        self.log_requests = log_requests
        self.log = log or Log("hec-emulator")
        super().__init__((HOST, port), EmulatorHandler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"


class EmulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hec-emulator"
    sys_version = ""
    disable_nagle_algorithm = True
    server: EmulatorServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = self.server.emulator.handle(method, self.path, headers, body)
        if response.reset:  # linger 0: closing sends RST, the client sees "connection reset by peer"
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # now, before socketserver's shutdown(SHUT_WR) could send a FIN
            self.close_connection = True
            return
        if response.delayed and self.server.delay_secs > 0:
            time.sleep(self.server.delay_secs)
        if response.extra_delay_secs > 0:
            time.sleep(response.extra_delay_secs)
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Error"
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Date: {formatdate(usegmt=True)}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
        ]
        lines += [f"{name}: {value}" for name, value in response.headers]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + response.body)
        if self.server.log_requests:
            self.server.log.info(f"{method} {self.path} {response.status} {len(response.body)}")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet by default: the request log (`--log-requests`) is written by `_serve`."""
