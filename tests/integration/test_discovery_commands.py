"""aws-discovery subcommands and cross-account access against a real moto server (EC2 + STS)."""

from __future__ import annotations

import json

import orjson
import pytest

from tests.conftest import free_port
from tests.helpers.discovery import FaultProxy, MotoEc2, discover, records, validate_records

pytestmark = pytest.mark.integration

E1, W1 = "us-east-1", "eu-west-1"
ROLE_ACCOUNT = "111122223333"
ROLE_ARN = f"arn:aws:iam::{ROLE_ACCOUNT}:role/harmony-discovery"


def test_list_tags_counts_selectable_tags_only(moto: MotoEc2) -> None:
    moto.launch(E1, {"Name": "a", "env": "prod", "checkpoint_ssh:ubuntu": "k.pem"})
    moto.launch(E1, {"Name": "b", "env": "prod", "team": "core"})
    moto.launch(W1, {"env": "dev"}, windows=True)
    moto.launch(W1, {"Name": "only-name"})
    stopped = moto.launch(W1, {"retired": "yes", "env": "old"})[0]["InstanceId"]
    moto.ec2(W1).stop_instances(InstanceIds=[stopped])  # its tags count 0 running instances

    result = discover(["list-tags", "--regions", f"{E1},{W1}"], moto.endpoint)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == [
        f"{'TAG':<40} INSTANCES",
        f"{'env':<40} 3",
        f"{'env=dev':<40} 1",
        f"{'env=prod':<40} 2",
        f"{'team':<40} 1",
        f"{'team=core':<40} 1",
    ]
    result = discover(["--regions", f"{E1},{W1}", "list-tags", "--json", "--instance-states", "stopped"], moto.endpoint)
    assert [orjson.loads(line) for line in result.stdout_lines] == [
        {"tag": "env", "key": "env", "value": None, "instances": 1},
        {"tag": "env=old", "key": "env", "value": "old", "instances": 1},
        {"tag": "retired", "key": "retired", "value": None, "instances": 1},
        {"tag": "retired=yes", "key": "retired", "value": "yes", "instances": 1},
    ]


def test_list_tags_respects_vpcs(moto: MotoEc2) -> None:
    vpc, subnet = moto.vpc(E1)
    moto.launch(E1, {"inside": "1"}, subnet_id=subnet)
    moto.launch(E1, {"outside": "1"})
    result = discover(["list-tags", "--regions", E1, "--vpcs", vpc, "--json"], moto.endpoint)
    assert [orjson.loads(line)["tag"] for line in result.stdout_lines] == ["inside", "inside=1"]


def test_list_regions_and_vpcs(moto: MotoEc2) -> None:
    vpc, _ = moto.vpc(W1, "10.9.0.0/16")
    moto.ec2(W1).create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": "prod-vpc"}])
    result = discover(["list-regions", "--regions", E1], moto.endpoint)
    regions = result.stdout.decode().split()
    assert result.returncode == 0 and E1 in regions and W1 in regions and regions == sorted(regions)

    result = discover(["list-vpcs", "--regions", W1, "--json"], moto.endpoint)
    rows = [orjson.loads(line) for line in result.stdout_lines]
    assert {
        "region": W1,
        "vpc_id": vpc,
        "cidr": "10.9.0.0/16",
        "is_default": False,
        "name": "prod-vpc",
    } in rows
    assert sum(1 for r in rows if r["is_default"]) == 1


def test_regions_all_reads_every_enabled_region(moto: MotoEc2) -> None:
    far = moto.launch("ap-southeast-2", {"env": "prod", "checkpoint_ssh:u": "k.pem"})[0]["InstanceId"]
    result = discover(["--regions", "all", "--tags", "env", "--once"], moto.endpoint)
    assert result.returncode == 0, result.stderr
    out = records(result)
    validate_records(out)
    assert [(r["region"], r["instance_id"]) for r in out] == [("ap-southeast-2", far)]


def _role_ec2(moto: MotoEc2, region: str):
    """An EC2 client acting inside the role's account (moto keeps accounts apart)."""
    import boto3

    sts = boto3.client("sts", endpoint_url=moto.endpoint, region_name=region)
    creds = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="fixture", ExternalId="ext-123")["Credentials"]
    return boto3.client(
        "ec2",
        endpoint_url=moto.endpoint,
        region_name=region,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def test_assume_role_with_external_id_reads_the_other_account(moto: MotoEc2) -> None:
    moto.launch(E1, {"env": "prod", "checkpoint_ssh:u": "k.pem"})  # in the caller's own account
    theirs = _role_ec2(moto, E1).run_instances(
        ImageId="ami-760aaa0f",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": "env", "Value": "prod"}, {"Key": "checkpoint_ssh:u", "Value": "k.pem"}],
            }
        ],
    )["Instances"][0]["InstanceId"]

    env = {"AWS_DISCOVERY_ROLE_ARN": ROLE_ARN, "AWS_DISCOVERY_EXTERNAL_ID": "ext-123"}
    result = discover(["--regions", E1, "--tags", "env", "--once"], moto.endpoint, env=env)
    assert result.returncode == 0, result.stderr
    out = records(result)
    validate_records(out)
    assert [r["instance_id"] for r in out] == [theirs]
    assert "ext-123" not in result.stderr

    result = discover(["test", "--regions", E1, "--role-arn", ROLE_ARN, "--external-id", "ext-123"], moto.endpoint)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith("ok    credentials: arn:aws:sts::123456789012:user/moto")
    assert lines[1] == (
        f"ok    assume-role: arn:aws:sts::{ROLE_ACCOUNT}:assumed-role/harmony-discovery/aws-discovery "
        f"(account {ROLE_ACCOUNT}) with ExternalId"
    )
    assert lines[2].startswith("ok    describe-regions:")
    assert lines[3] == f"ok    describe-instances {E1}: answered (1 instances on the first page)"


def test_test_subcommand_reports_cause_and_fix(moto: MotoEc2) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    result = discover(["test", "--regions", E1, "--max-attempts", "1"], closed)
    assert result.returncode == 4
    assert result.stdout.decode().startswith("FAIL  credentials: GetCallerIdentity: cannot connect to")
    assert "check --endpoint-url" in result.stdout.decode()

    proxy = FaultProxy(moto.port)
    try:
        proxy.fail(W1, 403, "UnauthorizedOperation")
        result = discover(["test", "--regions", f"{E1},{W1}"], proxy.endpoint)
        lines = result.stdout.decode().splitlines()
        assert result.returncode == 3
        assert lines[-2] == f"ok    describe-instances {E1}: answered (0 instances on the first page)"
        assert lines[-1].startswith(f"FAIL  describe-instances {W1}: DescribeInstances in {W1}: access denied")
        assert lines[-1].endswith(
            "grant ec2:DescribeInstances to the caller's IAM policy (see the `policy` subcommand)"
        )
    finally:
        proxy.close()

    result = discover(
        ["test", "--regions", E1],
        moto.endpoint,
        env={
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
            "AWS_SESSION_TOKEN": "",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_CONFIG_FILE": "/nonexistent",
        },
    )
    assert result.returncode == 3
    assert result.stdout.decode().startswith("FAIL  credentials:")


def test_policy_prints_the_minimal_policy_and_trust_with_external_id() -> None:
    result = discover(["policy", "--kind", "permissions"], "http://127.0.0.1:9")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "ec2:DescribeInstances",
                    "ec2:DescribeTags",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeRegions",
                ],
                "Resource": "*",
            }
        ],
    }
    result = discover(
        ["policy", "--kind", "trust", "--trusted-account", "999988887777", "--external-id", "x-1"],
        "http://127.0.0.1:9",
    )
    trust = json.loads(result.stdout)
    assert trust["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::999988887777:root"}
    assert trust["Statement"][0]["Action"] == "sts:AssumeRole"
    assert trust["Statement"][0]["Condition"] == {"StringEquals": {"sts:ExternalId": "x-1"}}
    both = discover(["policy"], "http://127.0.0.1:9").stdout.decode()
    assert both.startswith("# permissions policy") and "# trust policy" in both


def test_help_states_or_semantics_and_env_vars() -> None:
    result = discover(["--help"], "http://127.0.0.1:9")
    text = result.stdout.decode()
    assert result.returncode == 0
    assert "ANY of the --tags (OR)" in text
    for env in (
        "AWS_DISCOVERY_REGIONS",
        "AWS_DISCOVERY_VPCS",
        "AWS_DISCOVERY_TAGS",
        "AWS_DISCOVERY_SITE",
        "AWS_DISCOVERY_DEFAULT_USER",
        "AWS_DISCOVERY_DEFAULT_KEY",
        "AWS_DISCOVERY_KNOWN_KEYS",
        "AWS_DISCOVERY_INSTANCE_STATES",
        "AWS_DISCOVERY_INTERVAL_SECS",
        "AWS_DISCOVERY_ONCE",
        "AWS_DISCOVERY_RESYNC",
        "AWS_DISCOVERY_PROFILE",
        "AWS_DISCOVERY_ENDPOINT_URL",
        "AWS_DISCOVERY_ROLE_ARN",
        "AWS_DISCOVERY_EXTERNAL_ID",
        "AWS_DISCOVERY_ROLE_DURATION_SECS",
        "AWS_DISCOVERY_RETRY_MODE",
        "AWS_DISCOVERY_MAX_ATTEMPTS",
        "AWS_DISCOVERY_READ_TIMEOUT_SECS",
        "AWS_DISCOVERY_PAGE_SIZE",
        "AWS_DISCOVERY_STATE_DIR",
        "HARMONY_PIPES_STATE_DIR",
        "HARMONY_PIPES_LOG_FORMAT",
    ):
        assert env in text, env
    for sub in ("list-regions", "list-vpcs", "list-tags", "test", "policy", "report"):
        assert sub in text
    # every option of the command and of each subcommand has an environment variable, shown in --help
    import click

    from harmony_pipes.aws_discovery.cli import cli

    commands = [cli, *cli.commands.values()]
    assert sorted(cli.commands) == ["list-regions", "list-tags", "list-vpcs", "policy", "report", "test"]
    for command in commands:
        for param in command.params:
            if isinstance(param, click.Option) and param.name not in ("help", "version") and not param.hidden:
                assert param.envvar and param.show_envvar, (command.name, param.name)
