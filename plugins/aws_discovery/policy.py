"""The IAM documents a user creates in the discovered account (seed "Integrating the AWS account").

The permissions are the seed's minimal read-only set; the trust policy lets the discovery
account assume the role only with the agreed ExternalId (the confused-deputy guard).
"""

from __future__ import annotations

from typing import Any

ACTIONS = ("ec2:DescribeInstances", "ec2:DescribeTags", "ec2:DescribeVpcs", "ec2:DescribeRegions")


def permissions_policy() -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": list(ACTIONS), "Resource": "*"}],
    }


def trust_policy(trusted_account: str, external_id: str) -> dict[str, Any]:
    principal = trusted_account if trusted_account.startswith("arn:") else f"arn:aws:iam::{trusted_account}:root"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": principal},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
            }
        ],
    }
