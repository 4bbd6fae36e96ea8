"""The emulated HEC Smart API as a pure request → response function, with deterministic faults.

No sockets and no sleeping here: `server.py` feeds requests in and writes responses out, and
clocks are injected, so every behaviour (token expiry, scroll expiry, late events, every-Nth
faults) can be unit-tested without HTTP. Faults count requests to `/app/hec-api/...` only
(authentication is never faulted, so a collector can always get a token); the N-th, 2N-th, ...
such request gets the fault.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import orjson

from .generate import EventGenerator, format_created
from .store import SCROLL_CONSTANT, SCROLL_NULL, EventStore, Query, QueryError, ScrollRegistry

US_PER_SEC = 1_000_000
API_PREFIX = "/app/hec-api/v1.0"
AUTH_PATH = "/auth/external"
QUERY_PATH = API_PREFIX + "/event/query"
EVENT_PATH = API_PREFIX + "/event/"
SCOPES_PATH = API_PREFIX + "/scopes"
CONTROL_PREFIX = "/_emulator/"
RETRY_AFTER_STYLES = ("seconds", "http-date", "none")
SCROLL_STYLES = (SCROLL_NULL, SCROLL_CONSTANT)
ZERO_UUID = "00000000-0000-0000-0000-000000000000"

INVALID_CREDENTIALS = {"success": False, "message": "Invalid client credentials"}
AUTH_REQUIRED = {"success": False, "message": "Authentication required", "forceLogout": True}
INVALID_SCROLL = {"detail": "Invalid scroll"}
JSON = "application/json"


@dataclass
class Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = JSON
    delayed: bool = False  # an API answer: the server applies --delay-ms
    reset: bool = False  # no answer at all: the server resets the connection
    extra_delay_secs: float = 0.0  # `--slow-every`: this answer comes this much later still


def json_response(status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, orjson.dumps(value), headers or [])


@dataclass
class EmulatorConfig:
    client_id: str = "demo-client"
    access_key: str = "demo-secret"
    customer_id: str = "exampletest"
    page_size: int = 100
    scroll_style: str = SCROLL_NULL
    scroll_ttl_secs: float = 300.0
    token_ttl_secs: float = 1800.0
    max_records_per_query: int | None = None
    invalid_scroll_every: int = 0
    revoke_token_every: int = 0
    rate_limit_every: int = 0
    retry_after_secs: float = 1.0
    retry_after_style: str = "seconds"
    error_every: int = 0
    error_codes: tuple[int, ...] = (500, 502, 503)
    reset_every: int = 0
    slow_every: int = 0
    slow_ms: float = 2000.0
    late_events: int = 0
    late_after_secs: float = 5.0
    late_lag_secs: float = 120.0
    seed: int = 1


class Emulator:
    """One emulated tenant: its events, tokens, scrolls, fault counters and stats."""

    def __init__(
        self,
        config: EmulatorConfig,
        store: EventStore | None = None,
        *,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.store = store if store is not None else EventStore()
        self.clock = clock
        self.wall_clock = wall_clock
        self.scrolls = ScrollRegistry(
            page_size=max(1, config.page_size),
            style=config.scroll_style,
            ttl_secs=config.scroll_ttl_secs,
            clock=clock,
            invalidate_every=config.invalid_scroll_every,
        )
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._lock = threading.Lock()
        self._api_requests = 0
        self._authorized_requests = 0
        self._started = clock()
        self._started_wall_us = int(wall_clock() * US_PER_SEC)
        self._late_pending = config.late_events > 0
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "requests", "auth_ok", "auth_failed", "tokens_issued", "unauthorized", "queries",
                "scroll_requests", "pages", "empty_pages", "events_served", "rate_limited", "errors",
                "invalid_scroll", "truncated_queries", "late_inserted", "events_added", "connection_resets",
                "slow_answers",
            ),
            0,
        )  # fmt: skip

    # -- bookkeeping ---------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.stats[name] += n

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self.stats)
        out["events"] = len(self.store)
        out["open_scrolls"] = len(self.scrolls)
        out["api_requests"] = self._api_requests
        return out

    def now_us(self) -> int:
        return int(self.wall_clock() * US_PER_SEC)

    def insert_late_events_if_due(self) -> None:
        """`--late-events N`: once `late_after_secs` have passed, N events appear `late_lag_secs` in the past."""
        if not self._late_pending or self.clock() - self._started < self.config.late_after_secs:
            return
        with self._lock:
            if not self._late_pending:
                return
            self._late_pending = False
        cfg = self.config
        base_us = self._started_wall_us + int((cfg.late_after_secs - cfg.late_lag_secs) * US_PER_SEC)
        gen = EventGenerator(cfg.seed ^ 0x1A7E, cfg.customer_id)
        events = [gen.make(base_us + i * 1000) for i in range(cfg.late_events)]
        for i, event in enumerate(events):  # generated stamps may drop the fraction: keep them exact
            event["eventCreated"] = format_created(base_us + i * 1000)
        self.store.add_many(events)
        self._count("late_inserted", len(events))

    # -- dispatch ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        """Answer one request. `headers` keys are lower-case."""
        self._count("requests")
        self.insert_late_events_if_due()
        path = path.split("?", 1)[0]
        if path.startswith(CONTROL_PREFIX):
            return self._control(method, path, body)
        if path == AUTH_PATH:
            if method != "POST":
                return json_response(405, {"detail": "Method Not Allowed"})
            return self._auth(body)
        if not path.startswith(API_PREFIX + "/"):
            return json_response(404, {"detail": "Not Found"})
        route = self._route(method, path)
        if route is None:
            return json_response(404, {"detail": "Not Found"})
        with self._lock:
            self._api_requests += 1
            n = self._api_requests
        fault = self._fault(n)
        if fault is not None:
            fault.delayed = True
            return fault
        request_id = headers.get("x-av-req-id") or str(uuid.uuid4())
        if not self._authorized(headers.get("authorization", "")):
            self._count("unauthorized")
            response = json_response(401, AUTH_REQUIRED)
        else:
            response = self._after_answer(n, route(request_id, body, path))
        response.delayed = True
        return response

    def _route(self, method: str, path: str) -> Callable[[str, bytes, str], Response] | None:
        if path == QUERY_PATH:
            return self._query if method == "POST" else None
        if path == SCOPES_PATH:
            return self._scopes if method == "GET" else None
        if path.startswith(EVENT_PATH) and method == "GET" and len(path) > len(EVENT_PATH):
            return self._event
        return None

    # -- faults --------------------------------------------------------------------------------

    def _fault(self, n: int) -> Response | None:
        cfg = self.config
        if cfg.rate_limit_every and n % cfg.rate_limit_every == 0:
            self._count("rate_limited")
            return json_response(429, {"detail": "Too Many Requests"}, self._retry_after_headers())
        if cfg.error_every and n % cfg.error_every == 0 and cfg.error_codes:
            code = cfg.error_codes[(n // cfg.error_every - 1) % len(cfg.error_codes)]
            self._count("errors")
            return error_response(code)
        return None

    def _after_answer(self, n: int, response: Response) -> Response:
        """Faults that strike after the request was processed (a scroll has advanced): the answer
        is lost on the way (`--reset-every`) or arrives late (`--slow-every`)."""
        cfg = self.config
        if cfg.reset_every and n % cfg.reset_every == 0:
            self._count("connection_resets")
            return Response(0, b"", reset=True)
        if cfg.slow_every and n % cfg.slow_every == 0:
            self._count("slow_answers")
            response.extra_delay_secs = cfg.slow_ms / 1000
        return response

    def _retry_after_headers(self) -> list[tuple[str, str]]:
        cfg = self.config
        if cfg.retry_after_style == "none":
            return []
        if cfg.retry_after_style == "http-date":
            return [("Retry-After", formatdate(self.wall_clock() + cfg.retry_after_secs, usegmt=True))]
        secs = cfg.retry_after_secs
        return [("Retry-After", str(int(secs)) if secs == int(secs) else f"{secs:g}")]

    # -- auth ----------------------------------------------------------------------------------

    def _auth(self, body: bytes) -> Response:
        try:
            creds = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            creds = {}
        client_id = creds.get("clientId") if isinstance(creds, dict) else None
        access_key = creds.get("accessKey") if isinstance(creds, dict) else None
        ok = (
            isinstance(client_id, str)
            and isinstance(access_key, str)
            and hmac.compare_digest(client_id.encode(), self.config.client_id.encode())
            and hmac.compare_digest(access_key.encode(), self.config.access_key.encode())
        )
        if not ok:
            self._count("auth_failed")
            return json_response(401, INVALID_CREDENTIALS)
        ttl = self.config.token_ttl_secs
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = self.clock()
            for old in [t for t, exp in self._tokens.items() if exp <= now]:
                del self._tokens[old]
            self._tokens[token] = now + ttl
            self.stats["auth_ok"] += 1
            self.stats["tokens_issued"] += 1
        expires_in: int | float = int(ttl) if ttl == int(ttl) else ttl
        data = {
            "token": token,
            "csrf": str(uuid.uuid4()),
            "expires": formatdate(self.wall_clock() + ttl, usegmt=True),
            "expiresIn": expires_in,
        }
        return json_response(200, {"success": True, "data": data})

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        token = token.strip()
        with self._lock:
            expiry = self._tokens.get(token)
            if expiry is None:
                return False
            if self.clock() >= expiry:
                del self._tokens[token]
                return False
            every = self.config.revoke_token_every
            if every:
                self._authorized_requests += 1
                if self._authorized_requests % every == 0:  # server-side invalidation (reference section 7)
                    del self._tokens[token]
                    return False
        return True

    # -- endpoints -----------------------------------------------------------------------------

    def _query(self, request_id: str, body: bytes, _path: str) -> Response:
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            return json_response(400, {"detail": "Request body is not valid JSON"})
        request = parsed.get("requestData") if isinstance(parsed, dict) else None
        if not isinstance(request, dict):
            return json_response(400, {"detail": "requestData is required"})
        scroll_id = request.get("scrollId")
        if isinstance(scroll_id, str) and scroll_id:
            return self._scroll(request_id, scroll_id)
        try:
            query = Query.from_request(request, self.now_us())
        except QueryError as exc:
            return json_response(400, {"detail": str(exc)})
        cap = self.config.max_records_per_query
        records = self.store.select(query, None if cap is None else cap + 1)
        if cap is not None and len(records) > cap:
            del records[cap:]
            self._count("truncated_queries")
        self._count("queries")
        page, next_id = self.scrolls.first_page(records)
        return self._page(request_id, page, next_id)

    def _scroll(self, request_id: str, scroll_id: str) -> Response:
        self._count("scroll_requests")
        result = self.scrolls.next_page(scroll_id)
        if result is None:
            self._count("invalid_scroll")
            return json_response(400, INVALID_SCROLL)
        page, next_id = result
        return self._page(request_id, page, next_id)

    def _page(self, request_id: str, page: list[bytes], scroll_id: str | None) -> Response:
        with self._lock:
            self.stats["pages"] += 1
            self.stats["events_served"] += len(page)
            if not page:
                self.stats["empty_pages"] += 1
        return Response(200, envelope(request_id, page, scroll_id))

    def _scopes(self, request_id: str, _body: bytes, _path: str) -> Response:
        return Response(200, envelope(request_id, [orjson.dumps(f"mt-prod-3:{self.config.customer_id}")], ""))

    def _event(self, request_id: str, _body: bytes, path: str) -> Response:
        stored = self.store.get(path[len(EVENT_PATH) :])
        return Response(200, envelope(request_id, [] if stored is None else [stored.raw], ""))

    # -- test-only control endpoints -----------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> Response:
        if path == CONTROL_PREFIX + "stats" and method == "GET":
            return json_response(200, self.snapshot())
        if path == CONTROL_PREFIX + "events" and method == "POST":
            try:
                events = parse_events_body(body, self.now_us())
                added = self.store.add_many(events)
            except (QueryError, orjson.JSONDecodeError) as exc:
                return json_response(400, {"detail": f"bad events: {exc}"})
            self._count("events_added", added)
            return json_response(200, {"added": added, "events": len(self.store)})
        if path == CONTROL_PREFIX + "credentials" and method == "POST":
            return self._set_credentials(body)
        return json_response(404, {"detail": "Not Found"})

    def _set_credentials(self, body: bytes) -> Response:
        """Accept another client id / access key from now on (a key rotated or fixed server-side);
        tokens issued before stay valid until they expire."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        client_id = doc.get("clientId") if isinstance(doc, dict) else None
        access_key = doc.get("accessKey") if isinstance(doc, dict) else None
        if not isinstance(client_id, str) or not isinstance(access_key, str) or not client_id or not access_key:
            return json_response(400, {"detail": 'send {"clientId": "...", "accessKey": "..."}'})
        with self._lock:
            self.config.client_id = client_id
            self.config.access_key = access_key
        return json_response(200, {"clientId": client_id})


def envelope(request_id: str, page: list[bytes], scroll_id: str | None) -> bytes:
    """The response envelope exactly as the reference shows, around ready-made record bytes."""
    return b"".join(
        (
            b'{"responseEnvelope":{"requestId":',
            orjson.dumps(request_id),
            b',"responseCode":200,"responseText":"","additionalText":"","recordsNumber":',
            str(len(page)).encode(),
            b',"scrollId":',
            orjson.dumps(scroll_id),
            b'},"responseData":[',
            b",".join(page),
            b"]}",
        )
    )


def error_response(code: int) -> Response:
    """A 5xx (or 422) the way gateways send them: JSON for most, an HTML page for 502/504."""
    if code in (502, 504):
        text = "Bad Gateway" if code == 502 else "Gateway Timeout"
        html = f"<html><head><title>{code} {text}</title></head><body><h1>{code} {text}</h1></body></html>"
        return Response(code, html.encode(), content_type="text/html")
    if code == 422:
        body = {
            "responseEnvelope": {
                "requestId": ZERO_UUID, "responseCode": 422, "responseText": "Unprocessable Entity",
                "additionalText": "", "recordsNumber": 0, "scrollId": "",
            },
            "responseData": [],
        }  # fmt: skip
        return json_response(422, body)
    reasons = {500: "Internal Server Error", 503: "Service Unavailable"}
    return json_response(code, {"message": reasons.get(code, "Error")})


def parse_events_body(body: bytes, now_us: int) -> list[dict[str, Any]]:
    """A JSON array, one object, or NDJSON; missing eventCreated = now, missing eventId = random."""
    text = body.strip()
    if not text:
        return []
    if text.startswith(b"["):
        events = orjson.loads(text)
    else:
        events = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    out = []
    for event in events:
        if not isinstance(event, dict):
            raise QueryError("an event must be a JSON object")
        event.setdefault("eventCreated", format_created(now_us))
        event.setdefault("eventId", secrets.token_hex(16))
        out.append(event)
    return out
