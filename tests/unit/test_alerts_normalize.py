"""The pure alert rules: severity scale, timestamps, the keep policy, dedupe store."""

from __future__ import annotations

import os

import pytest

from harmony_pipes._core.errors import ConfigError
from harmony_pipes._core.hec import event_time_ms, parse_severity
from harmony_pipes.harmony_alerts.dedupe import DedupeLog, DigestSet, key_digest
from harmony_pipes.harmony_alerts.formats import iso_ms, to_ecs
from harmony_pipes.harmony_alerts.normalize import DEFAULT_DEDUPE_KEY, DedupeKey, KeepPolicy, build_alert


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1), ("5", 5), (3, 3), (4.0, 4), ("Very Low", 1), ("lowest", 1), ("Low", 2), ("MEDIUM", 3),
        ("High", 4), ("Critical", 5), ("Highest", 5), (" 2 ", 2),
        ("0", None), ("6", None), (7, None), (True, None), (None, None), ("urgent", None), (2.5, None), ([], None),
    ],
)  # fmt: skip
def test_severity_scale(value, expected) -> None:
    assert parse_severity(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-10-14T07:02:11.229935+00:00", 1728889331229),
        ("2025-06-29T21:37:45+00:00", 1751233065000),  # no fraction
        ("2025-06-29T21:37:45Z", 1751233065000),
        ("2025-06-29T21:37:45", 1751233065000),  # naive = UTC
        ("2025-06-29T23:37:45.5+02:00", 1751233065500),  # other offsets take the slow path
        ("2024-02-29T23:59:59.999999Z", 1709251199999),
        (1751233065, 1751233065000),  # epoch seconds
        (1751233065000, 1751233065000),  # epoch ms
        ("2025-06-29T21:61:45Z", None),
        ("yesterday", None),
        (None, None),
        ({"a": 1}, None),
    ],
)
def test_event_time_ms(value, expected) -> None:
    assert event_time_ms(value) == expected


def test_keep_policy_or_semantics_and_reasons() -> None:
    policy = KeepPolicy()
    assert policy.reasons("phishing", 5) == ["type:phishing", "severity>=4"]
    assert policy.reasons("spam", 4) == ["severity>=4"]
    assert policy.reasons("DLP", 1) == ["type:dlp"]
    suspicious = KeepPolicy(["Suspicious malware"], 6)
    assert suspicious.reasons("suspicious malware", 1) == suspicious.reasons("suspicious_malware", 1)
    assert suspicious.reasons("Suspicious  Malware", 1) == ["type:suspicious_malware"]
    assert policy.reasons("spam", 3) is None
    assert policy.reasons(None, None) is None
    assert KeepPolicy.from_options(["spam"], 6, keep_all=True).reasons("anomaly", 5) == ["all"]


def test_missing_and_odd_keys_never_crash() -> None:
    alert = build_alert({"eventId": 12345, "type": "malware", "state": ["x"], "severity": {"a": 1}}, None, KeepPolicy())
    assert alert is not None
    assert alert["event_id"] == "12345"
    assert alert["event_state"] == "['x']"
    assert alert["severity"] is None and alert["severity_label"] is None
    assert alert["timestamp"] is None
    assert alert["dedupe_key"] == ":12345"
    assert build_alert({}, None, KeepPolicy(keep_all=True))["dedupe_key"] is None


def test_digest_set_evicts_oldest_first_and_by_age() -> None:
    keys = [key_digest(f"t:{i}") for i in range(5000)]
    store = DigestSet(max_keys=1000)
    for i, key in enumerate(keys):
        assert store.add(key, i)
    assert len(store) == 1000
    assert all(k in store for k in keys[-1000:])
    assert not any(k in store for k in keys[:4000])
    assert not store.add(keys[-1], 9999)  # still there: a duplicate
    aging = DigestSet(max_keys=100, ttl_secs=10)
    for i in range(50):
        aging.add(key_digest(str(i)), now_secs=i)
    assert len(aging) == 11  # each add expires keys older than 10 s: 39..49 are left
    aging.expire(now_secs=55)
    assert len(aging) == 5  # 45..49


def test_digest_set_grows_without_losing_keys() -> None:
    keys = [key_digest(f"k{i}") for i in range(70_000)]
    store = DigestSet(max_keys=1_000_000)
    for key in keys:
        store.add(key, 0)
    assert len(store) == 70_000 and all(k in store for k in keys)


def test_key_log_round_trip_and_torn_tail(tmp_path) -> None:
    path = tmp_path / "keys.bin"
    log = DedupeLog(path)
    log.append([(key_digest("a:1"), 100), (key_digest("a:2"), 101)])
    log.close()
    with path.open("ab") as handle:
        handle.write(b"\x01\x02\x03")  # a torn entry from a kill -9 mid-write
    restored = DigestSet(10)
    assert DedupeLog(path).load_into(restored) == 2
    assert key_digest("a:1") in restored and key_digest("a:2") in restored
    log = DedupeLog(path)
    log.load_into(restored)
    log.compact(restored)
    again = DigestSet(10)
    assert DedupeLog(path).load_into(again) == 2


def test_key_log_of_another_format_version_is_refused_with_the_fix(tmp_path) -> None:
    path = tmp_path / "keys.bin"
    path.write_bytes(b"HPDEDUP1" + bytes(12))  # version 1 held blake2b digests
    with pytest.raises(ConfigError) as caught:
        DedupeLog(path).load_into(DigestSet(10))
    assert "another harmony-alerts version" in caught.value.one_line()
    assert "move it away" in caught.value.one_line()


def test_digests_are_stable_xxh3_values() -> None:
    """Persisted keys must mean the same after an upgrade or on another machine."""
    assert key_digest("exampletest:c7a2ea20b2f14c942e05319acb5c7427") == 0xAA80024B617082E8


@pytest.mark.parametrize(
    "value",
    [1e300, 99999999999999999, -1e15, "9999-12-31T23:59:59.999999-14:00", "0000-01-01T00:00:00Z"],
)
def test_event_time_outside_years_1_to_9999_is_null_not_a_crash(value) -> None:
    """These used to crash the whole command: ISO formatting (ECS) or the 64-bit JSON encoder."""
    assert event_time_ms(value) is None


def test_event_time_at_the_edges_of_iso_8601() -> None:
    assert event_time_ms("0001-01-01T00:00:00Z") == -62135596800000
    assert event_time_ms("9999-12-31T23:59:59.999999+00:00") == 253402300799999
    assert event_time_ms("1969-12-31T23:59:59.999Z") == -1


@pytest.mark.parametrize(
    ("epoch_ms", "expected"),
    [
        (1728972520022, "2024-10-15T06:08:40.022Z"),
        (0, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (-62135596800000, "0001-01-01T00:00:00.000Z"),  # four-digit year (strftime gave "1-01-01")
        (253402300799999, "9999-12-31T23:59:59.999Z"),
        (253402300800000, None),
        (None, None),
    ],
)
def test_iso_ms(epoch_ms, expected) -> None:
    assert iso_ms(epoch_ms) == expected


def test_digest_set_ttl_expires_a_key_that_comes_again() -> None:
    """A key seen again after its TTL is new again, even when no *new* key arrived meanwhile
    (expiry used to run only on the insert path, so a repeat kept an expired key alive)."""
    store = DigestSet(max_keys=100, ttl_secs=1)
    key = key_digest("t:e1")
    assert store.add(key, now_secs=100)
    assert not store.add(key, now_secs=101)  # 1 s old: still within the TTL
    assert store.add(key, now_secs=103)  # first seen at 100, so expired at 103 (older than 1 s)
    assert not store.add(key, now_secs=103)
    assert store.evicted == 1 and len(store) == 1


def test_key_log_appends_after_a_torn_tail_stay_aligned(tmp_path) -> None:
    """A torn tail (kill -9 or a full disk mid-append) is cut off at load, so the entries the
    next run appends are read back as themselves (they used to be read misaligned, as garbage)."""
    path = tmp_path / "keys.bin"
    first = DedupeLog(path)
    first.append([(key_digest("a:1"), 100), (key_digest("a:2"), 101)])
    first.close()
    with path.open("ab") as handle:
        handle.write(b"\x01\x02\x03")
    second = DedupeLog(path)
    assert second.load_into(DigestSet(10)) == 2
    assert path.stat().st_size == 8 + 2 * 12
    second.append([(key_digest("a:3"), 102), (key_digest("a:4"), 103)])
    second.close()
    restored = DigestSet(10)
    assert DedupeLog(path).load_into(restored) == 4
    assert [k for k, _ in restored.entries()] == [key_digest(f"a:{i}") for i in range(1, 5)]
    assert [t for _, t in restored.entries()] == [100, 101, 102, 103]


@pytest.mark.parametrize("left", [b"", b"HPDE"])
def test_key_log_with_no_or_half_a_header_is_a_fresh_log(tmp_path, left) -> None:
    """A crash (or full disk) between creating the file and writing its header must not make the
    next start refuse the state dir, nor write entries without a header."""
    path = tmp_path / "keys.bin"
    path.write_bytes(left)
    log = DedupeLog(path)
    assert log.load_into(DigestSet(10)) == 0
    log.append([(key_digest("a:1"), 100)])
    log.close()
    restored = DigestSet(10)
    assert DedupeLog(path).load_into(restored) == 1
    assert key_digest("a:1") in restored


def test_key_log_short_writes_are_completed(tmp_path, monkeypatch) -> None:
    """os.write may write less than asked (a nearly full disk); the rest must still be written."""
    import harmony_pipes.harmony_alerts.dedupe as dedupe_module

    real_write = os.write
    monkeypatch.setattr(dedupe_module.os, "write", lambda fd, data: real_write(fd, bytes(data[:5])))
    path = tmp_path / "keys.bin"
    log = DedupeLog(path)
    log.append([(key_digest(f"a:{i}"), i) for i in range(20)])
    log.close()
    monkeypatch.undo()
    restored = DigestSet(100)
    assert DedupeLog(path).load_into(restored) == 20
    assert all(key_digest(f"a:{i}") in restored for i in range(20))


def test_a_type_spelled_with_a_space_is_the_same_type_in_ecs() -> None:
    event = {"eventId": "x", "type": "Suspicious malware", "severity": "5"}
    spaced = build_alert(event, None, KeepPolicy())
    assert spaced["event_type"] == "Suspicious malware"  # the event's own spelling is kept
    assert to_ecs(spaced, event)["event"]["category"] == ["email", "malware"]


# -- --dedupe-key -------------------------------------------------------------------------------

PAIR = [
    {"eventId": "4134ab", "customerId": "c", "type": "spam", "severity": "4", "entityId": "4134ab",
     "eventCreated": "2025-09-04T00:01:57.002329+00:00"},
    {"eventId": "4134ab", "customerId": "c", "type": "suspicious_phishing", "severity": "4", "entityId": "4134ab",
     "eventCreated": "2025-08-30T15:55:30.899631+00:00"},
]  # fmt: skip


def test_the_default_dedupe_key_is_tenant_and_event_id() -> None:
    key = DedupeKey.parse(DEFAULT_DEDUPE_KEY)
    assert key.default
    keys = [build_alert(e, None, KeepPolicy(), key)["dedupe_key"] for e in PAIR]
    assert keys == ["c:4134ab", "c:4134ab"] == [build_alert(e, None, KeepPolicy())["dedupe_key"] for e in PAIR]


def test_a_wider_dedupe_key_tells_the_pair_apart() -> None:
    key = DedupeKey.parse("tenant, eventId,type,eventCreated")
    first, second = (build_alert(e, "t", KeepPolicy(), key)["dedupe_key"] for e in PAIR)
    assert first == "t:4134ab\x1fspam\x1f2025-09-04T00:01:57.002329+00:00" and first != second
    without_tenant = DedupeKey.parse("eventId")
    assert build_alert(PAIR[0], "t", KeepPolicy(), without_tenant)["dedupe_key"] == ":4134ab"
    assert build_alert({"type": "spam", "severity": "5"}, "t", KeepPolicy(), key)["dedupe_key"] == "t:\x1fspam\x1f"
    assert build_alert({"severity": "5"}, "t", KeepPolicy(), DedupeKey.parse("tenant,entityId"))["dedupe_key"] is None


@pytest.mark.parametrize("bad", ["", "tenant", "tenant,eventid", "eventId,severity_label", " , "])
def test_a_dedupe_key_names_known_fields(bad: str) -> None:
    with pytest.raises(ValueError):
        DedupeKey.parse(bad)
