"""hec-emulator as a real process over HTTP on 127.0.0.1: the endpoints, the envelope and every
switchable fault, as a client of the real HEC API would see them (reference sections 1-4, 7)."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import orjson
import pytest
import requests

from tests.helpers.emulator import EMULATOR_BIN, emulator_env, start_emulator
from tests.helpers.events import ACCESS_KEY, CLIENT_ID, make_events, write_events

pytestmark = pytest.mark.integration

QUERY = "/app/hec-api/v1.0/event/query"
ENVELOPE_KEYS = ["requestId", "responseCode", "responseText", "additionalText", "recordsNumber", "scrollId"]
EVENTS = make_events(250, span_secs=600, seed=21)
EVENT_IDS = [e["eventId"] for e in EVENTS]
START = "2000-01-01T00:00:00Z"


@pytest.fixture
def events_file(tmp_path):
    return write_events(tmp_path / "events.ndjson", EVENTS)


def _auth(url: str, client_id: str = CLIENT_ID, access_key: str = ACCESS_KEY) -> requests.Response:
    return requests.post(url + "/auth/external", json={"clientId": client_id, "accessKey": access_key}, timeout=10)


def _headers(url: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + _auth(url).json()["data"]["token"]}


def _query(url: str, headers: dict[str, str], **request) -> requests.Response:
    return requests.post(url + QUERY, json={"requestData": request}, headers=headers, timeout=10)


def _scroll_all(url: str, headers: dict[str, str], max_pages: int = 100, **request) -> tuple[list[dict], list]:
    """Every page of one scroll; (events, scrollIds in the order the pages carried them)."""
    events: list[dict] = []
    scroll_ids: list = []
    body = dict(request)
    for _ in range(max_pages):
        resp = _query(url, headers, **body)
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        page = doc["responseData"]
        events += page
        scroll_id = doc["responseEnvelope"]["scrollId"]
        scroll_ids.append(scroll_id)
        if not scroll_id or not page:
            return events, scroll_ids
        body = {**request, "scrollId": scroll_id}
    raise AssertionError("the scroll did not end")


def test_prints_its_url_and_answers_auth(events_file) -> None:
    with start_emulator("--events", str(events_file)) as emu:
        assert emu.url.startswith("http://127.0.0.1:")
        ok = _auth(emu.url)
        assert ok.status_code == 200
        body = ok.json()
        assert body["success"] is True and set(body["data"]) == {"token", "csrf", "expires", "expiresIn"}
        assert body["data"]["expiresIn"] == 1800
        bad = _auth(emu.url, access_key="wrong")
        assert bad.status_code == 401
        assert bad.json() == {"success": False, "message": "Invalid client credentials"}
        unauthorized = _query(emu.url, {"Authorization": "Bearer nope"}, startDate=START)
        assert unauthorized.status_code == 401
        assert unauthorized.json() == {"success": False, "message": "Authentication required", "forceLogout": True}
        assert emu.stats()["auth_failed"] == 1


def test_null_scroll_style_pages_in_ascending_order_and_ends_on_a_null_id(events_file) -> None:
    with start_emulator("--events", str(events_file), "--page-size", "40") as emu:
        events, scroll_ids = _scroll_all(emu.url, _headers(emu.url), startDate=START)
        assert [e["eventId"] for e in events] == EVENT_IDS  # every event once, ascending eventCreated
        assert len(scroll_ids) == 7 and scroll_ids[-1] is None and len(set(scroll_ids[:-1])) == 1
        first = _query(emu.url, _headers(emu.url), startDate=START).json()
        assert list(first) == ["responseEnvelope", "responseData"]
        assert list(first["responseEnvelope"]) == ENVELOPE_KEYS
        assert first["responseEnvelope"]["responseCode"] == 200 and first["responseEnvelope"]["recordsNumber"] == 40


def test_constant_empty_page_style_repeats_the_id_and_ends_on_an_empty_page(events_file) -> None:
    with start_emulator(
        "--events", str(events_file), "--page-size", "50", "--scroll-style", "constant-empty-page"
    ) as emu:
        events, scroll_ids = _scroll_all(emu.url, _headers(emu.url), startDate=START)
        assert [e["eventId"] for e in events] == EVENT_IDS
        assert len(scroll_ids) == 6 and len(set(scroll_ids)) == 1 and scroll_ids[0]  # never null, never ""
        assert emu.stats()["empty_pages"] == 1


def test_filters_and_the_single_event_and_scopes_endpoints(events_file) -> None:
    with start_emulator("--events", str(events_file), "--page-size", "1000") as emu:
        headers = _headers(emu.url)
        mid = EVENTS[100]["eventCreated"]
        got = _query(emu.url, headers, startDate=START, endDate=mid).json()["responseData"]
        assert [e["eventId"] for e in got] == EVENT_IDS[:100]  # endDate is exclusive
        typed = _query(emu.url, headers, startDate=START, eventTypes=["phishing", "dlp"], severities=[5, "4"]).json()
        want = [e["eventId"] for e in EVENTS if e["type"] in ("phishing", "dlp") and e["severity"] in ("4", "5")]
        assert want and [e["eventId"] for e in typed["responseData"]] == want
        one = requests.get(f"{emu.url}/app/hec-api/v1.0/event/{EVENT_IDS[7]}", headers=headers, timeout=10).json()
        assert one["responseData"] == [EVENTS[7]]  # the stored event, byte for byte as loaded
        scopes = requests.get(emu.url + "/app/hec-api/v1.0/scopes", headers=headers, timeout=10).json()
        assert scopes["responseData"] == ["mt-prod-3:exampletest"]
        assert _query(emu.url, headers).status_code == 400  # startDate is required


def test_token_ttl_expires_the_token_mid_scroll(events_file) -> None:
    with start_emulator("--events", str(events_file), "--page-size", "50", "--token-ttl-secs", "0.5") as emu:
        headers = _headers(emu.url)
        first = _query(emu.url, headers, startDate=START).json()
        time.sleep(0.7)
        resp = _query(emu.url, headers, startDate=START, scrollId=first["responseEnvelope"]["scrollId"])
        assert resp.status_code == 401 and resp.json()["forceLogout"] is True
        # a new token continues the same scroll: the scroll outlives the token
        resp = _query(emu.url, _headers(emu.url), startDate=START, scrollId=first["responseEnvelope"]["scrollId"])
        assert resp.status_code == 200 and resp.json()["responseData"][0]["eventId"] == EVENT_IDS[50]


def test_unknown_and_invalidated_scroll_ids_get_400_invalid_scroll(events_file) -> None:
    with start_emulator("--events", str(events_file), "--page-size", "50", "--invalid-scroll-every", "1") as emu:
        headers = _headers(emu.url)
        unknown = _query(emu.url, headers, startDate=START, scrollId="no-such-scroll")
        assert unknown.status_code == 400 and unknown.json() == {"detail": "Invalid scroll"}
        first = _query(emu.url, headers, startDate=START).json()
        doomed = _query(emu.url, headers, startDate=START, scrollId=first["responseEnvelope"]["scrollId"])
        assert doomed.status_code == 400 and doomed.json() == {"detail": "Invalid scroll"}
        assert emu.stats()["invalid_scroll"] == 2


@pytest.mark.parametrize(
    ("style", "check"),
    [
        ("seconds", lambda value: value == "2"),
        ("http-date", lambda value: 0 < parsedate_to_datetime(value).timestamp() - time.time() <= 3),
        ("none", lambda value: value is None),
    ],
)
def test_rate_limit_every_nth_request_with_each_retry_after_style(events_file, style, check) -> None:
    args = ["--rate-limit-every", "2", "--retry-after-secs", "2", "--retry-after-style", style]
    with start_emulator("--events", str(events_file), *args) as emu:
        headers = _headers(emu.url)
        answers = [_query(emu.url, headers, startDate=START) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 429, 200, 429]
        assert all(check(a.headers.get("Retry-After")) for a in answers if a.status_code == 429)
        assert emu.stats()["rate_limited"] == 2


def test_error_every_cycles_through_the_error_codes(events_file) -> None:
    with start_emulator("--events", str(events_file), "--error-every", "1") as emu:
        headers = _headers(emu.url)
        answers = [_query(emu.url, headers, startDate=START) for _ in range(3)]
        assert [a.status_code for a in answers] == [500, 502, 503]
        assert answers[1].headers["Content-Type"].startswith("text/html")  # gateways answer 502 in HTML
        assert answers[0].json() == {"message": "Internal Server Error"}


def test_reset_and_slow_faults_strike_after_the_scroll_moved_on(events_file) -> None:
    """The answer is lost (reset) or late (slow) but the page was served: the same scrollId then
    yields the page after it — the trap a collector must not fall into."""
    args = ["--page-size", "50", "--reset-every", "2", "--slow-every", "3", "--slow-ms", "600"]
    with start_emulator("--events", str(events_file), *args) as emu:
        headers = _headers(emu.url)
        first = _query(emu.url, headers, startDate=START).json()  # API request 1
        scroll = first["responseEnvelope"]["scrollId"]
        with pytest.raises(requests.ConnectionError):
            _query(emu.url, headers, startDate=START, scrollId=scroll)  # 2: page 2 served, answer lost
        began = time.monotonic()
        third = _query(emu.url, headers, startDate=START, scrollId=scroll).json()  # 3: slow
        assert time.monotonic() - began >= 0.6
        assert third["responseData"][0]["eventId"] == EVENT_IDS[100]  # page 3: page 2 is gone
        assert emu.stats()["connection_resets"] == 1 and emu.stats()["slow_answers"] == 1


def test_max_records_per_query_truncates_silently(events_file) -> None:
    with start_emulator("--events", str(events_file), "--page-size", "30", "--max-records-per-query", "70") as emu:
        events, _ = _scroll_all(emu.url, _headers(emu.url), startDate=START)
        assert [e["eventId"] for e in events] == EVENT_IDS[:70]  # the oldest 70, no hint of the rest
        assert emu.stats()["truncated_queries"] == 1


def test_delay_slows_every_api_answer(events_file) -> None:
    with start_emulator("--events", str(events_file), "--delay-ms", "300") as emu:
        headers = _headers(emu.url)
        began = time.monotonic()
        assert _query(emu.url, headers, startDate=START).status_code == 200
        assert time.monotonic() - began >= 0.3


def test_late_events_appear_in_the_past_while_running(events_file) -> None:
    args = ["--late-events", "5", "--late-after-secs", "0.5", "--late-lag-secs", "60"]
    with start_emulator("--events", str(events_file), "--page-size", "1000", *args) as emu:
        began = time.time()
        headers = _headers(emu.url)
        before = _query(emu.url, headers, startDate=START).json()["responseData"]
        assert len(before) == 250
        time.sleep(0.8)
        after = _query(emu.url, headers, startDate=START).json()["responseData"]
        late = [e for e in after if e["eventId"] not in set(EVENT_IDS)]
        assert len(late) == 5 and emu.stats()["late_inserted"] == 5
        created = [parsedate_iso(e["eventCreated"]) for e in late]
        assert all(began - 70 < c < began - 50 for c in created)  # inserted ~60 s in the past
        assert [e["eventCreated"] for e in after] == sorted(e["eventCreated"] for e in after)


def parsedate_iso(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()


def test_generate_is_deterministic_with_a_fixed_end_time() -> None:
    args = ["--generate", "300", "--seed", "9", "--end-time", "2026-01-01T00:00:00Z", "--page-size", "1000"]
    pages = []
    for _ in range(2):
        with start_emulator(*args) as emu:
            pages.append(_query(emu.url, _headers(emu.url), startDate=START).content.split(b',"responseData":')[1])
    assert pages[0] == pages[1]
    events = orjson.loads(pages[0][:-1])
    assert len(events) == 300 and len({e["type"] for e in events}) >= 6


def test_a_taken_port_is_one_line_and_exit_4() -> None:
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = subprocess.run(
            [str(EMULATOR_BIN), "--port", str(port)], capture_output=True, env=emulator_env(), timeout=30
        )
    assert proc.returncode != 0
    err = proc.stderr.decode()
    assert "Traceback" not in err and str(port) in err, err
