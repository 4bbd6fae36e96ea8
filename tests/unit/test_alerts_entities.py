"""The `data` sentence parser: golden cases in the real shapes, and malformed input of every kind.

Golden files: tests/fixtures/data_sentences/input.ndjson (one `{"name", "data"}` per line, written
by us in the shapes of real HEC events) and expected.ndjson (the `details` object each gives).
Regenerate after a deliberate change with `HARMONY_UPDATE_GOLDEN=1` and review the diff.
"""

from __future__ import annotations

import os
import random

import orjson
import pytest

from harmony_pipes.harmony_alerts.entities import MARK, Entity, parse_data, split_data
from tests.conftest import FIXTURES

CASES_DIR = FIXTURES / "data_sentences"
INPUTS = [orjson.loads(line) for line in (CASES_DIR / "input.ndjson").read_bytes().splitlines() if line.strip()]


def details(facts) -> dict | None:
    return None if facts is None else facts.to_json()


def test_golden_sentences() -> None:
    got = b"".join(
        orjson.dumps({"name": case["name"], "details": details(parse_data(case["data"]))}) + b"\n" for case in INPUTS
    )
    expected_path = CASES_DIR / "expected.ndjson"
    if os.environ.get("HARMONY_UPDATE_GOLDEN"):
        expected_path.write_bytes(got)
    assert got == expected_path.read_bytes()


def facts_of(name: str):
    (case,) = [c for c in INPUTS if c["name"] == name]
    return parse_data(case["data"])


def test_roles_of_an_email_threat() -> None:
    facts = facts_of("phishing_gmail")
    assert facts.shape == "email_threat"
    assert facts.scan == Entity("9a1c0e77b2d44f0c8c1e5d3a7b6f4e21", "avanan_ap_scan", "Phishing")
    assert (facts.sender, facts.subject, facts.recipient) == (
        "billing@paypa1-secure.example",
        "Your invoice is ready",
        "nora.kim@example.org",
    )
    assert facts.email_id == "5d0f3c2a9e8b4a7c9f1e2d3c4b5a6978" and facts.recipient_id == "108812345678901234567"


def test_escapes_inside_labels_are_decoded() -> None:
    assert facts_of("spam_o365_emoji_subject").subject == "Last chance \U0001f4b8 50% off"
    tricky = facts_of("label_with_braces_quotes_and_marker_text")
    assert tricky.subject == 'Re: {urgent}\' (#1) "quoted" \ue000' and tricky.recipient == "z@y.example"


def test_an_unknown_mailbox_is_no_recipient() -> None:
    facts = facts_of("suspected_phishing_unknown_mailbox")
    assert facts.shape == "email_threat" and facts.recipient is None and facts.recipient_id is None


def test_geo_logins() -> None:
    first = facts_of("geo_first_login")
    assert (first.user, first.action, first.country, first.ip) == ("kim.ito@corp.example", "logged in", "Peru", None)
    suspicious = facts_of("geo_suspicious_two_logins")
    assert [(x.country, x.ip) for x in suspicious.logins] == [("Romania", "203.0.113.7"), ("Viet Nam", "198.51.100.23")]
    assert (suspicious.country, suspicious.ip) == ("Viet Nam", "198.51.100.23")  # the event's own login


def test_entities_before_the_known_words_are_not_the_roles() -> None:
    facts = facts_of("prefix_entity_before_has_detected")
    assert facts.scan == Entity("s9", "ms_defender_scan", "phishing") and facts.recipient == "c@d.example"


@pytest.mark.parametrize(
    "name",
    ["unknown_sentence_with_entities", "truncated_placeholder", "hash_brace_that_is_not_json", "no_placeholders"],
)
def test_unknown_or_broken_sentences_give_no_facts(name: str) -> None:
    assert facts_of(name) is None


def test_split_keeps_text_that_is_not_a_placeholder() -> None:
    skeleton, entities = split_data('a #{nope} b #{"label": "x", "entity_type": "t"} c #{"a": [1, {"b": "}"}]} d')
    assert skeleton == f"a #{{nope}} b {MARK} c {MARK} d"
    assert entities == [Entity(None, "t", "x"), Entity(None, None, None)]


# -- malformed input: never an exception, always serializable --------------------------------------

ALPHABET = ['#{', '}', '{', '"', '\\', ':', ',', ' ', "'", "(", ")", "[", "]", "null", "true", "1e999", "-",
            '"entity_id"', '"label"', '"entity_type"', "\\ud83d", "\\udcb8", "\\u0000", "\ue000", "é", "\n",
            " attempt detected in an email from ", " - '", "'s mailbox)", "User ", " reported a phishing email ",
            "Unusual geo activity for ", ": ", " for the first time from ", " performed geo-suspicious events: ",
            " from ", " (1.2.3.4)", " is using ", " has detected ", " leak in '", "A user "]  # fmt: skip


def assert_total(data: str) -> None:
    facts = parse_data(data)
    orjson.dumps(details(facts))  # raises on a lone surrogate or a non-JSON value


def test_random_sentences() -> None:
    rng = random.Random(1212)
    for _ in range(20_000):
        assert_total("".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40))))


def test_every_truncation_and_mutation_of_real_sentences() -> None:
    rng = random.Random(3434)
    for case in INPUTS:
        data = case["data"]
        for end in range(len(data) + 1):
            assert_total(data[:end])
            assert_total(data[end:])
        for _ in range(300):
            chars = list(data)
            for _ in range(rng.randint(1, 6)):
                at = rng.randrange(len(chars) + 1)
                op = rng.random()
                if op < 0.4 and chars:
                    del chars[min(at, len(chars) - 1)]
                elif op < 0.8:
                    chars.insert(at, rng.choice(ALPHABET))
                elif chars:
                    chars[min(at, len(chars) - 1)] = rng.choice(ALPHABET)
            assert_total("".join(chars))


@pytest.mark.parametrize(
    "data",
    [
        "#{" * 5000,  # deep nesting attempts
        "#{" + "[" * 100_000,
        '#{"label": ' + "[" * 100_000,
        '#{"label": "\\ud800"} attempt detected',  # a lone surrogate in a label
        '#{"entity_id": 12, "entity_type": ["x"], "label": {"a": 1}} - #{"label": 3.5} is using #{"label": true}',
        "\x00\x01#{\x00}",
    ],
)
def test_hostile_sentences(data: str) -> None:
    assert_total(data)
