"""classify.py: instance dicts (DescribeInstances shape) -> inventory entries, exact results."""

from __future__ import annotations

import pytest

from harmony_pipes.aws_discovery.classify import (
    Selection,
    TagSelector,
    classify,
    count_selectable_tags,
    key_name,
)
from harmony_pipes.aws_discovery.diff import record
from tests.helpers.discovery import validate_records

SEL = Selection(tags=(TagSelector("env", "prod"), TagSelector("team")), site="site-a")


def instance(iid: str = "i-0abc", tags: dict[str, str] | None = None, **extra: object) -> dict:
    inst = {
        "InstanceId": iid,
        "VpcId": "vpc-1",
        "PrivateIpAddress": "10.0.0.5",
        "PublicIpAddress": "54.1.2.3",
        "State": {"Code": 16, "Name": "running"},
        "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()],
    }
    inst.update(extra)
    return inst


def test_linux_with_one_ssh_tag_is_managed_ssh_with_that_user() -> None:
    entry = classify(
        instance(tags={"Name": "web", "env": "prod", "checkpoint_ssh:ubuntu": "deploy.pem"}), "us-east-1", SEL
    )
    assert entry == {
        "site": "site-a",
        "region": "us-east-1",
        "vpc_id": "vpc-1",
        "instance_id": "i-0abc",
        "name": "web",
        "platform": "linux",
        "private_ip": "10.0.0.5",
        "public_ip": "54.1.2.3",
        "state": "running",
        "tags": {"env": "prod"},
        "app": {"type": "ssh", "auth": "managed", "users": [{"user": "ubuntu", "key": "deploy"}]},
    }
    validate_records([record("snapshot", entry, "2026-01-01T00:00:00.000Z")])


def test_several_ssh_tags_give_several_users_sorted() -> None:
    tags = {"team": "core", "checkpoint_ssh:ec2-user": "a.pem", "checkpoint_ssh:admin": "b.pem"}
    entry = classify(instance(tags=tags), "eu-west-1", SEL)
    assert entry["app"]["users"] == [{"user": "admin", "key": "b"}, {"user": "ec2-user", "key": "a"}]
    assert entry["tags"] == {"team": "core"}


def test_no_ssh_tag_uses_default_user_and_key() -> None:
    sel = Selection(tags=SEL.tags, default_user="ubuntu", default_key="generic")
    entry = classify(instance(tags={"env": "prod"}), "us-east-1", sel)
    assert entry["app"] == {"type": "ssh", "auth": "managed", "users": [{"user": "ubuntu", "key": "generic"}]}


def test_no_ssh_tag_and_no_default_is_unconfigured_with_reason() -> None:
    entry = classify(instance(tags={"env": "prod"}), "us-east-1", SEL)
    assert entry["app"] is None
    assert entry["reasons"] == ["no checkpoint_ssh:<user> tag and no --default-user/--default-key"]
    validate_records([record("unconfigured", entry, "2026-01-01T00:00:00.000Z")])


def test_unknown_key_does_not_configure_and_default_is_not_used_instead() -> None:
    sel = Selection(
        tags=SEL.tags,
        default_user="ubuntu",
        default_key="generic",
        known_keys=frozenset({"generic", "deploy"}),
    )
    entry = classify(instance(tags={"env": "prod", "checkpoint_ssh:root": "stolen.pem"}), "us-east-1", sel)
    assert entry["app"] is None
    assert entry["reasons"] == ["tag 'checkpoint_ssh:root' names key 'stolen', which is not in --known-keys"]


def test_known_and_unknown_keys_keep_only_the_known_users() -> None:
    sel = Selection(tags=SEL.tags, known_keys=frozenset({"deploy"}))
    tags = {"env": "prod", "checkpoint_ssh:ubuntu": "deploy.pem", "checkpoint_ssh:root": "x.pem"}
    entry = classify(instance(tags=tags), "us-east-1", sel)
    assert entry["app"]["users"] == [{"user": "ubuntu", "key": "deploy"}]
    assert "reasons" not in entry


def test_invalid_ssh_tags_are_reasons() -> None:
    tags = {"env": "prod", "checkpoint_ssh:": "a.pem", "checkpoint_ssh:bob": ".pem"}
    entry = classify(instance(tags=tags), "us-east-1", SEL)
    assert entry["app"] is None
    assert entry["reasons"] == [
        "tag 'checkpoint_ssh:' does not name a valid Linux user",
        "tag 'checkpoint_ssh:bob' has no key name (expected <key-name>.pem)",
    ]


def test_windows_is_rdp_direct_and_ignores_ssh_tags() -> None:
    entry = classify(instance(tags={"env": "prod", "checkpoint_ssh:x": "y.pem"}, Platform="windows"), "us-east-1", SEL)
    assert entry["platform"] == "windows"
    assert entry["app"] == {"type": "rdp", "auth": "direct"}


def test_platform_details_is_not_used_for_detection() -> None:
    entry = classify(
        instance(tags={"env": "prod"}, PlatformDetails="Red Hat Enterprise Linux"),
        "us-east-1",
        Selection(tags=SEL.tags, default_user="u", default_key="k"),
    )
    assert entry["platform"] == "linux"


def test_selection_is_or_across_tags_and_exact_on_values() -> None:
    assert classify(instance(tags={"env": "prod"}), "r", SEL) is not None
    assert classify(instance(tags={"team": ""}), "r", SEL) is not None
    assert classify(instance(tags={"env": "dev"}), "r", SEL) is None
    assert classify(instance(tags={"Name": "only-name"}), "r", SEL) is None
    assert classify(instance(tags={}), "r", SEL) is None


def test_name_and_checkpoint_ssh_are_never_selectable() -> None:
    for text in ("Name", "Name=web", "checkpoint_ssh:ubuntu", "checkpoint_ssh:ubuntu=k.pem"):
        with pytest.raises(ValueError, match="cannot be selected"):
            TagSelector.parse(text)
    assert TagSelector.parse("a=b=c") == TagSelector("a", "b=c")
    assert TagSelector.parse("env=") == TagSelector("env", "")
    assert TagSelector.parse("env") == TagSelector("env", None)


def test_missing_ips_and_vpc_are_null() -> None:
    inst = instance(tags={"env": "prod", "checkpoint_ssh:u": "k.pem"})
    for key in ("PublicIpAddress", "PrivateIpAddress", "VpcId"):
        inst.pop(key)
    entry = classify(inst, "us-east-1", SEL)
    assert (entry["vpc_id"], entry["private_ip"], entry["public_ip"], entry["name"]) == (
        None,
        None,
        None,
        None,
    )


def test_key_name_strips_pem() -> None:
    assert key_name("deploy.pem") == "deploy"
    assert key_name(" Deploy.PEM ") == "Deploy"
    assert key_name("plain") == "plain"


def test_count_selectable_tags_excludes_reserved_and_counts_values() -> None:
    counts = count_selectable_tags(
        [
            instance(tags={"Name": "a", "env": "prod", "checkpoint_ssh:u": "k.pem"}),
            instance(tags={"env": "dev", "team": "x"}),
            instance(tags={"Name": "b"}),
        ]
    )
    assert counts == {
        ("env", None): 2,
        ("env", "prod"): 1,
        ("env", "dev"): 1,
        ("team", None): 1,
        ("team", "x"): 1,
    }


def test_server_side_filters_push_a_single_key_exactly_and_several_keys_as_tag_key() -> None:
    from harmony_pipes.aws_discovery.ec2 import build_filters

    assert build_filters(states=["running"], vpcs=[], tags=[("env", "prod"), ("env", "qa")]) == [
        {"Name": "instance-state-name", "Values": ["running"]},
        {"Name": "tag:env", "Values": ["prod", "qa"]},
    ]
    assert build_filters(states=[], vpcs=["vpc-1"], tags=[("env", "prod"), ("team", None)]) == [
        {"Name": "vpc-id", "Values": ["vpc-1"]},
        {"Name": "tag-key", "Values": ["env", "team"]},
    ]
    assert build_filters(states=[], vpcs=[], tags=[("env", None), ("env", "prod")]) == [
        {"Name": "tag-key", "Values": ["env"]}
    ]
    assert build_filters(states=[], vpcs=[], tags=[]) == []


def test_record_tags_are_the_matching_selected_tags_only() -> None:
    entry = classify(instance(tags={"env": "dev", "team": "x", "other": "y", "Name": "n"}), "r", SEL)
    assert entry["tags"] == {"team": "x"}  # env=dev shares the key of env=prod but was not selected
    entry = classify(instance(tags={"env": "prod", "team": ""}), "r", SEL)
    assert entry["tags"] == {"env": "prod", "team": ""}
