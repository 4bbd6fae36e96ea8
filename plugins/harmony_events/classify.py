"""What an HTTP answer from the HEC gateway means for the collector: pure, table-driven.

Errors split (singer-sdk style) into: retriable (429, 408, 5xx: back off and retry), token
rejected (401 on an API call: refresh the token and retry once), invalid scroll (400
`Invalid scroll`: restart the window), and fatal (a `PipesError` whose message and fix follow the
error table of the connector we replace: 400 configuration, 401 credentials, 403 permission,
404 base URL / region, 429 quota).
"""

from __future__ import annotations

from typing import Any

from harmony_pipes._core.errors import (
    AuthError,
    ConfigError,
    PipesError,
    RetriableError,
    RuntimeFailure,
    TempFailError,
    UnreachableError,
)

RETRIABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
UNPROCESSED_STATUS = frozenset({408, 425, 429})  # refused before the request was acted on
MAX_DETAIL_CHARS = 160

FIX_CREDENTIALS = (
    "check HARMONY_CLIENT_ID and HARMONY_ACCESS_KEY (or --access-key-file): typed correctly, not expired, "
    "created for the Email & Collaboration service, and for this region's gateway (--region)"
)
FIX_PERMISSION = "give the API key the Email & Collaboration service and a role allowed to read security events"
FIX_BASE_URL = "check --base-url / --region (HARMONY_BASE_URL, HARMONY_REGION); a key works only on its own region"
FIX_BAD_REQUEST = "check the configuration: --types, --states, --severities, --saas, --start, --end"
FIX_RATE_LIMIT = "the quota recovers by itself: retry later, or poll less often (--interval-secs)"
FIX_TLS = "install the gateway's CA (set REQUESTS_CA_BUNDLE) or, on a trusted network only, use --insecure"
FIX_NETWORK = "check --base-url / --region, DNS, proxy (HTTPS_PROXY) and firewall"
FIX_PROXY_AUTH = (
    "put the proxy's user and password in HTTPS_PROXY (HTTP_PROXY for an http gateway): "
    "http://USER:PASSWORD@HOST:PORT, special characters percent-encoded"
)


class TokenRejected(Exception):
    """401 on an API call: the token expired or was invalidated server-side."""


class InvalidScroll(Exception):
    """400 `Invalid scroll`: the scroll id is unknown or expired; restart the window."""


class ScrollInterrupted(InvalidScroll):
    """A scroll page request got no trustworthy answer (reset, timeout, 5xx). The gateway may
    have moved the scroll on already, so re-sending its id could skip a page unseen: the window
    restarts instead (the reference's "clear the scroll on any error path")."""


def detail_of(body: Any) -> str:
    """The server's short explanation (`message` / `detail` / envelope text), never more."""
    text = ""
    if isinstance(body, dict):
        for key in ("message", "detail", "error", "title"):
            value = body.get(key)
            if isinstance(value, str) and value:
                text = value
                break
        envelope = body.get("responseEnvelope")
        if not text and isinstance(envelope, dict):
            text = str(envelope.get("responseText") or envelope.get("additionalText") or "")
    text = " ".join(text.split())
    return text[:MAX_DETAIL_CHARS]


def _status_text(status: int, body: Any) -> str:
    detail = detail_of(body)
    return f"HTTP {status}" + (f": {detail}" if detail else "")


def is_invalid_scroll(status: int, body: Any) -> bool:
    return status == 400 and "invalid scroll" in detail_of(body).lower()


def auth_failure(status: int, body: Any, url: str) -> Exception:
    """What a non-200 answer from POST /auth/external means."""
    if status in RETRIABLE_STATUS:
        return RetriableError(f"token request {_status_text(status, body)}")
    if status in (401, 403):
        return AuthError(f"Harmony refused the client id / access key ({_status_text(status, body)})", FIX_CREDENTIALS)
    if status == 404:
        return UnreachableError(f"no Harmony token endpoint at {url} (HTTP 404)", FIX_BASE_URL)
    if status == 400:
        return ConfigError(f"the token request was rejected ({_status_text(status, body)})", FIX_CREDENTIALS)
    return RuntimeFailure(f"token request failed ({_status_text(status, body)})", FIX_BASE_URL)


def api_failure(status: int, body: Any, url: str) -> Exception:
    """What a non-200 answer from an `/app/hec-api/...` call means."""
    if status == 401:
        return TokenRejected(_status_text(status, body))
    if is_invalid_scroll(status, body):
        return InvalidScroll(_status_text(status, body))
    if status in RETRIABLE_STATUS:
        return RetriableError(f"{_status_text(status, body)} from {url}", unprocessed=status in UNPROCESSED_STATUS)
    if status == 403:
        return AuthError(f"Harmony denied access to {url} ({_status_text(status, body)})", FIX_PERMISSION)
    if status == 404:
        return UnreachableError(f"no Harmony API at {url} (HTTP 404)", FIX_BASE_URL)
    if status in (400, 422):
        return ConfigError(f"Harmony rejected the query ({_status_text(status, body)})", FIX_BAD_REQUEST)
    return RuntimeFailure(f"{url} answered {_status_text(status, body)}", "retry later; report it if it persists")


def envelope_failure(body: Any, url: str) -> Exception | None:
    """A 200 whose envelope reports failure (the 422 fixture), or a body that is not an envelope."""
    if not isinstance(body, dict):
        return RetriableError(f"{url} returned a body that is not a JSON object")
    envelope = body.get("responseEnvelope")
    if isinstance(envelope, dict):
        code = envelope.get("responseCode")
        if isinstance(code, int) and code >= 300:
            return api_failure(code, body, url)
    data = body.get("responseData")
    if data is not None and not isinstance(data, list):
        return RetriableError(f"{url} returned responseData that is not a list")
    return None


def retries_exhausted(what: str, attempts: int, last: str) -> PipesError:
    """The error after the retry budget is spent: always 75, so a scheduler tries again later."""
    if "429" in last:
        return TempFailError(f"{what}: rate limited by Harmony after {attempts} attempts ({last})", FIX_RATE_LIMIT)
    return TempFailError(
        f"{what}: still failing after {attempts} attempts ({last})",
        "temporary: retry later (or raise --max-retries / --timeout-secs)",
    )
