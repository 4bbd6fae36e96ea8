"""One keep-alive HTTP/1.1 connection to the gateway (http.client), whose request and answer can be
apart: `send` writes a request, `receive` reads its answer later, so the gateway prepares the next
scroll page while the collector hands on this one — on one thread, without a helper thread
fighting the main one for the GIL.

Why not urllib3 (used before): its pool, request preparation and response wrapper cost about
0.3 ms of CPU per page, as much as writing the page's 100 events (measured against hec-emulator,
1,000 pages of 145 KB: 0.30-0.47 s user CPU with urllib3, 0.15-0.25 s with http.client), and it
cannot keep a request in flight while the caller does something else.

Failures come out as `TransportError`s whose `kind` says what the caller makes of them (the same
split urllib3's exceptions gave: TLS, could not connect, connect timeout, answer timeout, broken
connection, other). After any failure the connection is closed, so the next request opens a new
one. A connection the server closed while idle is noticed before it is reused (as urllib3 did),
so a keep-alive timeout costs a reconnect, never a failed request. Redirects are never followed
(http.client does not). Proxies (HTTPS_PROXY / HTTP_PROXY, NO_PROXY) are honoured: an https
gateway through a CONNECT tunnel, an http one with absolute request URIs; credentials in the proxy
URL (`http://USER:PASSWORD@HOST:PORT`, percent-encoded) are sent as `Proxy-Authorization: Basic`,
as requests does. A proxy URL without a scheme is an http:// one (requests' reading too); an
https:// proxy URL (TLS to the proxy itself) is refused with a clear error.
"""

from __future__ import annotations

import base64
import select
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:  # imported when the first connection is made: `--help` must not pay for them
    import http.client
    import ssl

# what a failure was (the caller maps these to its errors and fixes)
TLS = "tls"
CONNECT = "connect"  # refused, no route, DNS: nothing answered
CONNECT_TIMEOUT = "connect_timeout"
TIMEOUT = "timeout"  # connected, but no (complete) answer in time
BROKEN = "broken"  # reset, closed mid-answer, not HTTP, proxy refused the tunnel
PROXY_AUTH = "proxy_auth"  # the proxy asked for credentials (407): none, or wrong ones
OTHER = "other"
PROXY_AUTH_STATUS = 407


class TransportError(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass
class Answer:
    status: int
    headers: Any  # http.client.HTTPMessage: .get(name) is case-insensitive
    body: bytes


class Ticket:
    """A request written to the connection (or that failed while being written): its answer is
    read with `Connection.receive`, or dropped with `Connection.discard`."""

    __slots__ = ("done", "error", "token")

    def __init__(self, token: str | None, error: TransportError | None = None) -> None:
        self.token = token
        self.error = error
        self.done = False


class Connection:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_secs: float,
        tls_context: ssl.SSLContext | None,
        proxy: str | None,
        headers: dict[str, str],
    ) -> None:
        target = urlsplit(base_url)
        self.scheme = target.scheme
        self.host = target.hostname or ""
        self.port = target.port or (443 if self.scheme == "https" else 80)
        self.path_prefix = target.path.rstrip("/")
        self.timeout_secs = timeout_secs
        self.tls_context = tls_context
        if proxy and "://" not in proxy:
            proxy = "http://" + proxy
        self.proxy = urlsplit(proxy) if proxy else None
        self.proxy_headers = proxy_auth_headers(self.proxy)
        self.headers = headers
        self._conn: http.client.HTTPConnection | None = None
        self._pending: Ticket | None = None
        # an http gateway behind an http proxy is asked with absolute URIs
        origin = f"{self.scheme}://{target.netloc.rsplit('@', 1)[-1]}"
        self._absolute = origin if self.proxy and self.scheme == "http" else ""

    # -- the connection ------------------------------------------------------------------------

    def _new(self) -> http.client.HTTPConnection:
        import http.client

        timeout = self.timeout_secs
        if self.proxy is None:
            if self.scheme == "https":
                return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.tls_context)
            return http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        if self.proxy.scheme == "https":
            raise TransportError(CONNECT, "an https:// proxy URL is not supported; use http://")
        proxy_host, proxy_port = self.proxy.hostname or "", self.proxy.port or 80
        if self.scheme == "https":  # TLS with the gateway inside a CONNECT tunnel
            conn = http.client.HTTPSConnection(proxy_host, proxy_port, timeout=timeout, context=self.tls_context)
            conn.set_tunnel(self.host, self.port, headers=self.proxy_headers)
            return conn
        return http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout)

    def _connected(self) -> http.client.HTTPConnection:
        """The open connection, or a new one (also when the server closed the idle one)."""
        conn = self._conn
        if conn is not None and (conn.sock is None or _dropped(conn.sock)):
            self.close()
            conn = None
        if conn is None:
            conn = self._new()
            try:
                conn.connect()
            except BaseException as exc:
                conn.close()
                error = _connect_failure(exc)
                if error.kind == PROXY_AUTH:
                    error.reason = _proxy_auth_reason(self.proxy_headers)
                raise error from None
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = conn
        return conn

    def close(self) -> None:
        conn, self._conn, self._pending = self._conn, None, None
        if conn is not None:
            conn.close()

    # -- requests ------------------------------------------------------------------------------

    def send(self, path: str, body: bytes, headers: dict[str, str], token: str | None = None) -> Ticket:
        """Write one POST; never raises a `TransportError`: a failure is kept in the ticket and
        raised by `receive`. Only one request is in flight: an unread one is dropped first."""
        if self._pending is not None:
            self.close()
        ticket = Ticket(token)
        try:
            conn = self._connected()
            # http.client adds Host and `Accept-Encoding: identity` (we read bodies as sent)
            conn.putrequest("POST", self._absolute + self.path_prefix + path)
            for name, value in self.headers.items():
                conn.putheader(name, value)
            for name, value in headers.items():
                conn.putheader(name, value)
            if self._absolute:  # the proxy reads this request (a tunnel's got them on CONNECT)
                for name, value in self.proxy_headers.items():
                    conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
        except TransportError as exc:
            ticket.error = exc
        except BaseException as exc:
            self.close()
            ticket.error = _exchange_failure(exc)
            if ticket.error is None:
                raise
        else:
            self._pending = ticket
        return ticket

    def receive(self, ticket: Ticket) -> Answer:
        """The answer to `ticket`'s request; raises its `TransportError`."""
        if ticket.done:
            raise RuntimeError("a ticket's answer is read once")
        ticket.done = True
        if ticket.error is not None:
            raise ticket.error
        if self._pending is not ticket or self._conn is None:
            raise TransportError(BROKEN, "the connection was closed before the answer was read")
        self._pending = None
        conn = self._conn
        try:
            resp = conn.getresponse()
            body = resp.read()
        except BaseException as exc:
            self.close()
            error = _exchange_failure(exc)
            if error is None:
                raise
            raise error from None
        if resp.will_close:
            self.close()
        if resp.status == PROXY_AUTH_STATUS and self._absolute:  # the proxy's answer, not the gateway's
            raise TransportError(PROXY_AUTH, _proxy_auth_reason(self.proxy_headers))
        return Answer(resp.status, resp.headers, body)

    def discard(self, ticket: Ticket) -> None:
        """Wait for the answer nobody will read (the gateway finishes what it was asked), quietly."""
        if ticket.done:
            return
        try:
            self.receive(ticket)
        except Exception:
            pass


def proxy_auth_headers(proxy: Any) -> dict[str, str]:
    """`Proxy-Authorization: Basic ...` from the proxy URL's user and password (none without)."""
    if proxy is None or proxy.username is None:
        return {}
    pair = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
    return {"Proxy-Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}


def _proxy_auth_reason(proxy_headers: dict[str, str]) -> str:
    sent = "with the credentials in the proxy URL" if proxy_headers else "and the proxy URL holds none"
    return f"the proxy asked for credentials (HTTP 407) {sent}"


def _dropped(sock: socket.socket) -> bool:
    """True when an idle keep-alive connection can no longer be used (closed by the server, or
    something unexpected arrived on it). poll, not select: any fd number works."""
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _connect_failure(exc: BaseException) -> TransportError:
    import http.client
    import ssl

    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return TransportError(TLS, _reason(exc))
    if isinstance(exc, TimeoutError | socket.timeout):
        return TransportError(CONNECT_TIMEOUT, "timed out")
    if isinstance(exc, OSError) and str(exc).startswith("Tunnel connection failed"):
        # http.client's text: "Tunnel connection failed: 407 Proxy Authentication Required"
        if str(exc).split(":", 1)[1].split()[:1] == [str(PROXY_AUTH_STATUS)]:
            return TransportError(PROXY_AUTH, "the proxy asked for credentials (HTTP 407)")
        return TransportError(BROKEN, "the proxy refused the tunnel")
    if isinstance(exc, OSError | http.client.HTTPException):
        return TransportError(CONNECT, _reason(exc))
    raise exc


def _exchange_failure(exc: BaseException) -> TransportError | None:
    """A failure while a request was written or its answer read (None: not a network failure)."""
    import http.client
    import ssl

    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return TransportError(TLS, _reason(exc))
    if isinstance(exc, TimeoutError | socket.timeout):
        return TransportError(TIMEOUT, "timed out")
    if isinstance(exc, http.client.HTTPException | ConnectionError):
        return TransportError(BROKEN, _reason(exc))
    if isinstance(exc, OSError):
        return TransportError(OTHER, type(exc).__name__)
    return None


def _reason(exc: BaseException) -> str:
    """A short network reason without URLs' query strings or headers (never secrets)."""
    import http.client

    text = str(exc)
    for marker in (
        "Name or service not known",
        "Connection refused",
        "certificate verify failed",
        "Temporary failure in name resolution",
        "Connection reset",
        "No route to host",
        "timed out",
        "Network is unreachable",
        "nodename nor servname",
    ):
        if marker in text:
            return marker
    if isinstance(exc, ConnectionResetError):
        return "Connection reset"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "Remote end closed connection without response"
    return type(exc).__name__
