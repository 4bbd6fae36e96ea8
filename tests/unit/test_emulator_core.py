"""hec-emulator's pure core: generator, store filters and ordering, scroll contexts (injected clock)."""

from __future__ import annotations

import base64
import re
from collections import Counter

import orjson
import pytest

from harmony_pipes.harmony_alerts.entities import parse_data
from harmony_pipes.hec_emulator.generate import STATES, TYPES, format_created, generate_events
from harmony_pipes.hec_emulator.store import (
    SCROLL_CONSTANT,
    SCROLL_NULL,
    EventStore,
    Query,
    QueryError,
    ScrollRegistry,
    normalize_severity,
    normalize_type,
    parse_time_us,
)

US = 1_000_000
END_US = parse_time_us("2026-01-01T12:00:00Z")


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return generate_events(3000, seed=11, end_us=END_US, span_secs=3600)


# -- generator ------------------------------------------------------------------------------------


def test_generate_is_deterministic_and_shifts_with_the_end_time() -> None:
    a = generate_events(300, seed=5, end_us=END_US, span_secs=600)
    assert a == generate_events(300, seed=5, end_us=END_US, span_secs=600)
    b = generate_events(300, seed=5, end_us=END_US + 3600 * US, span_secs=600)
    assert [e["eventId"] for e in a] == [e["eventId"] for e in b]
    shifts = {parse_time_us(y["eventCreated"]) - parse_time_us(x["eventCreated"]) for x, y in zip(a, b, strict=True)}
    assert shifts == {3600 * US}
    c = generate_events(300, seed=6, end_us=END_US, span_secs=600)
    assert not {e["eventId"] for e in a} & {e["eventId"] for e in c}


def test_generated_events_are_ascending_inside_the_span(events: list[dict]) -> None:
    created = [parse_time_us(e["eventCreated"]) for e in events]
    assert created == sorted(created)
    assert created[0] > END_US - 3600 * US and created[-1] <= END_US
    assert len({e["eventId"] for e in events}) == len(events)


def test_generated_values_follow_the_reference_enumerations(events: list[dict]) -> None:
    assert {e["type"] for e in events} == {t[0] for t in TYPES}
    assert {e["state"] for e in events} == set(STATES)
    assert {e["severity"] for e in events} == {"1", "2", "3", "4", "5"}
    assert {e["saas"] for e in events} >= {"office365_emails", "google_mail"}
    assert {e["confidenceIndicator"] for e in events} >= {"malicious", "detected", "alert", "suspicious_phishing"}
    for e in events:
        assert re.fullmatch(r"[0-9a-f]{32}", e["eventId"])
        assert e["customerId"] == "exampletest"


def test_generated_field_variations(events: list[dict]) -> None:
    full = {"eventId", "customerId", "saas", "entityId", "state", "type", "confidenceIndicator", "eventCreated",
            "severity", "description", "data", "additionalData", "availableEventActions", "actions",
            "senderAddress", "entityLink"}  # fmt: skip
    missing = [e for e in events if not full <= e.keys()]
    assert 0.02 * len(events) < len(missing) < 0.15 * len(events)
    assert all(e.keys() >= {"eventId", "eventCreated", "type", "state", "severity", "saas"} for e in events)
    extra = [e for e in events if "attachmentMd5" in e]
    assert extra and {e["type"] for e in extra} <= {"malware", "suspicious_malware"}
    no_fraction = [e for e in events if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", e["eventCreated"])]
    with_fraction = [e for e in events if re.fullmatch(r".*T\d\d:\d\d:\d\d\.\d{6}\+00:00", e["eventCreated"])]
    assert no_fraction and len(no_fraction) + len(with_fraction) == len(events)
    alerts = [e for e in events if e["type"] == "alert"]
    assert all(e["eventId"] == e["entityId"] and e.get("senderAddress", None) is None for e in alerts)
    assert all(
        "@" not in e["senderAddress"] for e in events if e["type"] == "suspicious_phishing" and "senderAddress" in e
    )
    assert any(e.get("availableEventActions") for e in events)
    assert any(e.get("actions") for e in events)
    assert any(e.get("data") == "" for e in events)


def test_generated_data_placeholders_and_links_decode(events: list[dict]) -> None:
    for e in events[:300]:
        for blob in re.findall(r"#(\{.*?\})(?=[ ':’)]|$)", e["data"]):
            fields = orjson.loads(blob)
            assert {"entity_id", "entity_type", "label"} <= fields.keys()
        if "entityLink" in e:
            route = e["entityLink"].split("route=", 1)[1]
            assert base64.b64decode(route).decode().endswith("/" + e["entityId"])
        for action in e.get("actions") or []:
            assert action["createTime"].endswith("Z") and action["relatedEntityId"] == e["eventId"]


def test_format_created() -> None:
    assert format_created(parse_time_us("2024-10-14T07:02:11.229935+00:00")) == "2024-10-14T07:02:11.229935+00:00"
    assert format_created(parse_time_us("2025-06-29T21:37:45Z"), False) == "2025-06-29T21:37:45+00:00"


# -- store ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-10-18T08:00:00Z", "2024-10-18T08:00:00.000000+00:00"),
        ("2024-10-18T08:00:00.123Z", "2024-10-18T08:00:00.123000+00:00"),
        ("2024-10-18T10:00:00+02:00", "2024-10-18T08:00:00.000000+00:00"),
        ("2024-10-18T08:00:00", "2024-10-18T08:00:00.000000+00:00"),
        ("2024-10-18T08:00:00.000001+00:00", "2024-10-18T08:00:00.000001+00:00"),
    ],
)
def test_parse_time_accepts_what_integrations_send(text: str, expected: str) -> None:
    assert format_created(parse_time_us(text)) == expected


@pytest.mark.parametrize("bad", ["", "yesterday", None, 12])
def test_parse_time_rejects(bad: object) -> None:
    with pytest.raises(QueryError):
        parse_time_us(bad)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, "5"), ("5", "5"), (" 3 ", "3"), ("critical", "5"), ("Highest", "5"), ("High", "4"),
     ("medium", "3"), ("Low", "2"), ("Very Low", "1"), ("lowest", "1"), (1.0, "1")],
)  # fmt: skip
def test_severity_filter_accepts_ints_numeric_strings_and_names(value: object, expected: str) -> None:
    assert normalize_severity(value) == expected


@pytest.mark.parametrize("bad", [0, 6, "9", "severe", True, None, "²", "٣"])  # "²".isdigit() is True
def test_severity_filter_rejects(bad: object) -> None:
    with pytest.raises(QueryError):
        normalize_severity(bad)


def test_type_names_are_normalised() -> None:
    assert normalize_type("Suspicious malware") == "suspicious_malware"
    assert normalize_type("Shadow IT") == "shadow_it"
    assert normalize_type("DLP") == "dlp"


def _store(events: list[dict]) -> EventStore:
    store = EventStore()
    store.add_many(events)
    return store


def _ids(raws: list[bytes]) -> list[str]:
    return [orjson.loads(r)["eventId"] for r in raws]


def test_select_window_is_start_inclusive_end_exclusive(events: list[dict]) -> None:
    store = _store(events)
    mid = events[1500]["eventCreated"]
    start = {"startDate": events[0]["eventCreated"], "endDate": mid}
    first = _ids(store.select(Query.from_request(start, END_US)))
    second = _ids(store.select(Query.from_request({"startDate": mid, "endDate": "2030-01-01T00:00:00Z"}, END_US)))
    assert first[0] == events[0]["eventId"] and events[1500]["eventId"] in second
    assert first + second == [e["eventId"] for e in events]  # the two halves partition the tenant
    assert _ids(store.select(Query.from_request({"startDate": "2020-01-01T00:00:00Z"}, END_US))) == [
        e["eventId"] for e in events
    ]  # no endDate: up to now
    assert store.select(Query.from_request({"startDate": "2020-01-01T00:00:00Z"}, END_US - 7200 * US)) == []


def test_select_filters(events: list[dict]) -> None:
    store = _store(events)
    base = {"startDate": "2020-01-01T00:00:00Z", "endDate": "2030-01-01T00:00:00Z"}

    def pick(**filters: object) -> list[dict]:
        return [orjson.loads(r) for r in store.select(Query.from_request({**base, **filters}, END_US))]

    high = pick(severities=[5, "4"])
    assert high and {e["severity"] for e in high} == {"4", "5"}
    assert len(high) == sum(e["severity"] in ("4", "5") for e in events)
    assert pick(severities=["critical", "High"]) == high
    phish = pick(eventTypes=["Phishing", "Suspicious phishing"])
    assert phish and {e["type"] for e in phish} == {"phishing", "suspicious_phishing"}
    combo = pick(eventStates=["new"], saas=["google_mail"], eventTypes=["spam"])
    expected = [e for e in events if e["state"] == "new" and e["saas"] == "google_mail" and e["type"] == "spam"]
    assert combo == expected and combo
    wanted = [events[3]["eventId"], events[2999]["eventId"]]
    assert [e["eventId"] for e in pick(eventIds=wanted)] == wanted
    assert {e["confidenceIndicator"] for e in pick(confidenceIndicator="alert")} == {"alert"}
    assert all("dlp engine" in e["description"].lower() for e in pick(description="DLP Engine"))
    assert pick(eventTypes=[]) == pick()  # an empty list filters nothing
    assert pick(unknownKey="ignored") == pick()


def test_select_cap_keeps_the_oldest(events: list[dict]) -> None:
    store = _store(events)
    got = _ids(store.select(Query.from_request({"startDate": "2020-01-01T00:00:00Z"}, END_US), limit=100))
    assert got == [e["eventId"] for e in events[:100]]


def test_query_errors() -> None:
    start = "2024-01-01T00:00:00Z"
    for bad in ({}, {"startDate": ""}, {"startDate": "soon"}, {"startDate": start, "eventStates": {"new": True}}):
        with pytest.raises(QueryError):
            Query.from_request(bad, END_US)
    with pytest.raises(QueryError):
        Query.from_request([], END_US)
    # a lone string or int is taken as a one-element list (integrations send severities as ints)
    lone = Query.from_request({"startDate": start, "eventStates": "New", "severities": 5}, END_US)
    assert (
        lone.states == frozenset({"new"})
        and lone.severities == Query.from_request({"startDate": start, "severities": ["critical"]}, END_US).severities
    )


def test_insert_out_of_order_keeps_ascending_order(events: list[dict]) -> None:
    store = _store(events[100:])
    late = [dict(events[50], eventId="late1"), dict(events[0], eventId="late0"), dict(events[2999], eventId="latest")]
    store.add_many(late)
    raws = store.select(Query.from_request({"startDate": "2020-01-01T00:00:00Z"}, END_US + US))
    created = [parse_time_us(orjson.loads(r)["eventCreated"]) for r in raws]
    assert created == sorted(created) and len(raws) == 2903
    assert store.get("late0") is not None and store.get("nope") is None


# -- scrolls --------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _records(n: int) -> list[bytes]:
    return [orjson.dumps({"eventId": str(i)}) for i in range(n)]


def test_scroll_null_style() -> None:
    reg = ScrollRegistry(page_size=10, style=SCROLL_NULL, clock=FakeClock())
    page, sid = reg.first_page(_records(25))
    assert len(page) == 10 and sid
    page2, sid2 = reg.next_page(sid)
    assert len(page2) == 10 and sid2 == sid
    page3, sid3 = reg.next_page(sid)
    assert len(page3) == 5 and sid3 is None
    assert reg.next_page(sid) is None  # finished scrolls are gone
    page, sid = reg.first_page(_records(10))
    assert len(page) == 10 and sid is None  # one exact page: no scroll
    page, sid = reg.first_page([])
    assert page == [] and sid is None
    assert len(reg) == 0


def test_scroll_constant_style_ends_with_empty_pages() -> None:
    reg = ScrollRegistry(page_size=10, style=SCROLL_CONSTANT, clock=FakeClock())
    page, sid = reg.first_page(_records(20))
    seen = list(page)
    for _ in range(3):
        page, same = reg.next_page(sid)
        assert same == sid
        seen += page
    assert len(seen) == 20 and len(set(seen)) == 20
    assert reg.next_page(sid) == ([], sid)
    page, sid = reg.first_page([])
    assert page == [] and sid  # even an empty result hands out a scroll id


def test_scroll_expires_after_ttl_since_last_use() -> None:
    clock = FakeClock()
    reg = ScrollRegistry(page_size=1, ttl_secs=30, clock=clock)
    _, sid = reg.first_page(_records(5))
    clock.now += 29
    assert reg.next_page(sid) is not None
    clock.now += 29
    assert reg.next_page(sid) is not None  # each use renews it
    clock.now += 31
    assert reg.next_page(sid) is None
    assert reg.next_page("not-a-scroll") is None


def test_every_nth_scroll_is_invalidated_at_its_first_continuation() -> None:
    reg = ScrollRegistry(page_size=1, clock=FakeClock(), invalidate_every=3)
    outcomes = []
    for _ in range(6):
        _, sid = reg.first_page(_records(3))
        outcomes.append(reg.next_page(sid) is None)
    assert outcomes == [False, False, True, False, False, True]
    assert Counter(outcomes)[True] == 2


def test_generated_data_sentences_parse_for_every_type(events: list[dict]) -> None:
    """The emulator speaks the real sentence shapes, so the demo and benchmarks exercise the parser."""
    shapes: dict[str, set] = {}
    for e in events:
        data = e.get("data") or ""
        if "#{" in data:
            facts = parse_data(data)
            shapes.setdefault(e["type"], set()).add(None if facts is None else facts.shape)
    assert set(shapes) == {t[0] for t in TYPES}
    assert all(None not in found for found in shapes.values()), shapes
    assert shapes["anomaly"] == {"geo_first_login", "geo_suspicious"}
    assert shapes["alert"] == {"user_report"} and shapes["dlp"] == {"dlp_leak"} and shapes["shadow_it"] == {"shadow_it"}
