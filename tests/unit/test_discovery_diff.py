"""diff.py: previous inventory + current entries -> exactly the records a consumer needs."""

from __future__ import annotations

import copy

from harmony_pipes.aws_discovery.diff import GONE_REASON, diff, snapshot_with_carry
from tests.helpers.discovery import validate_records

T = "2026-11-25T00:00:00.000Z"
SSH = {"type": "ssh", "auth": "managed", "users": [{"user": "ubuntu", "key": "deploy"}]}


def entry(iid: str, region: str = "us-east-1", app: dict | None = SSH, **changes: object) -> dict:
    e = {
        "site": "s",
        "region": region,
        "vpc_id": "vpc-1",
        "instance_id": iid,
        "name": iid,
        "platform": "linux",
        "private_ip": "10.0.0.1",
        "public_ip": None,
        "state": "running",
        "tags": {"env": "prod"},
        "app": copy.deepcopy(app),
    }
    if app is None:
        e["reasons"] = ["no checkpoint_ssh:<user> tag and no --default-user/--default-key"]
    e.update(changes)
    return e


def inv(*entries: dict) -> dict:
    return {e["instance_id"]: e for e in entries}


def ops(records: list[dict]) -> list[tuple[str, str]]:
    return [(r["op"], r["instance_id"]) for r in records]


def test_first_cycle_is_a_snapshot_plus_unconfigured() -> None:
    records, inventory = diff(None, inv(entry("i-2"), entry("i-1", app=None)), observed_at=T)
    assert ops(records) == [("unconfigured", "i-1"), ("snapshot", "i-2")]
    assert set(inventory) == {"i-1", "i-2"}
    validate_records(records)


def test_no_change_emits_nothing() -> None:
    prev = inv(entry("i-1"), entry("i-2", app=None))
    records, inventory = diff(prev, copy.deepcopy(prev), observed_at=T)
    assert records == []
    assert inventory == prev


def test_add_update_remove_with_changed_fields() -> None:
    prev = inv(entry("i-1"), entry("i-2"), entry("i-3"))
    cur = inv(entry("i-1", public_ip="54.0.0.1", state="stopped"), entry("i-2"), entry("i-4"))
    records, _ = diff(prev, cur, observed_at=T, gone_reasons={"i-3": "instance is terminated"})
    assert ops(records) == [("update", "i-1"), ("remove", "i-3"), ("add", "i-4")]
    assert records[0]["changed"] == ["public_ip", "state"]
    assert records[1]["reasons"] == ["instance is terminated"]
    assert records[1]["app"] == SSH  # the consumer learns which app to remove
    validate_records(records)


def test_remove_without_lookup_has_generic_reason() -> None:
    records, _ = diff(inv(entry("i-1")), {}, observed_at=T)
    assert records[0]["reasons"] == [GONE_REASON]


def test_unconfigured_is_reported_once() -> None:
    prev = inv(entry("i-1", app=None))
    records, inventory = diff(prev, inv(entry("i-1", app=None, public_ip="1.2.3.4")), observed_at=T)
    assert records == []
    assert inventory["i-1"]["public_ip"] == "1.2.3.4"


def test_new_unconfigured_instance_is_reported_in_its_cycle() -> None:
    records, _ = diff(inv(entry("i-1")), inv(entry("i-1"), entry("i-2", app=None)), observed_at=T)
    assert ops(records) == [("unconfigured", "i-2")]


def test_unconfigured_then_configured_is_an_add() -> None:
    records, _ = diff(inv(entry("i-1", app=None)), inv(entry("i-1")), observed_at=T)
    assert ops(records) == [("add", "i-1")]
    validate_records(records)


def test_app_becoming_unconfigured_is_remove_then_unconfigured() -> None:
    records, _ = diff(inv(entry("i-1")), inv(entry("i-1", app=None)), observed_at=T)
    assert ops(records) == [("remove", "i-1"), ("unconfigured", "i-1")]
    assert records[0]["reasons"] == ["became unconfigured"]
    assert records[0]["app"] == SSH
    assert records[1]["app"] is None
    validate_records(records)


def test_unconfigured_instance_that_vanishes_emits_nothing() -> None:
    records, inventory = diff(inv(entry("i-1", app=None)), {}, observed_at=T)
    assert records == []
    assert inventory == {}


def test_failed_region_is_carried_forward_never_removed() -> None:
    prev = inv(entry("i-1", region="us-east-1"), entry("i-2", region="eu-west-1"))
    records, inventory = diff(prev, inv(entry("i-1")), failed_regions={"eu-west-1"}, observed_at=T)
    assert records == []
    assert inventory == prev


def test_users_change_is_an_update_of_app() -> None:
    two = {"type": "ssh", "auth": "managed", "users": [{"user": "a", "key": "k"}, {"user": "b", "key": "k"}]}
    records, _ = diff(inv(entry("i-1")), inv(entry("i-1", app=two, name="renamed")), observed_at=T)
    assert records[0]["changed"] == ["name", "app"]


def test_resync_snapshot_keeps_failed_region_instances() -> None:
    prev = inv(entry("i-1"), entry("i-2", region="eu-west-1"))
    records, inventory = snapshot_with_carry(prev, inv(entry("i-1")), failed_regions={"eu-west-1"}, observed_at=T)
    assert ops(records) == [("snapshot", "i-2"), ("snapshot", "i-1")]
    assert set(inventory) == {"i-1", "i-2"}
