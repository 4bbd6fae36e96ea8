"""`details` from the parser's plan cache (entities.data_details) against the uncached reference
(`parse_data(data, cache=False).to_json()`: every sentence matched against SHAPES afresh, facts
assigned role by role), on golden, emulator, random and mutated sentences; and the cache itself:
a sentence never gets another's values, callers get fresh dicts, the cache stays bounded and never
keeps a skeleton that carries per-event text.
"""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony_pipes.harmony_alerts import entities
from harmony_pipes.harmony_alerts.entities import MARK, PLAN_CACHE_MAX, data_details, parse_data, split_data
from harmony_pipes.harmony_alerts.normalize import KeepPolicy, build_alert
from harmony_pipes.hec_emulator.generate import EventGenerator
from tests.conftest import FIXTURES

INPUTS = [
    orjson.loads(line)
    for line in (FIXTURES / "data_sentences" / "input.ndjson").read_bytes().splitlines()
    if line.strip()
]


@pytest.fixture(autouse=True)
def empty_plan_cache():
    entities._plans.clear()
    yield
    entities._plans.clear()


def reference(data: str) -> bytes:
    facts = parse_data(data, cache=False)
    return orjson.dumps(None if facts is None else facts.to_json())


def assert_same_as_reference(data: str) -> None:
    got = data_details(data)
    assert orjson.dumps(got) == reference(data)  # same keys, same order, same values
    facts = parse_data(data)  # DataFacts from the cached plan too
    assert orjson.dumps(None if facts is None else facts.to_json()) == orjson.dumps(got)


def ph(entity_id: str | None, entity_type: str, label: str) -> str:
    ident = "null" if entity_id is None else f'"{entity_id}"'
    return f'#{{"entity_id": {ident}, "entity_type": "{entity_type}", "label": {orjson.dumps(label).decode()}}}'


def mail_tail(sender: str, subject: str, mail_id: str, mailbox: str, box_id: str) -> str:
    return (
        f" in an email from {ph(None, 'google_user', sender)} - '{ph(mail_id, 'google_mail_email', subject)}' "
        f"({ph(box_id, 'google_user', mailbox)}'s mailbox)"
    )


def threat(scan_id: str, verdict: str, sender: str, subject: str, mail_id: str, mailbox: str, box_id: str) -> str:
    return f"{ph(scan_id, 'avanan_ap_scan', verdict)} attempt detected" + mail_tail(
        sender, subject, mail_id, mailbox, box_id
    )


def test_golden_sentences_equal_the_reference_cold_and_cached() -> None:
    for _ in range(2):  # first pass fills the cache, second reads it
        for case in INPUTS:
            assert_same_as_reference(case["data"])


def test_emulator_sentences_share_plans_and_keep_their_own_values() -> None:
    datas = []
    for seed in range(4):
        generator = EventGenerator(seed)
        datas += [generator.make(1_760_000_000_000_000 + i)["data"] for i in range(1500)]
    by_skeleton: dict[str, set[bytes]] = {}
    for data in datas:
        if "#{" not in data:
            continue
        assert_same_as_reference(data)
        by_skeleton.setdefault(split_data(data)[0], set()).add(orjson.dumps(data_details(data)))
    # a dozen templates or so, each shared by many sentences whose details differ
    assert 5 <= len(entities._plans) <= 40
    shared = [found for skeleton, found in by_skeleton.items() if skeleton in entities._plans]
    assert sum(len(found) for found in shared) > 10 * len(shared)
    assert all(len(found) > 1 for found in shared if len(found) != 1)


def test_the_cache_never_returns_another_sentences_values() -> None:
    first = threat("s1", "Phishing", "a@bad.example", "Invoice", "m1", "ann@example.com", "u1")
    second = threat("s2", "Spam", "b@worse.example", "Parcel", "m2", "bob@example.org", "u2")
    assert split_data(first)[0] == split_data(second)[0]  # one template, one plan
    assert data_details(first)["subject"] == "Invoice"
    got = data_details(second)
    assert got == {
        "shape": "email_threat",
        "scan": {"engine": "avanan_ap_scan", "verdict": "Spam", "id": "s2"},
        "sender": "b@worse.example",
        "subject": "Parcel",
        "email_id": "m2",
        "recipient": "bob@example.org",
        "recipient_id": "u2",
    }
    assert len(entities._plans) == 1
    # and an unknown mailbox in the same template is still no recipient
    unknown = threat("s3", "Spam", "c@x.example", "Hi", "m3", "<Unknown>", "")
    assert "recipient" not in data_details(unknown) and "recipient_id" not in data_details(unknown)


@pytest.mark.parametrize(
    "data",
    [
        threat("s", "Phishing", "a #{b@c.example", "re: #{x} \ue000", "m", "d@e.example", "u"),  # #{ in labels
        "\ue000 has detected " + ph("s", "t", "x") + mail_tail("a@b.example", "S", "m", "d@e.example", "u"),  # marker
        threat("", "Phishing", "a@b.example", "S", "", "d@e.example", ""),  # empty ids are no ids
        threat("s", "Phishing", "a@b.example", "S", "m", "d@e.example", "u").replace(
            '#{"entity_id": null', '#{"entity_id":null', 1
        ),  # one placeholder not in the plain form: the loop reads the sentence
        "#{ has detected " + ph("s", "t", "x") + mail_tail("a@b.example", "S", "m", "d@e.example", "u"),  # #{ as text
        "User " + ph("u", "t", "r@x.example") + " reported a phishing email " + ph("m", "t", "Subject"),
    ],
)
def test_the_one_pass_split_reads_what_the_loop_reads(data: str) -> None:
    assert_same_as_reference(data)
    assert data_details(data) is not None


def test_callers_get_fresh_dicts() -> None:
    data = threat("s1", "Phishing", "a@bad.example", "Invoice", "m1", "ann@example.com", "u1")
    got = data_details(data)
    got["attachment_md5"] = "0" * 32
    got["scan"]["id"] = "changed"
    again = data_details(data)
    assert "attachment_md5" not in again and again["scan"]["id"] == "s1"
    policy = KeepPolicy(keep_all=True)
    with_md5 = build_alert({"eventId": "1", "data": data, "attachmentMd5": "f" * 32}, None, policy)
    without = build_alert({"eventId": "2", "data": data}, None, policy)
    assert with_md5["details"]["attachment_md5"] == "f" * 32
    assert "attachment_md5" not in without["details"] and without["details"] == data_details(data)


def test_geo_suspicious_and_unknown_skeletons_are_never_kept() -> None:
    rng = random.Random(9)
    for i in range(300):
        ip1, ip2 = f"203.0.113.{rng.randint(1, 254)}", f"198.51.100.{rng.randint(1, 254)}"
        login = "performed activity (login_success)"
        geo = (
            f"{ph(str(i), 'google_user', 'kim@example.com')} performed geo-suspicious events: "
            f"{ph('a', 'google_event_login', login)} from Peru ({ip1}) and after {i} minutes "
            f"{ph('b', 'google_event_login', login)} from Chile ({ip2})"
        )
        assert_same_as_reference(geo)
        assert data_details(geo)["ip"] == ip2
        unknown = f"{ph('x', 't', 'y')} did something odd at 10.0.{i}.1 in an email from nobody"
        assert_same_as_reference(unknown)
    assert entities._plans == {}


def test_the_cache_stays_bounded() -> None:
    largest = 0
    for i in range(3 * PLAN_CACHE_MAX):
        # a different free-text prefix each time: a new template, a new plan
        data = f"Engine {i} has detected {ph(str(i), 'avanan_ap_scan', 'Phishing')}" + mail_tail(
            "a@b.example", f"subject {i}", "m", "c@d.example", "u"
        )
        got = data_details(data)
        assert got is not None and got["subject"] == f"subject {i}" and got["scan"]["id"] == str(i)
        largest = max(largest, len(entities._plans))
    assert largest == PLAN_CACHE_MAX
    assert_same_as_reference(INPUTS[0]["data"])


# -- random and mutated sentences ------------------------------------------------------------------

TOKENS = ['#{', '}', '"', '\\', "'", "(", ")", " ", "null", "\ue000", "<Unknown>", "é",
          " attempt detected", " in an email from ", " - '", "'s mailbox)", "User ", " reported a phishing email ",
          "Unusual geo activity for ", ": ", " for the first time from ", " performed geo-suspicious events: ",
          " from ", " (1.2.3.4)", " is using ", " has detected ", " leak in '", "A user ", "malicious attachment(s)",
          " has detected malicious attachment(s) in '"]  # fmt: skip
labels = st.text(st.characters(codec="utf-8", exclude_characters='"\\'), max_size=12)
placeholders = st.builds(
    lambda i, t, label, plain: ph(i, t, label) if plain else orjson.dumps({"label": label, "entity_id": i}).decode(),
    st.none() | st.sampled_from(["", "id1", "ext:x@y.example"]),
    st.sampled_from(["avanan_ap_scan", "google_user", "office365_emails_email"]),
    labels | st.just("<Unknown>") | st.just(""),
    st.booleans(),
)
pieces = st.sampled_from(TOKENS) | placeholders | placeholders.map(lambda p: "#" + p if p.startswith("{") else p)


@settings(max_examples=400, deadline=None)
@given(st.lists(pieces, max_size=14))
def test_random_sentences_equal_the_reference(parts: list[str]) -> None:
    assert_same_as_reference("".join(parts))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(INPUTS), st.lists(st.tuples(st.integers(0, 2000), st.sampled_from(TOKENS)), max_size=4))
def test_mutated_golden_sentences_equal_the_reference(case: dict, edits: list[tuple[int, str]]) -> None:
    data = case["data"]
    for at, token in edits:
        at %= len(data) + 1
        data = data[:at] + token + data[at:]
    assert_same_as_reference(data)
    assert_same_as_reference(data.replace(MARK, ""))


# -- a user report's richer placeholder ------------------------------------------------------------


def api_json(value: object) -> str:
    """JSON in the API's layout: `", "` between items, `": "` after keys."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{orjson.dumps(k).decode()}: {api_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(api_json(v) for v in value) + "]"
    return orjson.dumps(value).decode()


def rich(entity_id: str | None, label: str, entity_type: str, tooltips: list[dict[str, str]]) -> str:
    """The reporter as the API writes it in a user report."""
    placeholder = {
        "display": "embedded-entity", "entity_id": entity_id, "label": label, "entity_type": entity_type,
        "tooltip_fields": tooltips,
    }  # fmt: skip
    return "#" + api_json(placeholder)


def test_a_user_reports_rich_placeholder_is_read_without_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    tooltips = [{"type": "text", "value": "noa@example.net", "key": "Email address"}, {"type": "text", "value": "N"}]
    for entity_id, tips in (("dc96-a171", tooltips), (None, []), ("", tooltips[:1])):
        data = f"User {rich(entity_id, 'noa@example.net', 'office365_emails_user', tips)} reported a phishing email "
        data += ph("c8dc", "office365_emails_email", "Meeting notes")
        expected = reference(data)
        monkeypatch.setattr(entities, "split_data", None)  # the loop: must not be needed
        assert orjson.dumps(data_details(data)) == expected
        monkeypatch.undo()
        assert orjson.loads(expected) == {
            "shape": "user_report",
            "subject": "Meeting notes",
            "email_id": "c8dc",
            "recipient": "noa@example.net",
            **({"recipient_id": entity_id} if entity_id else {}),
        }


tooltip_text = st.text(st.characters(codec="utf-8"), max_size=6)  # quotes, backslashes, control characters


@settings(max_examples=400, deadline=None)
@given(
    st.none() | st.sampled_from(["", "dc96-a171", "ext:x@y.example"]) | tooltip_text,
    labels | tooltip_text | st.just("<Unknown>"),
    st.sampled_from(["office365_emails_user", "google_user"]) | tooltip_text,
    st.lists(st.dictionaries(tooltip_text, tooltip_text, max_size=3), max_size=3),
    st.sampled_from(["", ", ", ",", "  "]),
)
def test_rich_placeholders_equal_the_reference(
    entity_id: str | None, label: str, entity_type: str, tooltips: list[dict[str, str]], spacing: str
) -> None:
    reporter = rich(entity_id, label, entity_type, tooltips)
    if spacing:  # layouts the one pass does not know: the loop reads them, the result is the same
        reporter = reporter.replace(", ", spacing, 1)
    email = ph("m", "office365_emails_email", "Subject")
    assert_same_as_reference(f"User {reporter} reported a phishing email {email}")
    assert_same_as_reference(f"User {email} reported a phishing email {reporter}")
