"""How aws-discovery reads EC2, proven through a counting proxy in front of a real moto server:
paginated DescribeInstances, regions read concurrently, transient throttling absorbed by the
retries, every option set from its environment variable, and the less common diffs (renamed,
vanished, region deselected)."""

from __future__ import annotations

import orjson
import pytest

from tests.helpers.discovery import (
    FaultProxy,
    MotoEc2,
    discover,
    records,
    strip_time,
    validate_records,
)

pytestmark = pytest.mark.integration

E1, W1, A2 = "us-east-1", "eu-west-1", "ap-southeast-2"
SSH_TAGS = {"checkpoint_ssh:ubuntu": "deploy.pem"}


def test_describe_instances_is_paginated(moto: MotoEc2, proxy: FaultProxy) -> None:
    # moto pages by reservation: 12 RunInstances calls = 12 reservations = 3 pages of 5.
    launched = [moto.launch(E1, {"env": "prod", **SSH_TAGS})[0]["InstanceId"] for _ in range(12)]
    result = discover(["--regions", E1, "--tags", "env", "--once", "--page-size", "5"], proxy.endpoint)
    assert result.returncode == 0, result.stderr
    out = records(result)
    validate_records(out)
    assert sorted(r["instance_id"] for r in out) == sorted(launched)
    assert proxy.count("DescribeInstances", E1) == 3
    env = {"AWS_DISCOVERY_PAGE_SIZE": "1000"}
    again = discover(["--regions", E1, "--tags", "env", "--once"], proxy.endpoint, env=env)
    assert len(records(again)) == 12 and proxy.count("DescribeInstances", E1) == 4


def test_regions_are_read_concurrently(moto: MotoEc2, proxy: FaultProxy) -> None:
    for region in (E1, W1, A2):
        moto.launch(region, {"env": "prod", **SSH_TAGS})
    proxy.delay_secs["DescribeInstances"] = 0.5  # each region's listing is held back
    result = discover(["--regions", f"{E1},{W1},{A2}", "--tags", "env", "--once"], proxy.endpoint)
    assert result.returncode == 0, result.stderr
    assert sorted(r["region"] for r in records(result)) == sorted([E1, W1, A2])
    assert proxy.max_in_flight["DescribeInstances"] == 3  # all three regions were outstanding at once


def test_transient_throttling_is_retried_not_reported(moto: MotoEc2, proxy: FaultProxy, tmp_path) -> None:
    iid = moto.launch(W1, {"env": "prod", **SSH_TAGS})[0]["InstanceId"]
    proxy.fail(W1, 503, "RequestLimitExceeded", times=1)  # the next W1 request is throttled
    result = discover(["--regions", W1, "--tags", "env", "--once"], proxy.endpoint)
    assert result.returncode == 0, result.stderr
    assert [r["instance_id"] for r in records(result)] == [iid]
    assert proxy.hits[W1] == 1 and proxy.count("DescribeInstances", W1) == 2
    assert "warning" not in result.stderr and result.stats["regions_failed"] == 0

    # Throttled on every attempt: --max-attempts 2 means two requests, then --once exits 75.
    proxy.fail(W1, 503, "RequestLimitExceeded")
    result = discover(["--regions", W1, "--tags", "env", "--once", "--max-attempts", "2"], proxy.endpoint)
    assert result.returncode == 75, result.stderr
    assert proxy.hits[W1] == 1 + 2
    assert "AWS is throttling or temporarily unavailable (RequestLimitExceeded" in result.stderr


def test_test_subcommand_exit_75_when_throttled(moto: MotoEc2, proxy: FaultProxy) -> None:
    proxy.fail(E1, 503, "RequestLimitExceeded")
    result = discover(["test", "--regions", W1 + "," + E1, "--max-attempts", "1"], proxy.endpoint)
    lines = result.stdout.decode().splitlines()
    assert result.returncode == 75, result.stdout
    # credentials and DescribeRegions go through the first region (W1); E1's listing is throttled
    assert lines[-2] == f"ok    describe-instances {W1}: answered (0 instances on the first page)"
    assert lines[-1].startswith(f"FAIL  describe-instances {E1}: DescribeInstances in {E1}: AWS is throttling")
    assert lines[-1].endswith("— try again later; reduce the request rate or use --retry-mode adaptive")

    # GetCallerIdentity throttled too: the first step fails after exactly --max-attempts requests
    proxy.fail(W1, 503, "RequestLimitExceeded")
    hits = proxy.hits[E1]
    result = discover(["test", "--regions", f"{W1},{E1}", "--max-attempts", "1"], proxy.endpoint)
    assert result.returncode == 75
    assert result.stdout.decode().splitlines() == [
        "FAIL  credentials: GetCallerIdentity: AWS is throttling or temporarily unavailable "
        "(RequestLimitExceeded: injected by the test proxy) after retries — try again later; reduce the "
        "request rate or use --retry-mode adaptive"
    ]
    assert (proxy.hits[W1], proxy.hits[E1]) == (1, hits)


def test_every_option_from_its_environment_variable(moto: MotoEc2, proxy: FaultProxy, tmp_path) -> None:
    vpc, subnet = moto.vpc(E1)
    plain = moto.launch(E1, {"Name": "plain", "team": "core"}, subnet_id=subnet)[0]["InstanceId"]
    known = moto.launch(E1, {"team": "core", "checkpoint_ssh:admin": "ops.pem"}, subnet_id=subnet)[0]["InstanceId"]
    unknown = moto.launch(E1, {"team": "x", "checkpoint_ssh:root": "bad.pem"}, subnet_id=subnet)[0]["InstanceId"]
    stopped = moto.launch(E1, {"team": "core"}, subnet_id=subnet)[0]["InstanceId"]
    moto.ec2(E1).stop_instances(InstanceIds=[stopped])
    moto.launch(E1, {"team": "core"})  # default VPC: outside AWS_DISCOVERY_VPCS
    moto.launch(W1, {"team": "core"})  # region not selected
    env = {
        "AWS_DISCOVERY_REGIONS": E1,
        "AWS_DISCOVERY_VPCS": vpc,
        "AWS_DISCOVERY_TAGS": "team",
        "AWS_DISCOVERY_SITE": "branch-7",
        "AWS_DISCOVERY_DEFAULT_USER": "ec2-user",
        "AWS_DISCOVERY_DEFAULT_KEY": "generic.pem",
        "AWS_DISCOVERY_KNOWN_KEYS": "generic,ops",
        "AWS_DISCOVERY_INSTANCE_STATES": "running,stopped",
        "AWS_DISCOVERY_ONCE": "1",
        "AWS_DISCOVERY_RETRY_MODE": "standard",
        "AWS_DISCOVERY_MAX_ATTEMPTS": "1",
        "AWS_DISCOVERY_READ_TIMEOUT_SECS": "30",
        "AWS_DISCOVERY_PAGE_SIZE": "5",
        "HARMONY_PIPES_LOG_FORMAT": "json",
        "HARMONY_PIPES_STATE_DIR": str(tmp_path),  # a root: aws-discovery keeps <root>/discovery
    }
    result = discover([], proxy.endpoint, env=env)
    assert result.returncode == 0, result.stderr
    out = {r["instance_id"]: r for r in records(result)}
    validate_records(out.values())
    assert sorted(out) == sorted([plain, known, unknown, stopped])
    assert {r["site"] for r in out.values()} == {"branch-7"}
    assert out[plain]["app"]["users"] == [{"user": "ec2-user", "key": "generic"}]
    assert out[known]["app"]["users"] == [{"user": "admin", "key": "ops"}]
    assert (out[unknown]["op"], out[unknown]["reasons"]) == (
        "unconfigured",
        ["tag 'checkpoint_ssh:root' names key 'bad', which is not in --known-keys"],
    )
    assert out[stopped]["state"] == "stopped"
    logs = [orjson.loads(line) for line in result.stderr.splitlines() if line.startswith('{"level"')]
    assert any(line["msg"].startswith("cycle done: 1 instance is left unconfigured") for line in logs)
    assert (tmp_path / "discovery" / "inventory.json").is_file()

    # AWS_DISCOVERY_RESYNC re-emits the snapshot from the same state; without it nothing changed.
    assert records(discover([], proxy.endpoint, env=env)) == []
    again = records(discover([], proxy.endpoint, env={**env, "AWS_DISCOVERY_RESYNC": "true"}))
    assert sorted((r["op"], r["instance_id"]) for r in again) == sorted(
        [("snapshot", plain), ("snapshot", known), ("snapshot", stopped), ("unconfigured", unknown)]
    )
    # AWS_DISCOVERY_STATE_DIR wins over the shared root.
    own = tmp_path / "own"
    discover([], proxy.endpoint, env={**env, "AWS_DISCOVERY_STATE_DIR": str(own)})
    assert (own / "inventory.json").is_file()
    # list subcommands: AWS_DISCOVERY_JSON
    tags = discover(["list-tags"], proxy.endpoint, env={**env, "AWS_DISCOVERY_JSON": "1"})
    assert tags.returncode == 0, tags.stderr
    assert orjson.loads(tags.stdout_lines[0]) == {"tag": "team", "key": "team", "value": None, "instances": 4}


def test_subcommand_inherits_options_given_before_it(moto: MotoEc2, proxy: FaultProxy) -> None:
    moto.launch(E1, {"env": "prod"})
    proxy.fail(E1, 503, "RequestLimitExceeded")
    result = discover(["--regions", E1, "--max-attempts", "1", "list-tags"], proxy.endpoint)
    assert result.returncode == 75
    assert proxy.hits[E1] == 1  # the group's --max-attempts 1 applied to the subcommand


def test_rename_vanish_and_deselected_region(moto: MotoEc2, proxy: FaultProxy, tmp_path) -> None:
    renamed = moto.launch(E1, {"Name": "old", "env": "prod", **SSH_TAGS})[0]["InstanceId"]
    west = moto.launch(W1, {"env": "prod", **SSH_TAGS})[0]["InstanceId"]
    args = ["--tags", "env", "--once", "--state-dir", str(tmp_path)]
    first = discover(["--regions", f"{E1},{W1}", *args], proxy.endpoint)
    assert "the inventory is in memory only" not in first.stderr
    assert sorted(r["instance_id"] for r in records(first)) == sorted([renamed, west])

    moto.ec2(E1).create_tags(Resources=[renamed], Tags=[{"Key": "Name", "Value": "new"}])
    result = discover(["--regions", E1, *args], proxy.endpoint)  # W1 no longer selected
    out = records(result)
    validate_records(out)
    assert [(r["op"], r["instance_id"], r.get("changed"), r.get("reasons")) for r in out] == [
        ("remove", west, None, [f"region {W1} is no longer selected"]),  # sorted by region: eu < us
        ("update", renamed, ["name"], None),
    ]
    assert out[1]["name"] == "new"

    moto.reset()  # the instance is gone for good (AWS forgets terminated instances after ~1 h)
    out = records(discover(["--regions", E1, *args], proxy.endpoint))
    assert strip_time(out) == [
        {**strip_time([o for o in records(first) if o["instance_id"] == renamed])[0], "op": "remove",
         "name": "new", "reasons": ["instance no longer exists"]}
    ]  # fmt: skip


def test_without_state_dir_says_so_once(moto: MotoEc2, proxy: FaultProxy) -> None:
    result = discover(["--regions", E1, "--tags", "env", "--once"], proxy.endpoint)
    assert result.returncode == 0
    assert result.stderr.count("no --state-dir: the inventory is in memory only") == 1


def test_clients_use_adaptive_retries_and_the_given_attempts() -> None:
    """The real botocore client our reader builds (no request is sent)."""
    import boto3

    from harmony_pipes.aws_discovery.ec2 import Ec2Reader

    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name=E1)
    client = Ec2Reader(session, endpoint_url="http://127.0.0.1:9", max_attempts=7).client(W1)
    assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 7}
    assert client.meta.region_name == W1


def _doc_samples() -> list[dict]:
    from tests.conftest import REPO_ROOT

    text = (REPO_ROOT / "docs" / "aws-discovery.md").read_text()
    block = text.split("### Records", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    return [orjson.loads(line) for line in block.splitlines() if line.strip()]


def _shape(record: dict) -> dict:
    """A record with the values moto makes up (ids, addresses, time) replaced by their kind."""
    masked = {k: (None if v is None else "<generated>") for k, v in record.items() if k in _GENERATED}
    return {**record, **masked, "keys": list(record)}


_GENERATED = ("vpc_id", "instance_id", "private_ip", "public_ip", "observed_at")


def _ops_by_name(records: list[dict]) -> dict[str | None, list[str]]:
    ops: dict[str | None, list[str]] = {}
    for r in records:
        ops.setdefault(r["name"], []).append(r["op"])
    return ops


def test_the_records_sample_in_the_docs_is_real_output(moto: MotoEc2, proxy: FaultProxy, tmp_path) -> None:
    """docs/aws-discovery.md shows two cycles of exactly this scenario; keep them in step."""
    vpc, subnet = moto.vpc(E1, "10.1.0.0/16")
    web = moto.launch(E1, {"Name": "web", "env": "prod", **SSH_TAGS}, subnet_id=subnet)[0]["InstanceId"]
    win = moto.launch(E1, {"Name": "win", "env": "prod"}, windows=True)[0]["InstanceId"]
    moto.launch(W1, {"env": "prod"})
    args = ["--regions", f"{E1},{W1}", "--tags", "env=prod", "--site", "hq", "--once", "--state-dir", str(tmp_path)]
    real = records(discover(args, proxy.endpoint))
    alloc = moto.ec2(E1).allocate_address(Domain="vpc")
    moto.ec2(E1).associate_address(InstanceId=web, AllocationId=alloc["AllocationId"])
    moto.ec2(E1).terminate_instances(InstanceIds=[win])
    real += records(discover(args, proxy.endpoint))
    samples = _doc_samples()
    validate_records(samples)
    # ids are random, so two records of one region may swap places: compare in a fixed order
    key = lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS)  # noqa: E731
    assert sorted(map(_shape, samples), key=key) == sorted(map(_shape, real), key=key)
    # per instance, the same ops in the same cycles (across instances the order follows the ids)
    assert _ops_by_name(samples) == _ops_by_name(real)
    cycles = [[r for r in real if r["observed_at"] == t] for t in dict.fromkeys(r["observed_at"] for r in real)]
    assert len(cycles) == 2
    for cycle in cycles:  # each cycle's records come sorted by region, then instance id
        assert [(r["region"], r["instance_id"]) for r in cycle] == sorted(
            (r["region"], r["instance_id"]) for r in cycle
        )
    assert next(r["vpc_id"] for r in real if r["instance_id"] == web) == vpc


def test_region_with_a_server_error_is_carried_forward(moto: MotoEc2, proxy: FaultProxy, tmp_path) -> None:
    east = moto.launch(E1, {"env": "prod", **SSH_TAGS})[0]["InstanceId"]
    west = moto.launch(W1, {"env": "prod", **SSH_TAGS})[0]["InstanceId"]
    args = ["--regions", f"{E1},{W1}", "--tags", "env", "--once", "--state-dir", str(tmp_path)]
    assert len(records(discover(args, proxy.endpoint))) == 2
    proxy.fail(E1, 500, "InternalError")
    moto.ec2(E1).terminate_instances(InstanceIds=[east])
    moto.ec2(W1).terminate_instances(InstanceIds=[west])
    result = discover([*args, "--max-attempts", "1", "--log-format", "json"], proxy.endpoint)
    assert result.returncode == 0, result.stderr
    assert [(r["op"], r["instance_id"]) for r in records(result)] == [("remove", west)]
    warnings = [orjson.loads(x) for x in result.stderr.splitlines() if x.startswith('{"level":"warning"')]
    assert [w["msg"].split(":")[0] for w in warnings] == [
        f"region {E1} failed this cycle; its 1 known instances are kept, none removed"
    ]
    assert "InternalError" in warnings[0]["msg"] and warnings[0]["fix"].startswith("try again later")
    state = orjson.loads((tmp_path / "inventory.json").read_bytes())
    assert east in state["data"]["inventory"]  # carried forward in the persisted inventory
