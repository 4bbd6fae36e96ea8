"""aws-discovery report, pure parts: state document -> report dict -> text; state format 2 and
the migration of format 1. Inputs are inventory files written by real syncs against moto."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import orjson
import pytest

from harmony_pipes._core.errors import ConfigError
from harmony_pipes.aws_discovery.classify import Selection, TagSelector, classify
from harmony_pipes.aws_discovery.inventory_state import STATE_FORMAT_VERSION, document, migrate, next_health
from harmony_pipes.aws_discovery.report import (
    REASON_KINDS,
    age_text,
    build_report,
    reason_kind,
    render,
    table,
)
from tests.conftest import FIXTURES
from tests.helpers.schemas import assert_valid

DIR = FIXTURES / "aws_discovery"
FAILED_STATE = DIR / "inventory-format2-failed-region.json"
GOLDEN_NOW = "2026-12-04T16:56:27.159Z"  # 125 s after that state's last cycle


def load(path: Path) -> dict:
    doc = orjson.loads(path.read_bytes())
    return migrate(doc["format_version"], doc["data"])


def secs(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def golden_report() -> dict:
    return build_report(load(FAILED_STATE), now_secs=secs(GOLDEN_NOW), state_dir="/var/lib/harmony-pipes/discovery")


def test_report_of_a_real_state_matches_the_golden_json_and_its_schema() -> None:
    report = golden_report()
    assert report == orjson.loads((DIR / "report-failed-region.json").read_bytes())
    assert_valid("discovery-report", report)


@pytest.mark.parametrize(
    ("columns", "golden"), [(True, "report-failed-region.txt"), (False, "report-failed-region.tsv")]
)
def test_rendering_matches_the_golden_text(columns: bool, golden: str) -> None:
    assert "\n".join(render(golden_report(), columns=columns)) + "\n" == (DIR / golden).read_text()


def test_report_counts_follow_the_inventory_exactly() -> None:
    state = load(FAILED_STATE)
    report = build_report(state, now_secs=secs(GOLDEN_NOW))
    entries = list(state["inventory"].values())
    apps = [e["app"] for e in entries if e["app"]]
    assert report["synced"] == len(apps) == 4
    assert report["apps"] == {
        "ssh": sum(a["type"] == "ssh" for a in apps),
        "rdp": sum(a["type"] == "rdp" for a in apps),
    }
    assert report["ssh_users"] == sum(len(a.get("users", ())) for a in apps) == 4
    assert report["by_region"] == {"eu-west-1": 2, "us-east-1": 2}
    assert sorted(u["instance_id"] for u in report["unconfigured"]) == sorted(
        e["instance_id"] for e in entries if not e["app"]
    )
    assert {u["instance_id"]: u["reasons"] for u in report["unconfigured"]} == {
        e["instance_id"]: e["reasons"] for e in entries if not e["app"]
    }
    assert report["failed_regions"] == [
        {
            "region": "eu-west-1",
            "since": "2026-12-04T16:54:22.159Z",
            "since_age_secs": 125,
            "last_failed_at": "2026-12-04T16:54:22.159Z",
            "error": state["failed_regions"]["eu-west-1"]["error"],
        }
    ]
    assert report["last_sync_at"] == "2026-12-04T16:54:22.159Z" and report["last_sync_age_secs"] == 125


def _reasons_of(tags: dict[str, str], **selection: object) -> list[str]:
    instance = {"InstanceId": "i-0123", "Tags": [{"Key": k, "Value": v} for k, v in {"env": "prod", **tags}.items()]}
    entry = classify(instance, "us-east-1", Selection(tags=(TagSelector("env"),), **selection))  # type: ignore[arg-type]
    assert entry is not None and entry["app"] is None
    return entry["reasons"]


def test_each_reason_classify_writes_is_grouped_with_its_fix() -> None:
    """The report recognises classify's own texts; if classify's wording changes, this fails."""
    cases = {
        "no_user": _reasons_of({}),
        "unknown_key": _reasons_of({"checkpoint_ssh:root": "stolen.pem"}, known_keys=frozenset({"deploy"})),
        "invalid_user": _reasons_of({"checkpoint_ssh:9lives": "deploy.pem"}),
        "no_key": _reasons_of({"checkpoint_ssh:admin": ".pem"}),
    }
    for kind, reasons in cases.items():
        assert len(reasons) == 1 and reason_kind(reasons[0]).kind == kind, reasons
    fixes = {k.kind: k.fix for k in REASON_KINDS}
    assert "tag `checkpoint_ssh:<user>` = `<key>.pem`" in fixes["no_user"]
    assert "set --default-user/--default-key" in fixes["no_user"]
    assert fixes["unknown_key"].startswith("add the key to --known-keys")
    assert reason_kind("something new").kind == "other"


def test_an_instance_with_several_reasons_is_listed_under_each() -> None:
    reasons = _reasons_of(
        {"checkpoint_ssh:9lives": "deploy.pem", "checkpoint_ssh:root": "stolen.pem"}, known_keys=frozenset({"deploy"})
    )
    entry = {"region": "us-east-1", "instance_id": "i-0123", "vpc_id": None, "name": None, "app": None}
    state = {
        "site": None,
        "cycle": 1,
        "last_sync_at": GOLDEN_NOW,
        "inventory": {"i-0123": {**entry, "reasons": reasons}},
    }
    report = build_report(state, now_secs=secs(GOLDEN_NOW))
    assert [(g["reason"], [i["reason"] for i in g["instances"]]) for g in report["unconfigured_by_reason"]] == [
        ("unknown_key", [reasons[1]]),
        ("invalid_user", [reasons[0]]),
    ]
    assert report["synced"] == 0 and report["apps"] == {"ssh": 0, "rdp": 0} and report["tags"] == []


def test_format1_state_migrates_with_its_time_as_the_last_sync() -> None:
    doc = orjson.loads((DIR / "inventory-format1.json").read_bytes())
    assert doc["format_version"] == 1
    data = migrate(1, doc["data"])
    assert data["inventory"] == doc["data"]["inventory"]
    assert data["last_sync_at"] == data["last_cycle_at"] == doc["data"]["written_at"]
    assert data["regions"] == ["eu-west-1", "us-east-1"] and data["failed_regions"] == {}
    assert migrate(STATE_FORMAT_VERSION, data) is data


@pytest.mark.parametrize(
    ("version", "data", "message"),
    [
        (3, {"inventory": {}}, "has format version 3, this version reads 1 to 2"),
        (None, {"inventory": {}}, "has format version None"),
        (2, ["not", "a", "dict"], "is not an aws-discovery inventory"),
        (1, {"cursor": 5}, "is not an aws-discovery inventory"),
    ],
)
def test_unknown_state_is_refused_with_the_fix(version: object, data: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        migrate(version, data, path="/s/inventory.json")
    assert message in info.value.message and "/s/inventory.json" in info.value.message
    assert info.value.fix


def test_failing_region_keeps_its_since_until_it_answers() -> None:
    regions = ("us-east-1", "eu-west-1")
    first = next_health(None, regions=regions, failed={}, at="T1")
    assert first == {"regions": list(regions), "last_cycle_at": "T1", "last_sync_at": "T1", "failed_regions": {}}
    second = next_health(first, regions=regions, failed={"eu-west-1": "throttled"}, at="T2")
    assert second["failed_regions"] == {"eu-west-1": {"since": "T2", "last_failed_at": "T2", "error": "throttled"}}
    assert second["last_sync_at"] == "T2"  # us-east-1 was read
    third = next_health(second, regions=regions, failed={"eu-west-1": "denied", "us-east-1": "denied"}, at="T3")
    assert third["failed_regions"]["eu-west-1"] == {"since": "T2", "last_failed_at": "T3", "error": "denied"}
    assert third["failed_regions"]["us-east-1"]["since"] == "T3"
    assert third["last_sync_at"] == "T2" and third["last_cycle_at"] == "T3"  # nothing was read at T3
    healed = next_health(third, regions=regions, failed={}, at="T4")
    assert healed["failed_regions"] == {} and healed["last_sync_at"] == "T4"
    deselected = next_health(third, regions=("us-east-1",), failed={}, at="T5")
    assert deselected["failed_regions"] == {}
    doc = document(site="hq", cycle=4, written_at="T4", inventory={}, health=healed)
    assert set(doc) == {"site", "cycle", "written_at", "inventory", "regions", "last_cycle_at", "last_sync_at",
                        "failed_regions"}  # fmt: skip


@pytest.mark.parametrize(
    ("age", "text"),
    [(None, "age unknown"), (0, "0 s ago"), (89, "89 s ago"), (90, "1 min ago"), (5399, "89 min ago"),
     (5400, "1 h ago"), (172799, "47 h ago"), (172800, "2 days ago")],
)  # fmt: skip
def test_age_text(age: int | None, text: str) -> None:
    assert age_text(age) == text


def test_table_aligns_on_a_terminal_and_tabs_in_a_pipe() -> None:
    rows = [("REGION", "SYNCED", "NAME"), ("eu-west-1", 12, None), ("total", 12)]
    assert table(rows, columns=True) == [
        "  REGION     SYNCED  NAME",
        "  eu-west-1  12      -",
        "  total      12",
    ]
    assert table(rows, columns=False) == ["REGION\tSYNCED\tNAME", "eu-west-1\t12\t-", "total\t12"]
