"""Key template and record time (pure)."""

from __future__ import annotations

import orjson
import pytest

from harmony_pipes._core.ndjson import OversizedLine
from harmony_pipes.s3_batch.keys import (
    DEFAULT_KEY_TEMPLATE,
    KeyTemplate,
    KeyTemplateError,
    TimeExtractor,
    format_iso_ms,
    key_problem,
    parse_time_ms,
    safe_key_part,
)

MAY_1 = 1_714_521_600_000  # 2024-05-01T00:00:00Z


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (MAY_1, MAY_1),  # epoch ms
        (MAY_1 // 1000, MAY_1),  # epoch s
        (MAY_1 / 1000 + 0.5, MAY_1 + 500),  # fractional s
        (MAY_1 * 1000, MAY_1),  # µs
        (MAY_1 * 1_000_000, MAY_1),  # ns
        (str(MAY_1), MAY_1),  # Harness sends auditEventTime as a string of ms
        ("2024-05-01T00:00:00Z", MAY_1),
        ("2024-05-01T02:00:00+02:00", MAY_1),
        ("2024-05-01T00:00:00.250", MAY_1 + 250),  # naive = UTC
        ("yesterday", None),
        ("", None),
        (True, None),
        (None, None),
        ({"a": 1}, None),
        (-5, None),
    ],
)
def test_parse_time_ms(value, expected) -> None:
    assert parse_time_ms(value) == expected


def test_time_extractor_default_order_and_arrival_fallback() -> None:
    extract = TimeExtractor()
    assert extract({"timestamp": MAY_1, "eventCreated": "2020-01-01T00:00:00Z"}, 7) == MAY_1
    assert extract({"auditEventTime": str(MAY_1)}, 7) == MAY_1
    assert extract({"eventCreated": "2024-05-01T00:00:00Z"}, 7) == MAY_1
    assert extract({"timestamp": "garbage", "eventCreated": "2024-05-01T00:00:00Z"}, 7) == MAY_1
    assert extract({"other": 1}, 7) == 7


def test_time_extractor_dotted_path() -> None:
    extract = TimeExtractor("checkpoint_harmony.eventCreated")
    assert extract({"checkpoint_harmony": {"eventCreated": "2024-05-01T00:00:00Z"}, "timestamp": 1}, 7) == MAY_1
    assert extract({"checkpoint_harmony": "flat"}, 7) == 7


def test_default_template_follows_the_seed() -> None:
    template = KeyTemplate.parse(DEFAULT_KEY_TEMPLATE)
    key = template.render(
        prefix="harmony/",
        first_ms=MAY_1,
        last_ms=MAY_1 + 5,
        written_ms=MAY_1 + 9,
        sha256_hex="ab" * 32,
        ext=".ndjson.gz",
    )
    assert key == f"harmony/dt=2024-05-01/{MAY_1}_{MAY_1 + 5}_{MAY_1 + 9}_{'ab' * 8}.ndjson.gz"


def test_every_placeholder_renders() -> None:
    template = KeyTemplate.parse("{prefix}{field:tenantid}/{field:a.b}/{date}/{hour}/{t1}-{t2}-{t3}-{hash}{ext}")
    key = template.render(
        prefix="p/",
        first_ms=MAY_1 + 3_600_000 * 13,
        last_ms=2,
        written_ms=3,
        sha256_hex="0123456789abcdef" * 4,
        ext=".json",
        field_values=["acme", "x"],
    )
    assert key == f"p/acme/x/2024-05-01/13/{MAY_1 + 3_600_000 * 13}-2-3-0123456789abcdef.json"


def test_partition_by_field_date_and_hour() -> None:
    template = KeyTemplate.parse("{prefix}{field:tenantid}/dt={date}/h={hour}/{hash}{ext}")
    assert template.partition_of({"tenantid": "acme"}, MAY_1) == ("acme", "2024-05-01", "00")
    assert template.partition_of({}, MAY_1 + 3_600_000) == ("unknown", "2024-05-01", "01")
    assert KeyTemplate.parse("{prefix}{t1}{hash}").partition_of({"x": 1}, MAY_1) == ()


@pytest.mark.parametrize("value", ["../etc", "a/b", "..", "", None, "x" * 500])
def test_record_values_cannot_escape_the_prefix(value) -> None:
    part = safe_key_part(value)
    assert "/" not in part and part not in ("..", ".") and 0 < len(part) <= 128


@pytest.mark.parametrize("bad", ["{nope}", "{field}", "{t1", "/{prefix}{hash}", "{date:x}"])
def test_bad_templates_are_refused(bad: str) -> None:
    with pytest.raises(KeyTemplateError):
        KeyTemplate.parse(bad)


def test_iso_format() -> None:
    assert format_iso_ms(MAY_1 + 7) == "2024-05-01T00:00:00.007Z"


# Values a hostile or broken producer can put in a time field (issue 11, case 1). None of them names
# an instant a key can hold (years 1..9999 UTC), so each falls back to arrival time.
POISON_TIMES = [
    1e308,
    1e25,
    -1e306,
    "Infinity",
    "-Infinity",
    "NaN",
    "1e400",
    "-1e400",
    99999999999999999999999,
    -99999999999999999999999,
    "99999999999999999999999",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    float("inf"),
    float("nan"),
]


@pytest.mark.parametrize("value", POISON_TIMES, ids=repr)
def test_poison_times_fall_back_to_arrival_time(value) -> None:
    assert parse_time_ms(value) is None
    assert TimeExtractor()({"timestamp": value}, MAY_1) == MAY_1
    assert TimeExtractor()({"timestamp": value, "eventCreated": "2024-05-01T00:00:00Z"}, 7) == MAY_1


@pytest.mark.parametrize(
    ("value", "iso"),
    [
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59.000Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
        ("0999-06-01T10:00:00+00:00", "0999-06-01T10:00:00.000Z"),
    ],
)
def test_the_edges_of_the_time_range_render(value, iso) -> None:
    ms = parse_time_ms(value)
    assert ms is not None and format_iso_ms(ms) == iso
    template = KeyTemplate.parse("{date}/{hour}/{t1}{ext}")
    key = template.render(prefix="", first_ms=ms, last_ms=ms, written_ms=ms, sha256_hex="0" * 64, ext=".x")
    assert key.startswith(iso[:10] + "/" + iso[11:13] + "/")
    assert template.partition_of({}, ms) == (iso[:10], iso[11:13])


# Issue 11, case 2: a template that can never give a valid key is refused at start.
@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("../escape/{hash}{ext}", "'..'"),
        ("{prefix}../{hash}{ext}", "'..'"),
        ("{prefix}a/./{hash}{ext}", "'.'"),
        ("{prefix}", "{hash}"),
        ("{prefix}{t3}{ext}", "{hash}"),
        ("{prefix}.s3-batch-tmp/{hash}{ext}", "starts with '.'"),
        ("{prefix}.{field:t}/{hash}{ext}", "starts with '.'"),
        ("{prefix}dt={date}/{ext}{hash}", "starts with '.'"),
        ("{prefix}a//{hash}{ext}", "empty"),
        ("{prefix}{hash}/", "ends with '/'"),
        ("{prefix}a\tb/{hash}{ext}", "control character"),
        ("{prefix}" + "x" * 1000 + "{hash}{ext}", "1024"),
    ],
)
def test_templates_that_cannot_give_a_valid_key_are_refused(template: str, reason: str) -> None:
    parsed = KeyTemplate.parse(template)
    with pytest.raises(KeyTemplateError) as caught:
        parsed.check(prefixes=["", "logs/"], ext=".ndjson.gz", file_store=False)
    assert reason in str(caught.value)


def test_long_segments_are_refused_only_for_file_stores() -> None:
    template = KeyTemplate.parse("{prefix}{field:a}{field:b}/{hash}{ext}")  # 2 x 128 characters
    template.check(prefixes=["p/"], ext=".ndjson.gz", file_store=False)
    with pytest.raises(KeyTemplateError, match="255"):
        template.check(prefixes=[""], ext=".ndjson.gz", file_store=True)


def test_a_destination_prefix_is_checked_too() -> None:
    with pytest.raises(KeyTemplateError, match=r"'\.\.'"):
        KeyTemplate.parse(DEFAULT_KEY_TEMPLATE).check(prefixes=["../up/"], ext=".ndjson", file_store=False)


@pytest.mark.parametrize(
    "template",
    [
        DEFAULT_KEY_TEMPLATE,
        "{prefix}tenant={field:tenantid}/dt={date}/{t1}_{t2}_{t3}_{hash}{ext}",
        "{prefix}{field:a.b}/{date}/{hour}/{hash}{ext}",
        "{hash}",
        "x/{field:t}.{hash}{ext}",
    ],
)
def test_good_templates_pass_the_check(template: str) -> None:
    KeyTemplate.parse(template).check(prefixes=["", "a/b/"], ext=".json.zst", file_store=True)


@pytest.mark.parametrize("value", [".s3-batch-tmp", ".hidden", "..", ".", "...", "..x", ".s3-batch-tmp/x"])
def test_record_values_never_make_a_hidden_or_dot_segment(value) -> None:
    part = safe_key_part(value)
    assert not part.startswith(".") and "/" not in part
    template = KeyTemplate.parse("{prefix}{field:t}/{hash}{ext}")
    key = template.render(
        prefix="", first_ms=MAY_1, last_ms=MAY_1, written_ms=MAY_1, sha256_hex="0" * 64, ext=".x", field_values=[part]
    )
    assert key_problem(key) is None


def test_the_times_of_a_chunk_are_those_of_its_records_one_by_one() -> None:
    lines = [
        b'{"timestamp": 1714521600123, "a": 1}',
        b'{"timestamp": "2024-05-01T00:00:01Z"}',
        b'{"auditEventTime": 1714521602}',
        b'{"timestamp": true, "eventCreated": "1714521603000"}',
        b'{"b": 2}',
        b'{"timestamp": 1e308}',
    ]
    extractor = TimeExtractor()
    assert extractor.of_lines(lines, 5) == [extractor(orjson.loads(line), 5) for line in lines]
    assert extractor.of_lines(lines[:1] * 3, 5) == [1_714_521_600_123] * 3  # the all-epoch-ms shortcut
    nested = TimeExtractor("meta.at")
    assert nested.of_lines([b'{"meta": {"at": 1714521600000}}', b'{"meta": 3}'], 5) == [1_714_521_600_000, 5]


@pytest.mark.parametrize(
    "bad", [b"", b"   ", b"not json", b"[1]", b'"text"', b"7", b'{"timestamp": 1', b'{"x": 1e400}', b'{"x": "\xff"}']
)
def test_a_chunk_with_any_line_that_is_not_a_record_has_no_times(bad: bytes) -> None:
    """None sends the whole chunk through the per-record path: it counts the bad lines."""
    good = b'{"timestamp": 1714521600123}'
    for extractor in (TimeExtractor(), TimeExtractor("meta.at")):
        assert extractor.of_lines([good, bad, good], 5) is None
    assert TimeExtractor().of_lines([good, OversizedLine(2 << 20, b"{")], 5) is None  # type: ignore[list-item]


OBJECT_LINES = [
    {"timestamp": 1714564800123, "a": 1},  # the shortcut: first key, epoch ms, named once
    {"timestamp": 1714564800123},  # the only key
    {"timestamp": 1714564800, "a": 1},  # seconds: parsed
    {"timestamp": 1714564800123.5, "a": 1},  # a float
    {"timestamp": -5, "eventCreated": "2024-05-01T00:00:00Z"},
    {"timestamp": "1714564800123", "a": 1},  # a string
    {"timestamp": 9999999999999999999, "a": 1},  # out of range
    {"timestamp": 1714564800123, "nested": {"timestamp": 1}},  # named twice: parsed
    {"note": 'say "timestamp":5 here', "timestamp": 1714564800999},  # not first
    {"timestamp": 1714564800123, "note": '\\"timestamp\\":1'},  # escaped quotes in a string
    {"eventCreated": "2024-05-01T00:00:00Z"},
    {"other": 1},  # arrival time
    {"timestamp": 1714564800123, "ünï": "cödé"},
]


@pytest.mark.parametrize("field", [None, "timestamp", "eventCreated", "meta.at", 'we"ird'])
def test_times_of_lines_handed_on_as_objects_equal_the_per_record_path(field: str | None) -> None:
    extract = TimeExtractor(field)
    lines = [orjson.dumps(record) for record in OBJECT_LINES]
    expected = [extract(orjson.loads(line), 42) for line in lines]
    assert extract.of_object_lines(lines, 42) == expected
    if field is None:
        assert expected[0] == expected[1] == 1714564800123 and expected[8] == 1714564800999
        assert expected[7] == 1714564800123  # the top-level value, not the nested one
        assert expected[11] == 42


def test_a_duplicated_time_key_is_parsed_as_a_parser_would_read_it() -> None:
    """Two top-level keys of the same name: the line is parsed (orjson keeps the last value)."""
    line = b'{"timestamp":1714564800123,"timestamp":1714564800456}'
    assert TimeExtractor().of_object_lines([line], 42) == [TimeExtractor()(orjson.loads(line), 42)]
    assert TimeExtractor().of_object_lines([line], 42) == [1714564800456]
