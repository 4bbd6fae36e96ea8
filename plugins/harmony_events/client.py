"""HTTP client for the HEC Smart API: token lifecycle, retries, and the event query call.

One keep-alive connection (transport.py: http.client, imported when it is first needed, so
`--help` stays fast). A query can be written before its answer is wanted (`start_query`): the
collector sends the next scroll page's request, hands on this page's events, then reads the
answer. The token from `POST /auth/external` is reused until shortly before `expiresIn`; a 401 on
an API call refreshes it and retries that request once, also in the middle of a scroll. 429, 5xx,
timeouts and resets back off with full jitter, honouring Retry-After (seconds or HTTP date). Every
request carries a fresh `x-av-req-id`. The access key is only ever put in the token request body.

Secrets: redirects are never followed (a client that follows a 307/308 re-POSTs the token
request body, access key included, to wherever it points; the gateway does not redirect API calls), and every
answer is scrubbed of the access key before it is parsed, so a gateway that echoes the request
body in an error message ("Invalid request body: {...accessKey...}") cannot make us print it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import orjson

from harmony_pipes._core.errors import AuthError, RetriableError, UnreachableError
from harmony_pipes._core.retry import Backoff, parse_retry_after
from harmony_pipes._core.stats import Stats

from .classify import (
    FIX_CREDENTIALS,
    FIX_NETWORK,
    FIX_PROXY_AUTH,
    FIX_TLS,
    ScrollInterrupted,
    TokenRejected,
    api_failure,
    auth_failure,
    envelope_failure,
    retries_exhausted,
)
from .page import decode_page
from .transport import BROKEN, CONNECT, CONNECT_TIMEOUT, PROXY_AUTH, TIMEOUT, TLS, Connection, Ticket, TransportError

AUTH_PATH = "/auth/external"
API_PREFIX = "/app/hec-api/v1.0"
QUERY_PATH = f"{API_PREFIX}/event/query"
DEFAULT_TOKEN_TTL_SECS = 25 * 60  # when the answer has neither expiresIn nor expires
MAX_REFRESH_MARGIN_SECS = 60.0
REDACTED = b"<redacted>"
# a key this short could match ordinary text of a 200 page (events); only error answers are scrubbed
MIN_SCRUB_ALWAYS_CHARS = 8
if TYPE_CHECKING:
    import ssl

FIX_REDIRECT = (
    "point --base-url (HARMONY_BASE_URL) at the gateway itself, e.g. the redirect's target if you "
    "trust it; harmony-events does not follow redirects, so credentials never go anywhere else"
)


def secret_forms(secret: str, levels: int = 3) -> tuple[bytes, ...]:
    """The byte sequences `secret` can appear as in an HTTP answer: as is, and JSON-escaped once
    or more (a server that quotes the request body inside a JSON message escapes it twice), with
    and without `/` escaped as `\\/`. Longest first, so a longer form is replaced whole."""
    forms: set[bytes] = set()
    current = secret.encode()
    for _ in range(levels + 1):
        forms.update({current, current.replace(b"/", b"\\/")})
        current = orjson.dumps(current.decode())[1:-1]
    return tuple(sorted((f for f in forms if f), key=len, reverse=True))


class Stopped(Exception):
    """A stop signal arrived while waiting to retry."""


class HecClient:
    def __init__(
        self,
        base_url: str,
        client_id: str,
        access_key: str,
        *,
        timeout_secs: float = 30.0,
        verify_tls: bool = True,
        backoff: Backoff | None = None,
        stats: Stats | None = None,
        sleep: Callable[[float], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_retry: Callable[[str, float], None] | None = None,
    ) -> None:
        import urllib.request  # lazily, like ssl and certifi: `--help` must not pay for them

        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._access_key = access_key
        self._secret_forms = secret_forms(access_key)
        self._scrub_always = len(access_key) >= MIN_SCRUB_ALWAYS_CHARS
        self.timeout_secs = timeout_secs
        self.backoff = backoff or Backoff()
        self.stats = stats
        self._sleep = sleep or _plain_sleep
        self.clock = clock
        self.wall_clock = wall_clock
        self.on_retry = on_retry
        # the environment (HTTPS_PROXY / ALL_PROXY / NO_PROXY, REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, as requests
        # reads them) read once here, not per request
        self.verify_tls = verify_tls
        scheme, _, rest = self.base_url.partition("://")
        host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
        proxies = {} if urllib.request.proxy_bypass(host) else urllib.request.getproxies()
        proxy = proxies.get(scheme) or proxies.get("all")  # ALL_PROXY too, as requests reads it
        self.conn = Connection(
            self.base_url,
            timeout_secs=timeout_secs,
            tls_context=_tls_context(verify_tls) if scheme == "https" else None,
            proxy=proxy or None,
            headers={
                "Accept": "application/json",
                "User-Agent": "harmony-pipes/harmony-events",
                "Content-Type": "application/json",
            },
        )
        self._token: str | None = None
        self._token_renew_at = 0.0
        self.token_ttl_secs: float | None = None
        self.auth_count = 0
        self.reached = False  # any HTTP answer yet: connection failures before it mean a wrong URL

    def __repr__(self) -> str:  # never show the key
        return f"HecClient(base_url={self.base_url!r}, client_id={self.client_id!r})"

    def _count(self, name: str) -> None:
        if self.stats is not None:
            self.stats.add(name)

    # -- transport -----------------------------------------------------------------------------

    def _send(
        self, path: str, body: dict[str, Any], token: str | None, decode: Callable[[bytes], Any] | None = None
    ) -> tuple[int, Any, Any]:
        """POST `body`; (status, parsed JSON or None, headers). Network failures become errors.
        `decode` parses a 200 answer's body (default: orjson)."""
        return self._receive(self._request(path, body, token), path, decode)

    def _request(self, path: str, body: dict[str, Any], token: str | None) -> Ticket:
        """Write one POST (its failure, if any, is raised when its answer is read)."""
        headers = {"x-av-req-id": str(uuid.uuid4())}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self._count("requests")
        return self.conn.send(path, orjson.dumps(body), headers, token)

    def _receive(self, ticket: Ticket, path: str, decode: Callable[[bytes], Any] | None) -> tuple[int, Any, Any]:
        url = self.base_url + path
        try:
            answer = self.conn.receive(ticket)
        except TransportError as exc:
            raise self._network_failure(exc, url) from None
        self.reached = True
        status = answer.status
        content = answer.body
        if status == 429:
            self._count("rate_limited")
        if 300 <= status < 400:
            raise UnreachableError(
                f"{url} answered HTTP {status} redirecting to {_origin_of(url, answer.headers)}; "
                "harmony-events does not follow redirects",
                FIX_REDIRECT,
            )
        if content and (self._scrub_always or status != 200):
            for form in self._secret_forms:
                if form in content:
                    content = content.replace(form, REDACTED)
        if decode is not None and status == 200 and content:
            return status, decode(content), answer.headers
        try:
            parsed = orjson.loads(content) if content else None
        except orjson.JSONDecodeError:
            parsed = None
        return status, parsed, answer.headers

    def _network_failure(self, exc: TransportError, url: str) -> Exception:
        """What a failed exchange means: TLS and, before any answer, an unreachable URL are
        fatal (exit 4); the rest is retried."""
        if exc.kind == TLS:
            return UnreachableError(f"TLS verification of {self.base_url} failed ({exc.reason})", FIX_TLS)
        if exc.kind == PROXY_AUTH:  # never retried: the same credentials get the same answer
            return AuthError(f"cannot reach {self.base_url}: {exc.reason}", FIX_PROXY_AUTH)
        if exc.kind == CONNECT:
            if not self.reached:
                return UnreachableError(f"cannot reach {self.base_url} ({exc.reason})", FIX_NETWORK)
            return RetriableError(f"connection to {self.base_url} failed ({exc.reason})")
        if exc.kind in (CONNECT_TIMEOUT, BROKEN):
            return RetriableError(f"connection to {self.base_url} failed ({exc.reason})")
        if exc.kind == TIMEOUT:
            return RetriableError(f"no answer from {url} within {self.timeout_secs:g} s")
        return RetriableError(f"request to {url} failed ({exc.reason})")

    def _retry_after(self, headers: Any) -> float | None:
        return parse_retry_after(headers.get("Retry-After"), self.wall_clock())

    def _with_retries(self, what: str, attempt_fn: Callable[[], Any], resend_safe: bool = True) -> Any:
        """`attempt_fn` until it succeeds, backing off between tries. When re-sending is not safe
        (a scroll page), only failures the server refused unprocessed are retried in place; after
        any other the backoff is still slept, then `ScrollInterrupted` restarts the window."""
        attempt = 0
        while True:
            try:
                return attempt_fn()
            except RetriableError as exc:
                delay = self.backoff.delay_secs(attempt, exc.retry_after_secs)
                if delay is None:
                    raise retries_exhausted(what, attempt + 1, exc.message) from None
                self._count("retries")
                if self.on_retry is not None:
                    self.on_retry(exc.message, delay)
                if not self._sleep(delay):
                    raise Stopped() from None
                if not resend_safe and not exc.unprocessed:
                    raise ScrollInterrupted(exc.message) from None
                attempt += 1

    # -- token ---------------------------------------------------------------------------------

    def token(self) -> str:
        """A valid token: the cached one until shortly before expiry, else a new one."""
        if self._token is not None and self.clock() < self._token_renew_at:
            return self._token
        return self._authenticate()

    def invalidate_token(self) -> None:
        self._token = None
        self._token_renew_at = 0.0

    def _authenticate(self) -> str:
        url = self.base_url + AUTH_PATH

        def attempt() -> str:
            issued_at = self.clock()
            status, body, headers = self._send(
                AUTH_PATH, {"clientId": self.client_id, "accessKey": self._access_key}, None
            )
            if status != 200:
                failure = auth_failure(status, body, url)
                if isinstance(failure, RetriableError):
                    failure.retry_after_secs = self._retry_after(headers)
                raise failure
            data = body.get("data") if isinstance(body, dict) else None
            token = data.get("token") if isinstance(data, dict) else None
            if not isinstance(token, str) or not token or (isinstance(body, dict) and body.get("success") is False):
                raise AuthError(f"{url} answered 200 without a token", FIX_CREDENTIALS)
            ttl = self._ttl_secs(data)
            self.token_ttl_secs = ttl
            self._token_renew_at = issued_at + ttl - min(MAX_REFRESH_MARGIN_SECS, ttl * 0.1)
            return token

        token = self._with_retries("authentication", attempt)
        self.auth_count += 1
        if self.auth_count > 1:
            self._count("token_refreshes")
        self._token = token
        return token

    def _ttl_secs(self, data: dict[str, Any]) -> float:
        expires_in = data.get("expiresIn")
        if isinstance(expires_in, int | float) and expires_in > 0:
            return float(expires_in)
        expires = data.get("expires")
        if isinstance(expires, str):
            try:
                return max(1.0, parsedate_to_datetime(expires).timestamp() - self.wall_clock())
            except (TypeError, ValueError, IndexError):
                pass
        return float(DEFAULT_TOKEN_TTL_SECS)

    # -- API calls -----------------------------------------------------------------------------

    def call(
        self,
        path: str,
        body: dict[str, Any],
        what: str,
        resend_safe: bool = True,
        decode: Callable[[bytes], Any] | None = None,
        sent: Ticket | None = None,
    ) -> dict[str, Any]:
        """POST to an API path with retries and one token refresh on 401; the parsed envelope.
        `sent`: the request was written already (`start_query`): its answer is the first attempt's.

        Raises `InvalidScroll` for a stale scroll id, `ScrollInterrupted` when a request that is
        not `resend_safe` may have been acted on without an answer, `PipesError`s for fatal ones.
        A 401 is always safe to repeat: the token is checked before anything else happens.
        """
        url = self.base_url + path
        refreshed = False
        while True:
            token = sent.token if sent is not None and sent.token is not None else self.token()

            def attempt(token: str = token) -> dict[str, Any]:
                nonlocal sent
                if sent is not None:
                    ticket, sent = sent, None
                else:
                    ticket = self._request(path, body, token)
                status, parsed, headers = self._receive(ticket, path, decode)
                failure = api_failure(status, parsed, url) if status != 200 else envelope_failure(parsed, url)
                if failure is None:
                    return parsed
                if isinstance(failure, RetriableError):
                    failure.retry_after_secs = self._retry_after(headers)
                raise failure

            try:
                return self._with_retries(what, attempt, resend_safe)
            except TokenRejected as exc:
                if refreshed:
                    raise AuthError(f"Harmony rejected a fresh token on {path} ({exc})", FIX_CREDENTIALS) from None
                refreshed = True
                self.invalidate_token()
            finally:
                if sent is not None:  # (a stop before the first attempt read it)
                    self.conn.discard(sent)
                    sent = None

    def start_query(self, body: dict[str, Any]) -> Ticket | None:
        """Write an event query now, its answer read later by `query_events(body, sent=...)`,
        so the gateway works on it meanwhile. Only with the token in hand (None otherwise: then
        `query_events` does it all, authentication included, when the answer is wanted)."""
        if self._token is None or self.clock() >= self._token_renew_at:
            return None
        return self._request(QUERY_PATH, body, self._token)

    def discard(self, ticket: Ticket) -> None:
        """A query started and not wanted any more: wait for its answer quietly."""
        self.conn.discard(ticket)

    def query_events(self, body: dict[str, Any], sent: Ticket | None = None) -> dict[str, Any]:
        """One page, its `responseData` a list of raw events (page.py); a continuation
        (`requestData.scrollId`) is never blindly re-sent."""
        request = body.get("requestData")
        continuation = isinstance(request, dict) and bool(request.get("scrollId"))
        return self.call(QUERY_PATH, body, "event query", resend_safe=not continuation, decode=decode_page, sent=sent)

    def close(self) -> None:
        self.conn.close()


def _tls_context(verify: bool) -> ssl.SSLContext:
    """Certificates checked against REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE or certifi's bundle (as
    requests does), or, with --insecure, not at all."""
    import ssl

    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    import certifi

    ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    return ssl.create_default_context(cafile=ca_bundle)


def _origin_of(url: str, headers: Any) -> str:
    """scheme://host:port of a redirect's target (never its path or query: they may hold tokens)."""
    location = headers.get("Location")
    if not location:
        return "nowhere (no Location header)"
    target = urlsplit(urljoin(url, location))
    host = target.hostname or "?"
    port = f":{target.port}" if target.port else ""
    return f"{target.scheme}://{host}{port}"


def _plain_sleep(secs: float) -> bool:
    time.sleep(secs)
    return True
