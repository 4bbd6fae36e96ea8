"""Pure parts of harmony-events: time parsing, windows, paginator, cursor, settings, errors."""

from __future__ import annotations

import itertools

import orjson
import pytest

from harmony_pipes._core.errors import (
    AuthError,
    ConfigError,
    ExitCode,
    RetriableError,
    TempFailError,
    UnreachableError,
)
from harmony_pipes._core.hec import event_time_us
from harmony_pipes._core.state import StateDir
from harmony_pipes.harmony_events.classify import (
    InvalidScroll,
    TokenRejected,
    api_failure,
    auth_failure,
    detail_of,
    envelope_failure,
    retries_exhausted,
)
from harmony_pipes.harmony_events.config import (
    DEFAULT_BASE_URL,
    REGION_GATEWAYS,
    build_filters,
    read_access_key,
    require_client_id,
    resolve_base_url,
)
from harmony_pipes.harmony_events.cursor import SEEN_MARGIN_US, CursorState, CursorStore, event_identity
from harmony_pipes.harmony_events.page import ONE_LINE, BadEvent, decode_page, event_line, identity_fields
from harmony_pipes.harmony_events.paginate import (
    END_EMPTY_PAGE,
    END_LOOP,
    END_NO_SCROLL_ID,
    END_PAGE_CAP,
    ScrollPaginator,
)
from harmony_pipes.harmony_events.timeparse import (
    US_PER_SEC,
    TimeParseError,
    format_api_time,
    parse_iso_us,
    parse_time_option,
)
from harmony_pipes.harmony_events.windows import (
    Window,
    WindowPlan,
    complete_before,
    halve,
    next_density,
    observed_density,
    plan_length_us,
)

NOW = parse_iso_us("2024-10-18T08:00:00Z")


# -- time -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-10-18T08:00:00Z", "2024-10-18T08:00:00.000000Z"),
        ("2024-10-18T08:00:00", "2024-10-18T08:00:00.000000Z"),
        ("2024-10-18T10:00:00+02:00", "2024-10-18T08:00:00.000000Z"),
        ("2024-10-14T07:02:11.229935+00:00", "2024-10-14T07:02:11.229935Z"),
        ("2016-08-29T09:12:33.001Z", "2016-08-29T09:12:33.001000Z"),
    ],
)
def test_iso_times_round_trip_to_the_wire_format(text, expected):
    assert format_api_time(parse_iso_us(text)) == expected


@pytest.mark.parametrize(
    ("text", "secs"), [("24h", 86400), ("30m", 1800), ("7d", 7 * 86400), ("90s", 90), ("1w", 604800)]
)
def test_relative_start_is_before_now(text, secs):
    assert parse_time_option(text, NOW) == NOW - secs * US_PER_SEC


def test_now_and_bad_times():
    assert parse_time_option("now", NOW) == NOW
    with pytest.raises(TimeParseError):
        parse_time_option("yesterday", NOW)
    assert event_time_us("not a time") is None
    assert event_time_us(None) is None
    assert event_time_us("2025-06-29T21:37:45+00:00") == parse_iso_us("2025-06-29T21:37:45Z")


# -- windows ----------------------------------------------------------------------------------


def test_a_plan_covers_the_range_without_gaps():
    plan = WindowPlan(0, 10 * US_PER_SEC + 5, 3 * US_PER_SEC)
    windows = []
    while plan:
        windows.append(plan.next())
    assert windows[0].start_us == 0 and windows[-1].end_us == 10 * US_PER_SEC + 5
    assert all(a.end_us == b.start_us for a, b in itertools.pairwise(windows))
    assert all(w.length_us <= 3 * US_PER_SEC for w in windows)
    assert not WindowPlan(5, 5, 10)


def test_halving_and_plan_order():
    plan = WindowPlan(0, 8_000, 4_000, min_window_us=1_000)
    first = plan.next()
    assert plan.split(first)
    assert [plan.next(), plan.next(), plan.next()] == [
        Window(0, 2_000),
        Window(2_000, 4_000),
        Window(4_000, 8_000),
    ]
    assert not plan
    assert plan.splits == 1
    assert halve(Window(0, 1_999), 1_000) is None


def test_windows_are_planned_from_the_density_seen_so_far():
    """Half the cap at the density: 100,000 events an hour and a 10,000 cap plan 180 s windows."""
    hour = 3600 * US_PER_SEC
    density = 100_000 / 3600
    assert plan_length_us(0.0, 10_000, hour) == hour  # nothing known yet: the longest window
    assert plan_length_us(density, 10_000, hour) == 180 * US_PER_SEC
    assert plan_length_us(0.001, 10_000, hour) == hour  # sparse: never longer than --window-secs
    assert plan_length_us(1e12, 10_000, hour) == 1_000  # never shorter than 1 ms
    lengths = iter([60 * US_PER_SEC, 120 * US_PER_SEC])
    plan = WindowPlan(0, hour, lambda: next(lengths))  # re-planned window by window
    assert [plan.next(), plan.next()] == [Window(0, 60 * US_PER_SEC), Window(60 * US_PER_SEC, 180 * US_PER_SEC)]


def test_density_rises_at_once_and_falls_by_half():
    assert observed_density(500, 10 * US_PER_SEC) == 50.0
    assert observed_density(5, 1_000) is None  # too short a span to tell
    assert next_density(0.0, 50.0) == 50.0
    assert next_density(50.0, 0.0) == 25.0
    assert next_density(50.0, 80.0) == 80.0
    assert next_density(50.0, None) == 50.0


def test_a_capped_window_read_oldest_first_is_split_at_its_last_event():
    window = Window(1_000, 9_000)
    assert complete_before(True, 4_000, window) == 4_000
    assert complete_before(False, 4_000, window) is None  # out of order: halve and re-read
    assert complete_before(True, 1_000, window) is None  # no progress: halve
    assert complete_before(True, None, window) is None
    plan = WindowPlan(1_000, 20_000, 8_000)
    first = plan.next()
    plan.split_at(first, 4_000)  # the newest window: the rest is planned afresh
    assert plan.next() == Window(4_000, 12_000) and plan.splits == 1
    plan.split(Window(4_000, 12_000))
    piece = plan.next()
    plan.split_at(piece, 6_000)  # a piece of a split: the rest goes back in front
    assert plan.next() == Window(6_000, 8_000)


# -- paginator --------------------------------------------------------------------------------


def test_null_scroll_style_stops_on_null():
    pager = ScrollPaginator()
    assert pager.next_scroll_id("abc", ["1", "2"]) == "abc"
    assert pager.next_scroll_id(None, ["3"]) is None
    assert pager.ended_by == END_NO_SCROLL_ID and not pager.incomplete


@pytest.mark.parametrize("scroll", [None, "", 0])
def test_empty_or_absent_scroll_ids_stop(scroll):
    pager = ScrollPaginator()
    assert pager.next_scroll_id(scroll, ["1"]) is None
    assert pager.ended_by == END_NO_SCROLL_ID


def test_constant_scroll_style_stops_on_empty_page():
    pager = ScrollPaginator()
    assert pager.next_scroll_id("same", ["1"]) == "same"
    assert pager.next_scroll_id("same", ["2"]) == "same"
    assert pager.next_scroll_id("same", []) is None
    assert pager.ended_by == END_EMPTY_PAGE


def test_page_cap_marks_the_window_incomplete():
    pager = ScrollPaginator(max_pages=2)
    assert pager.next_scroll_id("s", ["1"]) == "s"
    assert pager.next_scroll_id("s", ["2"]) is None
    assert pager.ended_by == END_PAGE_CAP and pager.incomplete


def test_a_repeated_page_is_a_loop():
    pager = ScrollPaginator()
    assert pager.next_scroll_id("s", ["1", "2"]) == "s"
    assert pager.next_scroll_id("s", ["1", "2"]) is None
    assert pager.ended_by == END_LOOP


# -- cursor -----------------------------------------------------------------------------------


def test_cursor_remembers_only_the_overlap():
    overlap = 300 * US_PER_SEC
    state = CursorState(cursor_us=NOW, source="s")
    state.remember("old", NOW - 3600 * US_PER_SEC)
    state.remember("recent", NOW + 250 * US_PER_SEC)
    state.remember("edge", NOW + 200 * US_PER_SEC - SEEN_MARGIN_US)
    state.advance(NOW + 500 * US_PER_SEC, overlap)
    assert state.cursor_us == NOW + 500 * US_PER_SEC
    assert set(state.seen) == {"recent", "edge"}
    assert not state.is_new("recent") and state.is_new("old")
    state.advance(NOW, overlap)  # never backwards
    assert state.cursor_us == NOW + 500 * US_PER_SEC
    again = CursorState.from_json(state.to_json())
    assert again == state


def test_event_identity_tells_two_detections_of_one_email_apart():
    """The public fixture's pair: one eventId, a spam and a suspicious_phishing event."""
    spam = {"eventId": "4134ab", "type": "spam", "eventCreated": "2025-09-04T00:01:57.002329+00:00",
            "customerId": "c", "entityId": "4134ab", "severity": "2", "state": "remediated"}  # fmt: skip
    microsoft = dict(spam, type="suspicious_phishing", eventCreated="2025-08-30T15:55:30.899631+00:00", severity="3")
    assert event_identity(spam) != event_identity(microsoft)
    assert len(event_identity(spam)) == 32
    # a re-read of the same detection, worked on in between, is the same event
    worked_on = dict(spam, state="dismissed", severity="1", actions=[{"actionType": "restore_email"}])
    assert event_identity(worked_on) == event_identity(spam)
    for field in ("type", "eventCreated", "customerId", "entityId"):
        assert event_identity(dict(spam, **{field: "other"})) != event_identity(spam), field


def test_event_identity_falls_back_to_content():
    a = event_identity({"x": 1, "y": 2})
    assert a.startswith("sha1:") and a == event_identity({"y": 2, "x": 1})


def test_a_format_1_cursor_is_migrated(tmp_path):
    """Format 1 remembered eventId -> eventCreated: those stay emitted (matched on both)."""
    created = NOW - 10 * US_PER_SEC
    old = {"cursor_us": NOW, "origin_us": NOW - 3600 * US_PER_SEC, "source": "s", "seen": {"abc": created}}
    (tmp_path / "harmony-events.cursor.json").write_bytes(orjson.dumps({"format_version": 1, "data": old}))
    with StateDir(str(tmp_path)) as state_dir:
        store = CursorStore(state_dir)
        state = store.load("s")
        assert store.migrated_from == 1
        assert state.cursor_us == NOW and state.seen == {} and state.legacy_seen == {"abc": created}
        assert not state.is_new("any-identity", "abc", created)  # the event format 1 had written
        assert state.is_new("any-identity", "abc", created + 1)  # another detection, same eventId
        store.save(state)
        saved = orjson.loads((tmp_path / "harmony-events.cursor.json").read_bytes())
        assert saved["format_version"] == 2 and saved["data"]["legacy_seen"] == {"abc": created}
        assert CursorStore(state_dir).load("s") == state
        state.advance(NOW + 3600 * US_PER_SEC, 300 * US_PER_SEC)  # out of the overlap: forgotten
        assert state.legacy_seen == {} and "legacy_seen" not in state.to_json()


def test_a_newer_cursor_format_is_refused(tmp_path):
    (tmp_path / "harmony-events.cursor.json").write_bytes(b'{"format_version": 3, "data": {}}')
    with StateDir(str(tmp_path)) as state_dir, pytest.raises(ConfigError) as err:
        CursorStore(state_dir).load("s")
    assert "format version 3" in err.value.message


# -- settings ---------------------------------------------------------------------------------


def test_base_url_and_region():
    assert resolve_base_url(None, None) == DEFAULT_BASE_URL
    assert resolve_base_url(None, "eu") == "https://cloudinfra-gw.portal.checkpoint.com"
    assert resolve_base_url("http://127.0.0.1:9/", None) == "http://127.0.0.1:9"
    assert set(REGION_GATEWAYS) == {"us", "eu", "ca", "ap", "uk", "me", "in"}
    with pytest.raises(ConfigError):
        resolve_base_url("https://x", "eu")
    with pytest.raises(ConfigError):
        resolve_base_url("ftp://x", None)


def test_access_key_from_env_or_file(tmp_path):
    assert read_access_key({"HARMONY_ACCESS_KEY": " k1 "}, None) == "k1"
    key_file = tmp_path / "key"
    key_file.write_text("k2\n")
    assert read_access_key({"HARMONY_ACCESS_KEY": "k1"}, str(key_file)) == "k2"
    with pytest.raises(ConfigError) as err:
        read_access_key({}, None)
    assert err.value.exit_code == ExitCode.USAGE
    with pytest.raises(ConfigError):
        read_access_key({}, str(tmp_path / "missing"))
    with pytest.raises(ConfigError):
        require_client_id(" ")


def test_filters():
    filters = build_filters("Phishing, Suspicious Malware", "new,detected", "5,high,Very Low", "office365_emails")
    assert filters == {
        "eventTypes": ["phishing", "suspicious_malware"],
        "eventStates": ["new", "detected"],
        "severities": [1, 4, 5],
        "saas": ["office365_emails"],
    }
    assert build_filters(None, None, None, None) == {}
    with pytest.raises(ConfigError):
        build_filters(None, "bogus", None, None)
    with pytest.raises(ConfigError):
        build_filters(None, None, "9", None)


# -- classification ---------------------------------------------------------------------------


def test_auth_answers():
    assert isinstance(auth_failure(401, {"success": False, "message": "Invalid client credentials"}, "u"), AuthError)
    assert isinstance(auth_failure(404, None, "u"), UnreachableError)
    assert isinstance(auth_failure(429, None, "u"), RetriableError)
    assert isinstance(auth_failure(503, None, "u"), RetriableError)


def test_api_answers():
    expired = {"success": False, "message": "Authentication required", "forceLogout": True}
    assert isinstance(api_failure(401, expired, "u"), TokenRejected)
    assert isinstance(api_failure(400, {"detail": "Invalid scroll"}, "u"), InvalidScroll)
    assert isinstance(api_failure(400, {"detail": "bad startDate"}, "u"), ConfigError)
    assert isinstance(api_failure(403, None, "u"), AuthError)
    assert isinstance(api_failure(404, None, "u"), UnreachableError)
    for status in (429, 500, 502, 503, 504):
        assert isinstance(api_failure(status, None, "u"), RetriableError)
    # only a refusal before the gateway acted lets a scroll page be sent again as it was
    assert [s for s in (408, 425, 429, 500, 502, 503, 504) if api_failure(s, None, "u").unprocessed] == [408, 425, 429]


def test_envelope_failures():
    ok = {"responseEnvelope": {"responseCode": 200, "scrollId": None}, "responseData": []}
    assert envelope_failure(ok, "u") is None
    failed = {"responseEnvelope": {"responseCode": 422, "responseText": "bad"}, "responseData": []}
    assert isinstance(envelope_failure(failed, "u"), ConfigError)
    assert isinstance(envelope_failure([1], "u"), RetriableError)
    assert detail_of({"message": "x " * 200}).startswith("x x")
    assert len(detail_of({"message": "x " * 200})) <= 160


def test_retries_exhausted_is_a_temporary_failure():
    err = retries_exhausted("event query", 6, "HTTP 429 from u")
    assert isinstance(err, TempFailError) and err.exit_code == 75
    assert "retry later" in err.one_line()


# -- page decoding ----------------------------------------------------------------------------


def test_a_page_keeps_each_event_as_the_server_sent_it():
    body = (
        b'{"responseEnvelope":{"responseCode":200,"scrollId":"s1"},"responseData":'
        b'[{"eventId":"a","type":"spam","eventCreated":"2025-01-01T00:00:00+00:00","x":{"eventId":"nested"}},'
        b'{"eventId":"b","severity":"4"},17]}'
    )
    page = decode_page(body)
    assert page["responseEnvelope"] == {"responseCode": 200, "scrollId": "s1"} and page[ONE_LINE]
    raw_a, raw_b, raw_bad = page["responseData"]
    assert bytes(raw_a).startswith(b'{"eventId":"a"') and bytes(raw_a).endswith(b'"nested"}}')
    fields = identity_fields(raw_a)
    assert (fields.eventId, fields.type, fields.customerId) == ("a", "spam", None)  # the top-level eventId
    assert event_line(raw_b) == b'{"eventId":"b","severity":"4"}'
    with pytest.raises(BadEvent):
        identity_fields(raw_bad)


def test_a_pretty_printed_page_gives_one_line_per_event():
    body = (
        b'{\n  "responseEnvelope": {"scrollId": null},\n  "responseData": [\n    {\n      "eventId": "a"\n    }\n  ]\n}'
    )
    page = decode_page(body)
    assert not page[ONE_LINE] and event_line(page["responseData"][0]) == b'{"eventId":"a"}'


def test_other_bodies_reach_the_envelope_checks_as_parsed():
    assert decode_page(b'{"responseEnvelope": {"responseCode": 422}, "responseData": "oops"}') == {
        "responseEnvelope": {"responseCode": 422},
        "responseData": "oops",
    }
    assert decode_page(b"[1, 2]") == [1, 2]
    assert decode_page(b"<html>") is None
