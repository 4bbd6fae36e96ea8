"""aws-discovery against a real moto server over HTTP: classification, filters, sync, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import orjson
import pytest

from tests.conftest import command_path, free_port
from tests.helpers.discovery import (
    RESET,
    FaultProxy,
    MotoEc2,
    discover,
    discovery_env,
    records,
    strip_time,
    validate_records,
)
from tests.helpers.logs import error_lines

pytestmark = pytest.mark.integration

E1, W1 = "us-east-1", "eu-west-1"
BOTH = f"{E1},{W1}"
USER_DEPLOY = {"user": "ubuntu", "key": "deploy"}


def ssh(*users: dict) -> dict:
    return {"type": "ssh", "auth": "managed", "users": list(users)}


def by_id(items: list[dict]) -> dict[str, dict]:
    return {r["instance_id"]: r for r in items}


def cycle(moto: MotoEc2, state_dir, *extra: str, endpoint: str | None = None):
    args = [
        "--regions",
        BOTH,
        "--tags",
        "env=prod",
        "--tags",
        "team",
        "--site",
        "hq",
        "--once",
        "--state-dir",
        str(state_dir),
        *extra,
    ]
    result = discover(args, endpoint or moto.endpoint)
    assert result.returncode == 0, result.stderr
    out = records(result)
    validate_records(out)
    return result, out


def test_snapshot_classifies_every_kind_of_instance_exactly(moto: MotoEc2, tmp_path) -> None:
    vpc_a, subnet_a = moto.vpc(E1, "10.1.0.0/16")
    vpc_b, subnet_b = moto.vpc(E1, "10.2.0.0/16")
    one = moto.launch(E1, {"Name": "web", "env": "prod", "checkpoint_ssh:ubuntu": "deploy.pem"}, subnet_id=subnet_a)
    several = moto.launch(
        E1,
        {
            "Name": "db",
            "team": "data",
            "checkpoint_ssh:postgres": "db.pem",
            "checkpoint_ssh:ubuntu": "deploy.pem",
        },
        subnet_id=subnet_b,
    )
    zero = moto.launch(E1, {"env": "prod"}, subnet_id=subnet_a)
    unknown = moto.launch(W1, {"env": "prod", "checkpoint_ssh:root": "stolen.pem"})
    windows = moto.launch(W1, {"Name": "ad", "team": "it", "checkpoint_ssh:x": "deploy.pem"}, windows=True)
    moto.launch(E1, {"Name": "name-only"})
    moto.launch(W1, {"env": "dev", "checkpoint_ssh:ubuntu": "deploy.pem"})  # not selected

    result = discover(
        [
            "--regions",
            BOTH,
            "--tags",
            "env=prod,team",
            "--site",
            "hq",
            "--once",
            "--known-keys",
            "deploy,db.pem",
        ],
        moto.endpoint,
    )
    assert result.returncode == 0, result.stderr
    out = records(result)
    validate_records(out)

    def expected(op, inst, region, vpc_id, name, platform, tags, app, reasons=None):
        full = moto.describe(region, inst[0]["InstanceId"])
        rec = {
            "op": op,
            "site": "hq",
            "region": region,
            "vpc_id": vpc_id,
            "instance_id": inst[0]["InstanceId"],
            "name": name,
            "platform": platform,
            "private_ip": full["PrivateIpAddress"],
            "public_ip": full.get("PublicIpAddress"),
            "state": "running",
            "tags": tags,
            "app": app,
        }
        if reasons:
            rec["reasons"] = reasons
        return rec

    default_w1 = moto.describe(W1, unknown[0]["InstanceId"])["VpcId"]
    want = [
        expected("snapshot", one, E1, vpc_a, "web", "linux", {"env": "prod"}, ssh(USER_DEPLOY)),
        expected(
            "snapshot",
            several,
            E1,
            vpc_b,
            "db",
            "linux",
            {"team": "data"},
            ssh({"user": "postgres", "key": "db"}, USER_DEPLOY),
        ),
        expected(
            "unconfigured",
            zero,
            E1,
            vpc_a,
            None,
            "linux",
            {"env": "prod"},
            None,
            ["no checkpoint_ssh:<user> tag and no --default-user/--default-key"],
        ),
        expected(
            "snapshot",
            windows,
            W1,
            default_w1,
            "ad",
            "windows",
            {"team": "it"},
            {"type": "rdp", "auth": "direct"},
        ),
        expected(
            "unconfigured",
            unknown,
            W1,
            default_w1,
            None,
            "linux",
            {"env": "prod"},
            None,
            ["tag 'checkpoint_ssh:root' names key 'stolen', which is not in --known-keys"],
        ),
    ]
    key = lambda r: (r["region"], r["instance_id"])  # noqa: E731
    assert strip_time(out) == sorted(want, key=key)
    assert len({r["observed_at"] for r in out}) == 1
    assert "2 instances are left unconfigured" in result.stderr
    assert "unconfigured=2" in result.stderr
    stats = result.stats
    assert stats["snapshot"] == 3 and stats["unconfigured"] == 2 and stats["records_out"] == 5
    assert stats["cycles"] == 1 and stats["regions_failed"] == 0


def test_default_user_configures_untagged_linux_only(moto: MotoEc2) -> None:
    plain = moto.launch(E1, {"env": "prod"})[0]["InstanceId"]
    tagged = moto.launch(E1, {"env": "prod", "checkpoint_ssh:admin": "ops.pem"})[0]["InstanceId"]
    result = discover(
        [
            "--regions",
            E1,
            "--tags",
            "env",
            "--once",
            "--default-user",
            "ec2-user",
            "--default-key",
            "generic.pem",
        ],
        moto.endpoint,
    )
    out = by_id(records(result))
    validate_records(out.values())
    assert out[plain]["app"] == ssh({"user": "ec2-user", "key": "generic"})
    assert out[tagged]["app"] == ssh({"user": "admin", "key": "ops"})
    assert "0 instances unconfigured" in result.stderr


def test_vpc_and_tag_filters(moto: MotoEc2) -> None:
    vpc_a, subnet_a = moto.vpc(E1, "10.1.0.0/16")
    _, subnet_b = moto.vpc(E1, "10.2.0.0/16")
    in_a = moto.launch(E1, {"env": "prod", "checkpoint_ssh:u": "k.pem"}, subnet_id=subnet_a)[0]["InstanceId"]
    moto.launch(E1, {"env": "prod", "checkpoint_ssh:u": "k.pem"}, subnet_id=subnet_b)
    moto.launch(E1, {"env": "staging", "checkpoint_ssh:u": "k.pem"}, subnet_id=subnet_a)
    team = moto.launch(E1, {"team": "x", "checkpoint_ssh:u": "k.pem"}, subnet_id=subnet_a)[0]["InstanceId"]

    result = discover(["--regions", E1, "--vpcs", vpc_a, "--tags", "env=prod", "--once"], moto.endpoint)
    assert [r["instance_id"] for r in records(result)] == [in_a]
    validate_records(records(result))
    env = {"AWS_DISCOVERY_VPCS": vpc_a, "AWS_DISCOVERY_TAGS": "env=prod,team"}
    result = discover(["--regions", E1, "--once"], moto.endpoint, env=env)
    assert sorted(r["instance_id"] for r in records(result)) == sorted([in_a, team])


def test_sync_emits_exactly_the_changes(moto: MotoEc2, tmp_path) -> None:
    ssh_tags = {"checkpoint_ssh:ubuntu": "deploy.pem"}
    stay = moto.launch(E1, {"env": "prod", **ssh_tags})[0]["InstanceId"]
    retag = moto.launch(E1, {"env": "prod", **ssh_tags})[0]["InstanceId"]
    new_ip = moto.launch(E1, {"env": "prod", **ssh_tags})[0]["InstanceId"]
    stop = moto.launch(W1, {"team": "a", **ssh_tags})[0]["InstanceId"]
    untag = moto.launch(W1, {"team": "b", **ssh_tags})[0]["InstanceId"]
    kill = moto.launch(W1, {"env": "prod", **ssh_tags})[0]["InstanceId"]
    states = ("--instance-states", "running,stopped")

    _, out = cycle(moto, tmp_path, *states)
    assert sorted(r["instance_id"] for r in out) == sorted([stay, retag, new_ip, stop, untag, kill])
    assert {r["op"] for r in out} == {"snapshot"}

    _, out = cycle(moto, tmp_path, *states)
    assert out == []  # nothing changed, restart from the state dir: no duplicate snapshot

    added = moto.launch(W1, {"team": "new", "Name": "fresh", **ssh_tags})[0]["InstanceId"]
    moto.ec2(E1).create_tags(
        Resources=[retag],
        Tags=[{"Key": "team", "Value": "core"}, {"Key": "checkpoint_ssh:admin", "Value": "deploy.pem"}],
    )
    alloc = moto.ec2(E1).allocate_address(Domain="vpc")
    moto.ec2(E1).associate_address(InstanceId=new_ip, AllocationId=alloc["AllocationId"])
    moto.ec2(W1).stop_instances(InstanceIds=[stop])
    moto.ec2(W1).delete_tags(Resources=[untag], Tags=[{"Key": "team"}])
    moto.ec2(W1).terminate_instances(InstanceIds=[kill])

    result, out = cycle(moto, tmp_path, *states)
    got = {(r["op"], r["instance_id"]): r for r in out}
    assert sorted(got) == sorted(
        [
            ("add", added),
            ("update", retag),
            ("update", new_ip),
            ("update", stop),
            ("remove", untag),
            ("remove", kill),
        ]
    )
    assert got[("add", added)]["name"] == "fresh"
    assert got[("update", retag)]["changed"] == ["tags", "app"]
    assert got[("update", retag)]["tags"] == {"env": "prod", "team": "core"}
    assert got[("update", retag)]["app"] == ssh({"user": "admin", "key": "deploy"}, USER_DEPLOY)
    assert got[("update", new_ip)]["changed"] == ["public_ip"]
    assert got[("update", new_ip)]["public_ip"] == alloc["PublicIp"]
    assert "state" in got[("update", stop)]["changed"]
    assert got[("update", stop)]["state"] == "stopped"
    assert got[("remove", untag)]["reasons"] == ["instance no longer holds a selected tag"]
    assert got[("remove", kill)]["reasons"] == ["instance is terminated"]
    assert result.stats["add"] == 1 and result.stats["update"] == 3 and result.stats["remove"] == 2

    _, out = cycle(moto, tmp_path, *states)
    assert out == []
    # running only: the stopped one leaves the inventory
    _, out = cycle(moto, tmp_path)
    assert [(r["op"], r["instance_id"], r["reasons"]) for r in out] == [("remove", stop, ["instance is stopped"])]

    _, out = cycle(moto, tmp_path, "--resync")
    assert {r["op"] for r in out} == {"snapshot"}
    assert sorted(r["instance_id"] for r in out) == sorted([stay, retag, new_ip, added])


def test_unconfigured_once_then_add_then_remove_and_unconfigured(moto: MotoEc2, tmp_path) -> None:
    iid = moto.launch(E1, {"env": "prod"})[0]["InstanceId"]
    result, out = cycle(moto, tmp_path)
    assert [r["op"] for r in out] == ["unconfigured"]
    result, out = cycle(moto, tmp_path)
    assert out == []
    assert "1 instance is left unconfigured" in result.stderr  # the count is repeated each cycle
    moto.ec2(E1).create_tags(Resources=[iid], Tags=[{"Key": "checkpoint_ssh:ubuntu", "Value": "deploy.pem"}])
    _, out = cycle(moto, tmp_path)
    assert [r["op"] for r in out] == ["add"]
    moto.ec2(E1).create_tags(Resources=[iid], Tags=[{"Key": "checkpoint_ssh:ubuntu", "Value": "other.pem"}])
    _, out = cycle(moto, tmp_path, "--known-keys", "deploy")
    assert [r["op"] for r in out] == ["remove", "unconfigured"]
    assert out[0]["reasons"] == ["became unconfigured"]


def test_failing_region_is_carried_forward_with_a_warning(moto: MotoEc2, proxy: FaultProxy, tmp_path) -> None:
    east = moto.launch(E1, {"env": "prod", "checkpoint_ssh:u": "k.pem"})[0]["InstanceId"]
    west = moto.launch(W1, {"env": "prod", "checkpoint_ssh:u": "k.pem"})[0]["InstanceId"]
    _, out = cycle(moto, tmp_path, endpoint=proxy.endpoint)
    assert sorted(r["instance_id"] for r in out) == sorted([east, west])

    proxy.fail(W1)  # throttled past every retry
    moto.ec2(W1).terminate_instances(InstanceIds=[west])
    moto.ec2(E1).terminate_instances(InstanceIds=[east])
    result, out = cycle(moto, tmp_path, "--max-attempts", "2", endpoint=proxy.endpoint)
    assert [(r["op"], r["instance_id"]) for r in out] == [("remove", east)]
    assert f"region {W1} failed this cycle; its 1 known instances are kept, none removed" in result.stderr
    assert "RequestLimitExceeded" in result.stderr
    assert result.stats["regions_failed"] == 1
    assert proxy.hits[W1] >= 2

    proxy.fail(W1, 403, "UnauthorizedOperation")
    result, out = cycle(moto, tmp_path, endpoint=proxy.endpoint)
    assert out == []
    assert "grant ec2:DescribeInstances" in result.stderr

    proxy.heal(W1)
    _, out = cycle(moto, tmp_path, endpoint=proxy.endpoint)
    assert [(r["op"], r["instance_id"], r["reasons"]) for r in out] == [("remove", west, ["instance is terminated"])]


def test_a_region_whose_connections_are_reset_is_carried_forward(moto: MotoEc2, proxy: FaultProxy, tmp_path) -> None:
    moto.launch(E1, {"env": "prod", "checkpoint_ssh:u": "k.pem"})
    west = moto.launch(W1, {"env": "prod", "checkpoint_ssh:u": "k.pem"})[0]["InstanceId"]
    cycle(moto, tmp_path, endpoint=proxy.endpoint)
    proxy.fail(W1, RESET)
    moto.ec2(W1).terminate_instances(InstanceIds=[west])
    result, out = cycle(moto, tmp_path, "--max-attempts", "2", endpoint=proxy.endpoint)
    assert out == []  # the terminated west instance is not removed: its region is unknown now
    assert f"region {W1} failed this cycle; its 1 known instances are kept, none removed" in result.stderr
    assert result.stats["regions_failed"] == 1 and proxy.hits[W1] >= 2
    proxy.heal(W1)
    _, out = cycle(moto, tmp_path, endpoint=proxy.endpoint)
    assert [(r["op"], r["instance_id"]) for r in out] == [("remove", west)]


def test_a_region_failing_in_the_first_cycle_comes_in_later_as_adds(moto: MotoEc2, proxy: FaultProxy, tmp_path) -> None:
    """The first snapshot can only hold what could be read: it says which region is missing,
    and once that region answers, its instances arrive as `add` (never silently dropped)."""
    east = moto.launch(E1, {"env": "prod", "checkpoint_ssh:u": "k.pem"})[0]["InstanceId"]
    west = moto.launch(W1, {"env": "prod", "checkpoint_ssh:u": "k.pem"})[0]["InstanceId"]
    proxy.fail(W1, 503, "Unavailable")
    result, out = cycle(moto, tmp_path, "--max-attempts", "1", endpoint=proxy.endpoint)
    assert [(r["op"], r["instance_id"]) for r in out] == [("snapshot", east)]
    assert f"region {W1} failed this cycle" in result.stderr and result.stats["regions_failed"] == 1
    proxy.heal(W1)
    _, out = cycle(moto, tmp_path, endpoint=proxy.endpoint)
    assert [(r["op"], r["instance_id"]) for r in out] == [("add", west)]


def test_once_with_every_region_failing_exits_with_the_error_code(moto: MotoEc2, proxy: FaultProxy, tmp_path) -> None:
    proxy.fail(E1, 403, "UnauthorizedOperation")
    result = discover(["--regions", E1, "--tags", "env", "--once"], proxy.endpoint)
    assert result.returncode == 3, result.stderr
    assert ": error: DescribeInstances in us-east-1: access denied" in result.stderr
    assert result.stdout == b""
    closed = f"http://127.0.0.1:{free_port()}"
    result = discover(["--regions", E1, "--tags", "env", "--once", "--max-attempts", "1"], closed)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--regions", E1, "--once"], "no tags selected"),
        (["--regions", E1, "--once", "--tags", "Name"], "cannot be selected"),
        (["--regions", E1, "--once", "--tags", "checkpoint_ssh:ubuntu"], "cannot be selected"),
        (["--regions", E1, "--once", "--tags", "env", "--default-user", "u"], "go together"),
        (
            [
                "--regions",
                E1,
                "--once",
                "--tags",
                "env",
                "--default-user",
                "u",
                "--default-key",
                "k",
                "--known-keys",
                "other",
            ],
            "not in --known-keys",
        ),
        (["--regions", E1, "--once", "--tags", "env", "--instance-states", "dead"], "unknown instance state"),
    ],
)
def test_configuration_errors_exit_2(moto: MotoEc2, args: list[str], message: str) -> None:
    result = discover(args, moto.endpoint)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and len(error_lines(result.stderr)) == 1


def test_state_dir_of_another_site_is_refused(moto: MotoEc2, tmp_path) -> None:
    moto.launch(E1, {"env": "prod"})
    cycle(moto, tmp_path)
    result = discover(
        ["--regions", BOTH, "--tags", "env", "--site", "branch", "--once", "--state-dir", str(tmp_path)],
        moto.endpoint,
    )
    assert result.returncode == 2
    assert "holds the inventory of site 'hq'" in result.stderr
    state = json.loads((tmp_path / "inventory.json").read_text())
    assert state["format_version"] == 2
    assert oct((tmp_path / "inventory.json").stat().st_mode & 0o777) == "0o600"


def test_continuous_mode_syncs_each_interval_and_stops_on_sigterm(moto: MotoEc2, tmp_path) -> None:
    moto.launch(E1, {"env": "prod", "checkpoint_ssh:u": "k.pem"})
    env = {**os.environ, **discovery_env(moto.endpoint), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            command_path("aws-discovery"),
            "--regions",
            E1,
            "--tags",
            "env",
            "--interval-secs",
            "1",
            "--state-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        first = orjson.loads(proc.stdout.readline())
        assert first["op"] == "snapshot"
        added = moto.launch(E1, {"env": "prod", "checkpoint_ssh:u": "k.pem"})[0]["InstanceId"]
        deadline = time.monotonic() + 30
        second = orjson.loads(proc.stdout.readline())
        assert time.monotonic() < deadline
        assert (second["op"], second["instance_id"]) == ("add", added)
        validate_records([first, second])
        # the state dir is locked while the loop runs (env alias of --state-dir)
        other = discover(
            ["--regions", E1, "--tags", "env", "--once"],
            moto.endpoint,
            env={"AWS_DISCOVERY_STATE_DIR": str(tmp_path)},
        )
        assert other.returncode == 2 and "in use by another running instance" in other.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    stats = [line for line in err.decode().splitlines() if line.startswith('{"stats"')]
    assert len(stats) == 1 and orjson.loads(stats[0])["stats"]["cycles"] >= 2
