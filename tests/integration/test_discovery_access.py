"""aws-discovery credentials for real: moto with IAM enforced (the role is built from the documents
`aws-discovery policy` prints, the ExternalId condition is checked), --profile from a config file,
and assumed-role credentials renewed inside a running loop (AssumeRole counted by a proxy)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import orjson
import pytest

from tests.conftest import AWS_TEST_ENV, command_path
from tests.helpers.discovery import (
    LINUX_AMI,
    FaultProxy,
    MotoEc2,
    discover,
    discover_clean,
    discovery_env,
    records,
    validate_records,
)
from tests.helpers.logs import error_lines
from tests.helpers.s3_aws import AuthMoto

pytestmark = pytest.mark.integration

E1 = "us-east-1"
EXTERNAL_ID = "ext-4242"


@pytest.fixture(scope="module")
def iam_world() -> Iterator[dict]:
    """Enforcing moto: one selected instance; a caller allowed only sts:AssumeRole; a role made
    of `aws-discovery policy` output trusting the caller with ExternalId; a direct reader user."""
    auth = AuthMoto()
    try:
        ec2 = auth.client("ec2")
        tags = [{"Key": "env", "Value": "prod"}, {"Key": "checkpoint_ssh:ubuntu", "Value": "deploy.pem"}]
        instance = ec2.run_instances(
            ImageId=LINUX_AMI,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"][0]["InstanceId"]
        assume_only = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}],
        }
        caller = auth.user(f"caller-{uuid.uuid4().hex[:6]}", assume_only)
        caller_arn = auth.client("sts", caller).get_caller_identity()["Arn"]
        permissions = discover(["policy", "--kind", "permissions"], auth.endpoint)
        trust = discover(
            ["policy", "--kind", "trust", "--trusted-account", caller_arn, "--external-id", EXTERNAL_ID],
            auth.endpoint,
        )
        assert permissions.returncode == 0 and trust.returncode == 0
        iam = auth.client("iam")
        role_arn = iam.create_role(RoleName="harmony-discovery", AssumeRolePolicyDocument=trust.stdout.decode())[
            "Role"
        ]["Arn"]
        iam.put_role_policy(
            RoleName="harmony-discovery", PolicyName="discovery", PolicyDocument=permissions.stdout.decode()
        )
        reader = auth.user(f"reader-{uuid.uuid4().hex[:6]}", json.loads(permissions.stdout))
        yield {
            "auth": auth,
            "instance": instance,
            "caller": AuthMoto.env(caller),
            "reader": reader,
            "role_arn": role_arn,
        }
    finally:
        auth.close()


def error_line(result) -> str:
    """The message of the one error line, `what failed — fix` (the stats line is the only other line at exit)."""
    others = [x for x in result.stderr.splitlines() if not x.startswith('{"stats"') and ": info: " not in x]
    (line,) = others
    (message,) = error_lines(result.stderr)
    assert line.endswith(message)
    return message


def run_as(world: dict, creds: dict[str, str], *args: str, extra: dict[str, str] | None = None):
    env = {**creds, "AWS_DISCOVERY_ENDPOINT_URL": world["auth"].endpoint, "AWS_DEFAULT_REGION": E1}
    return discover_clean(list(args), {**env, **(extra or {})})


def test_role_from_the_printed_policies_with_external_id(iam_world: dict) -> None:
    role = ["--role-arn", iam_world["role_arn"]]
    ok = run_as(iam_world, iam_world["caller"], "--regions", E1, "--tags", "env", "--once", *role,
                extra={"AWS_DISCOVERY_EXTERNAL_ID": EXTERNAL_ID})  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    out = records(ok)
    validate_records(out)
    assert [(r["op"], r["instance_id"]) for r in out] == [("snapshot", iam_world["instance"])]
    assert EXTERNAL_ID not in ok.stderr

    wrong = run_as(iam_world, iam_world["caller"], "--regions", E1, "--tags", "env", "--once", *role,
                   "--external-id", "not-the-id")  # fmt: skip
    assert wrong.returncode == 3, wrong.stderr
    assert wrong.stdout == b""
    line = error_line(wrong)
    assert line.startswith(f"assume role {iam_world['role_arn']}: access denied")
    assert "sts:ExternalId / --external-id" in line
    assert "not-the-id" not in line

    # (moto accepts a missing ExternalId despite the StringEquals condition; AWS refuses it.)

    # Without the role the caller itself may not read EC2: exit 3 naming the missing permission.
    direct = run_as(iam_world, iam_world["caller"], "--regions", E1, "--tags", "env", "--once")
    assert direct.returncode == 3, direct.stderr
    assert "DescribeInstances in us-east-1: access denied" in direct.stderr
    assert "grant ec2:DescribeInstances" in direct.stderr


def test_access_denied_in_every_region_is_reported_and_no_secret_is_stored(iam_world: dict, tmp_path) -> None:
    """`report` shows an IAM refusal met by a `--once` cycle; the state holds no ExternalId or key.

    (A role refused at start-up fails before any cycle, so it is not in the state: the report's
    last-sync age is what shows it.)"""
    args = ["--regions", E1, "--tags", "env", "--once", "--state-dir", str(tmp_path)]
    role = ["--role-arn", iam_world["role_arn"]]
    ok = run_as(iam_world, iam_world["caller"], *args, *role, extra={"AWS_DISCOVERY_EXTERNAL_ID": EXTERNAL_ID})
    assert ok.returncode == 0, ok.stderr
    direct = run_as(iam_world, iam_world["caller"], *args)  # the caller itself may not read EC2
    assert direct.returncode == 3, direct.stderr
    state = (tmp_path / "inventory.json").read_bytes()
    secret = iam_world["caller"]["AWS_SECRET_ACCESS_KEY"].encode()
    assert EXTERNAL_ID.encode() not in state and secret not in state
    shown = discover_clean(["report", "--json", "--state-dir", str(tmp_path)], {})
    assert shown.returncode == 0, shown.stderr
    out = orjson.loads(shown.stdout)
    assert [f["region"] for f in out["failed_regions"]] == [E1] and out["synced"] == 1
    error = out["failed_regions"][0]["error"]
    assert error.startswith("DescribeInstances in us-east-1: access denied") and "grant ec2:DescribeInstances" in error


def test_test_subcommand_against_enforced_iam(iam_world: dict) -> None:
    role = ["--role-arn", iam_world["role_arn"]]
    ok = run_as(iam_world, iam_world["caller"], "test", "--regions", E1, *role, "--external-id", EXTERNAL_ID)
    lines = ok.stdout.decode().splitlines()
    assert ok.returncode == 0, ok.stdout
    assert [line.split(":")[0] for line in lines] == [
        "ok    credentials",
        "ok    assume-role",
        "ok    describe-regions",
        f"ok    describe-instances {E1}",
    ]
    assert lines[1].endswith("(account 123456789012) with ExternalId")
    assert lines[3].endswith("answered (1 instances on the first page)")

    wrong = run_as(iam_world, iam_world["caller"], "test", "--regions", E1, *role, "--external-id", "bad")
    lines = wrong.stdout.decode().splitlines()
    assert wrong.returncode == 3
    assert lines[0].startswith("ok    credentials: arn:aws:iam::123456789012:user/caller-")
    assert lines[1].startswith(f"FAIL  assume-role: assume role {iam_world['role_arn']}: access denied")
    assert "— allow sts:AssumeRole for the caller, and check the role's trust policy" in lines[1]
    assert len(lines) == 2  # later steps need the role: not attempted

    bad_keys = {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7NOTREAL", "AWS_SECRET_ACCESS_KEY": "nope"}
    refused = run_as(iam_world, bad_keys, "test", "--regions", E1)
    assert refused.returncode == 3
    assert refused.stdout.decode().startswith("FAIL  credentials: GetCallerIdentity: credentials refused")
    assert "AKIAIOSFODNN7NOTREAL" not in refused.stdout.decode() + refused.stderr


def test_profile_from_the_config_files(iam_world: dict, tmp_path) -> None:
    keys = iam_world["reader"]
    (tmp_path / "credentials").write_text(
        f"[discovery]\naws_access_key_id = {keys['aws_access_key_id']}\n"
        f"aws_secret_access_key = {keys['aws_secret_access_key']}\n"
    )
    (tmp_path / "config").write_text(f"[profile discovery]\nregion = {E1}\n")
    files = {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_DISCOVERY_ENDPOINT_URL": iam_world["auth"].endpoint,
    }
    # No --regions, no AWS_REGION: the profile's region is read.
    result = discover_clean(["--profile", "discovery", "--tags", "env", "--once"], files)
    assert result.returncode == 0, result.stderr
    assert [r["instance_id"] for r in records(result)] == [iam_world["instance"]]
    by_env = discover_clean(["--tags", "env", "--once"], {**files, "AWS_DISCOVERY_PROFILE": "discovery"})
    assert by_env.returncode == 0 and len(records(by_env)) == 1
    # Without the profile there are no credentials at all.
    none = discover_clean(["--regions", E1, "--tags", "env", "--once"], files)
    assert none.returncode == 3, none.stderr
    assert error_line(none).startswith("DescribeInstances in us-east-1: no usable AWS credentials")
    missing = discover_clean(["--profile", "nope", "--tags", "env", "--once"], files)
    assert missing.returncode == 2
    assert error_line(missing).startswith("AWS profile 'nope' not found — check --profile")


@pytest.fixture
def plain_moto() -> Iterator[MotoEc2]:
    for key, value in AWS_TEST_ENV.items():
        os.environ.setdefault(key, value)
    server = MotoEc2()
    yield server
    server.stop()


def test_assumed_role_credentials_are_renewed_in_a_running_loop(plain_moto: MotoEc2, tmp_path) -> None:
    plain_moto.launch(E1, {"env": "prod", "checkpoint_ssh:u": "k.pem"})
    proxy = FaultProxy(plain_moto.port)

    def loop(duration_secs: int) -> tuple[int, int]:
        """Run until 3 cycles have read EC2; return (AssumeRole calls, DescribeInstances calls)."""
        before = (proxy.count("AssumeRole"), proxy.count("DescribeInstances"))
        env = {
            **os.environ,
            **discovery_env(proxy.endpoint),
            "AWS_DISCOVERY_ROLE_ARN": "arn:aws:iam::123456789012:role/discovery",
            "AWS_DISCOVERY_EXTERNAL_ID": EXTERNAL_ID,
            "AWS_DISCOVERY_ROLE_DURATION_SECS": str(duration_secs),
        }
        argv = [command_path("aws-discovery"), "--regions", E1, "--tags", "env", "--interval-secs", "1"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            assert orjson.loads(proc.stdout.readline())["op"] == "snapshot"
            deadline = time.monotonic() + 30
            while proxy.count("DescribeInstances") - before[1] < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        return proxy.count("AssumeRole") - before[0], proxy.count("DescribeInstances") - before[1]

    try:
        # 15-minute credentials sit inside botocore's refresh window: renewed before each use.
        assumed, cycles = loop(900)
        assert cycles >= 3 and assumed >= 3, (assumed, cycles)
        # One-hour credentials are assumed once and reused by every cycle.
        assumed, cycles = loop(3600)
        assert cycles >= 3 and assumed == 1, (assumed, cycles)
    finally:
        proxy.close()
