"""s3-batch writing through an assumed role (the seed's cross-account set-up) against a moto
server that enforces IAM: the caller may only sts:AssumeRole; the role holds exactly what
`s3-batch policy` prints and trusts the caller with an ExternalId."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator

import orjson
import pytest

from tests.conftest import run_cli
from tests.helpers.logs import error_lines
from tests.helpers.s3_aws import AuthMoto

pytestmark = pytest.mark.integration

BUCKET = "role-bucket-s3b"
EXTERNAL_ID = "ext-s3b-7"


@pytest.fixture(scope="module")
def role_world() -> Iterator[dict]:
    auth = AuthMoto()
    try:
        auth.client("s3").create_bucket(Bucket=BUCKET)
        assume_only = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}],
        }
        caller = auth.user(f"caller-{uuid.uuid4().hex[:6]}", assume_only)
        caller_arn = auth.client("sts", caller).get_caller_identity()["Arn"]
        policy = run_cli(["s3-batch", "policy", "--dest", f"s3://{BUCKET}/audit/"])
        assert policy.returncode == 0, policy.stderr
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": caller_arn},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}},
                }
            ],
        }
        iam = auth.client("iam")
        role_arn = iam.create_role(RoleName="s3-batch-writer", AssumeRolePolicyDocument=json.dumps(trust))["Role"][
            "Arn"
        ]
        iam.put_role_policy(RoleName="s3-batch-writer", PolicyName="write", PolicyDocument=policy.stdout.decode())
        yield {"auth": auth, "caller": AuthMoto.env(caller), "role_arn": role_arn}
    finally:
        auth.close()


def run_sink(world: dict, spool, records: bytes, *extra: str):
    env = {
        **world["caller"],
        "AWS_ENDPOINT_URL": world["auth"].endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "S3_BATCH_ROLE_ARN": world["role_arn"],
    }
    args = ["s3-batch", "--dest", f"s3://{BUCKET}/audit/", "--spool-dir", str(spool), *extra]
    return run_cli(args, records, env=env)


def test_records_are_written_through_the_assumed_role(role_world: dict, tmp_path) -> None:
    records = b"".join(orjson.dumps({"n": i}) + b"\n" for i in range(4))
    ok = run_sink(role_world, tmp_path / "spool", records, "--external-id", EXTERNAL_ID)
    assert ok.returncode == 0, ok.stderr
    (receipt,) = [orjson.loads(line) for line in ok.stdout_lines]
    assert receipt["records"] == 4 and receipt["key"].startswith("audit/")
    body = role_world["auth"].client("s3").get_object(Bucket=BUCKET, Key=receipt["key"])["Body"].read()
    assert [orjson.loads(line)["n"] for line in gzip.decompress(body).splitlines()] == [0, 1, 2, 3]
    for secret in (EXTERNAL_ID, role_world["caller"]["AWS_SECRET_ACCESS_KEY"]):
        assert secret not in ok.stderr and secret.encode() not in ok.stdout


def test_profile_credentials_are_used_for_the_role(role_world: dict, tmp_path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(
        "[writer]\n"
        f"aws_access_key_id = {role_world['caller']['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {role_world['caller']['AWS_SECRET_ACCESS_KEY']}\n"
    )
    env = {
        "AWS_SHARED_CREDENTIALS_FILE": str(creds),
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_ACCESS_KEY_ID": "AKIABOGUSBOGUSBOGUS1",  # the environment's keys would be refused
        "AWS_SECRET_ACCESS_KEY": "bogus",
        "AWS_SESSION_TOKEN": "",
        "AWS_ENDPOINT_URL": role_world["auth"].endpoint,
        "S3_BATCH_ROLE_ARN": role_world["role_arn"],
        "S3_BATCH_EXTERNAL_ID": EXTERNAL_ID,
    }
    args = ["s3-batch", "--dest", f"s3://{BUCKET}/audit/", "--spool-dir", str(tmp_path / "spool")]
    ok = run_cli([*args, "--profile", "writer"], b'{"p": 1}\n', env=env)
    assert ok.returncode == 0, ok.stderr
    assert [orjson.loads(line)["records"] for line in ok.stdout_lines] == [1]
    without = run_cli(args, b'{"p": 2}\n', env=env)
    assert without.returncode == 3, without.stderr  # the environment's keys may not assume the role
    missing = run_cli([*args, "--profile", "nope"], b"", env=env)
    assert missing.returncode == 2 and "'nope' not found" in missing.stderr


def test_a_wrong_external_id_is_refused_with_exit_3_and_the_records_kept(role_world: dict, tmp_path) -> None:
    spool = tmp_path / "spool"
    refused = run_sink(role_world, spool, b'{"n": 1}\n', "--external-id", "not-the-id")
    assert refused.returncode == 3, refused.stderr
    errors = error_lines(refused.stderr)
    assert len(errors) == 1 and "objects wait in the spool" in errors[0]
    assert "not-the-id" not in refused.stderr
    secrets = [role_world["caller"]["AWS_SECRET_ACCESS_KEY"], role_world["caller"]["AWS_ACCESS_KEY_ID"], "not-the-id"]
    spooled = [p for p in spool.rglob("*") if p.is_file()]
    assert any(p.suffix == ".body" for p in spooled), "the refused run kept its object in the spool"
    for path in spooled:  # manifests, bodies, destinations.json: no credential, no external id
        content = path.read_bytes()
        assert not any(secret.encode() in content for secret in secrets), path
    # With the right external id the next start delivers what the refused run spooled.
    again = run_sink(role_world, spool, b"", "--external-id", EXTERNAL_ID)
    assert again.returncode == 0, again.stderr
    assert [orjson.loads(line)["records"] for line in again.stdout_lines] == [1]
